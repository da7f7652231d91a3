import XCTest
import TillerTensor
import CTillerKernels

final class WeightMatrixTests: XCTestCase {
    static let kernelTypes: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    /// Largest |y − ref| / Σ_i |W[o,i]·x[r,i]|: the error relative to the size of the terms summed,
    /// against a double-precision loop over the dequantized weights.
    func relativeError(_ w: WeightMatrix, dense: [Float], x: [Float], rows: Int) -> Double {
        relativeError(out: w.outFeatures, inF: w.inFeatures, dense: dense, x: x, rows: rows) { xp, yp in w.apply(xp, rows: rows, into: yp) }
    }

    func relativeError(out: Int, inF: Int, dense: [Float], x: [Float], rows: Int,
                       _ apply: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> Double {
        var y = [Float](repeating: .nan, count: rows * out)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in apply(xp.baseAddress!, yp.baseAddress!) }
        }
        var worst = 0.0
        for r in 0..<rows {
            for o in 0..<out {
                var ref = 0.0, magnitude = 0.0
                for i in 0..<inF {
                    let term = Double(dense[o * inF + i]) * Double(x[r * inF + i])
                    ref += term
                    magnitude += abs(term)
                }
                let err = abs(Double(y[r * out + o]) - ref) / max(magnitude, 1e-30)
                if !(err <= worst) { worst = err.isNaN ? .infinity : err }
            }
        }
        return worst
    }

    /// Both kernel sets where the CPU has AVX-512 (the AVX-512 one-row kernels and the portable
    /// Swift ones), else the portable set.
    static var kernelSets: [Bool] { MatvecKernels.cpuHasAVX512 ? [true, false] : [false] }

    func testApplyMatchesDequantizedReferenceForEveryType() throws {
        let saved = MatvecKernels.useAVX512
        defer { MatvecKernels.useAVX512 = saved }
        for avx512 in Self.kernelSets {
            MatvecKernels.useAVX512 = avx512
            var report: [String] = []
            for (t, type) in Self.kernelTypes.enumerated() {
                var worst = 0.0
                // 45 outputs: tiles with a remainder; 512 inputs: a whole number of K blocks;
                // 96 inputs: an odd number of 32-blocks (the kernels' two-block unrolling).
                let shapes = type.blockSize == 256 ? [(45, 512), (7, 768)] : [(45, 512), (13, 96)]
                for (s, (out, inF)) in shapes.enumerated() {
                    let raw = randomTensor(type, rows: out, cols: inF, seed: UInt64(100 * t + s))
                    let dense = try dequantize(raw)
                    let w = try WeightMatrix(raw)
                    XCTAssertEqual(w.type, type)
                    for rows in [1, 2, 3, 5, 8, 17, 64] {
                        let x = randomFloats(rows * inF, seed: UInt64(rows))
                        let err = relativeError(w, dense: dense, x: x, rows: rows)
                        XCTAssertLessThanOrEqual(err, 1e-5, "\(MatvecKernels.active): \(type) \(out)×\(inF), rows \(rows): relative error \(err)")
                        worst = max(worst, err)
                    }
                }
                report.append("\(type) \(String(format: "%.1e", worst))")
            }
            print("WeightMatrix.apply (\(MatvecKernels.active) kernels) worst relative error: " + report.joined(separator: ", "))
        }
    }

    /// On a CPU with AVX-512 the AVX-512 kernels are the ones in use (unless TILLER_KERNELS says
    /// otherwise), and they give the portable kernels' results within float rounding.
    func testAVX512KernelsAreUsedAndAgreeWithThePortableOnes() throws {
        guard MatvecKernels.cpuHasAVX512 else {
            XCTAssertFalse(MatvecKernels.useAVX512)
            return
        }
        if ProcessInfo.processInfo.environment["TILLER_KERNELS"] != "portable" { XCTAssertTrue(MatvecKernels.useAVX512) }
        let saved = MatvecKernels.useAVX512
        defer { MatvecKernels.useAVX512 = saved }
        for (t, type) in [GGMLType.q8_0, .q4_0, .q4_1, .q5_0, .q4_K, .q6_K].enumerated() {
            let raw = randomTensor(type, rows: 33, cols: 1024, seed: UInt64(900 + t))
            let w = try WeightMatrix(raw)
            let x = randomFloats(1024, seed: 7)
            func run(_ avx: Bool) -> [Float] {
                MatvecKernels.useAVX512 = avx
                var y = [Float](repeating: .nan, count: 33)
                x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { w.apply(xp.baseAddress!, rows: 1, into: $0.baseAddress!) } }
                return y
            }
            let (a, p) = (run(true), run(false))
            let scale = p.map { abs($0) }.max()!
            for o in 0..<33 {
                XCTAssertEqual(a[o], p[o], accuracy: 1e-5 * scale, "\(type) row \(o)")
            }
        }
    }

    /// The packed fp32 copy (AVX-512 many-row kernel): every output of every row, partial and odd
    /// slab counts, row counts that split into uneven chunks of at most 12.
    func testPackedMatrixMatchesTheDequantizedReference() throws {
        guard PackedMatrix.available else { throw XCTSkip("packed copies are off here (no AVX-512 kernels, or TILLER_KERNELS=portable / TILLER_PACKED=0)") }
        var worst = 0.0
        for (t, (type, out, inF)) in [(GGMLType.q4_1, 45, 512), (.q8_0, 13, 96), (.f32, 64, 96), (.q6_K, 37, 256), (.bf16, 16, 64)].enumerated() {
            let raw = randomTensor(type, rows: out, cols: inF, seed: UInt64(700 + t))
            let dense = try dequantize(raw)
            let p = PackedMatrix(try WeightMatrix(raw))
            XCTAssertEqual(p.byteCount, (out + 15) / 16 * 16 * inF * 4)
            for rows in [1, 8, 12, 13, 23, 24, 25, 32, 100, 301] {
                let x = randomFloats(rows * inF, seed: UInt64(rows + 50))
                let err = relativeError(out: out, inF: inF, dense: dense, x: x, rows: rows) { xp, yp in
                    XCTAssertTrue(p.apply(xp, rows: rows, into: yp))
                }
                XCTAssertLessThanOrEqual(err, 1e-5, "packed \(type) \(out)×\(inF), rows \(rows)")
                worst = max(worst, err)
            }
        }
        print("PackedMatrix.apply worst relative error: \(worst)")
    }

    /// The VNNI slabs (Q4_1, Q8_0) for one row and for several: every output, slab counts with a
    /// partial last slab, odd block counts, and inputs with a massive dim (3,000× the rest) — the digits of the
    /// input are relative to each block's largest element.
    func testVNNIMatrixMatchesTheDequantizedReference() throws {
        guard VNNIMatrix.available else {
            XCTAssertNil(VNNIMatrix(try WeightMatrix(randomTensor(.q8_0, rows: 16, cols: 64, seed: 1))))
            return
        }
        XCTAssertNil(VNNIMatrix(try WeightMatrix(randomTensor(.q6_K, rows: 16, cols: 256, seed: 1))), "no layout for Q6_K")
        var worst = 0.0
        for (t, (type, out, inF)) in [(GGMLType.q4_1, 45, 512), (.q4_1, 16, 96), (.q8_0, 13, 96), (.q8_0, 300, 64), (.q8_0, 37, 1024),
                                            (.q5_0, 21, 160), (.q5_0, 64, 1024), (.q4_0, 19, 96), (.q4_K, 20, 512),
                                            (.q4_K, 33, 256)].enumerated() {
            let raw = randomTensor(type, rows: out, cols: inF, seed: UInt64(1100 + t))
            let dense = try dequantize(raw)
            let v = try XCTUnwrap(VNNIMatrix(try WeightMatrix(raw)))
            XCTAssertEqual(v.layout, type == .q4_1 || type == .q4_K ? type : .q8_0)
            XCTAssertEqual(v.byteCount, (out + 15) / 16 * (inF / 32) * (type == .q4_1 ? 320 : type == .q4_K ? 384 : 544))
            // One row (the matvec kernel) and several (four rows a pass, with a remainder).
            for rows in [1, 2, 4, 7, 32] {
                for massive in [false, true] {
                    var x = randomFloats(rows * inF, seed: UInt64(t + 60 + rows))
                    if massive { for r in 0..<rows { x[r * inF + 5] = 3000; x[r * inF + inF - 1] = -700 } }
                    let err = relativeError(out: out, inF: inF, dense: dense, x: x, rows: rows) { xp, yp in
                        XCTAssertTrue(v.apply(xp, rows: rows, into: yp, kernel: rows <= CPUKernelChoice.oneRowKernelMaxRows ? .vnniOneRow : .vnniRows))
                    }
                    XCTAssertLessThanOrEqual(err, 1e-5, "vnni \(type) \(out)×\(inF), rows \(rows), massive \(massive)")
                    worst = max(worst, err)
                }
            }
        }
        print("VNNIMatrix.apply worst relative error: \(worst)")
    }

    /// Many-row products on a matrix without a packed copy (a model over the fp32-copy limit)
    /// dequantize panels into slabs and run the same kernel: bit-identical to the packed copy, and
    /// packed inputs (from 24 or 48 rows on, by CPU; 61 rows are packed on every CPU) give the
    /// unpacked kernel's results bit for bit.
    func testDequantizingPanelsAndPackedInputsGiveThePackedCopysResults() throws {
        guard PackedMatrix.available else { throw XCTSkip("packed copies are off here (no AVX-512 kernels, or TILLER_KERNELS=portable / TILLER_PACKED=0)") }
        for (t, (type, out, inF)) in [(GGMLType.q4_1, 45, 512), (.q8_0, 300, 96), (.bf16, 33, 64)].enumerated() {
            let raw = randomTensor(type, rows: out, cols: inF, seed: UInt64(800 + t))
            let dense = try dequantize(raw)
            let native = try WeightMatrix(raw)
            let p = PackedMatrix(native)
            for rows in [8, 24, 61] {
                let x = randomFloats(rows * inF, seed: UInt64(rows + 90))
                var a = [Float](repeating: .nan, count: rows * out), b = a, c = a
                x.withUnsafeBufferPointer { xp in
                    a.withUnsafeMutableBufferPointer { XCTAssertTrue(p.apply(xp.baseAddress!, rows: rows, into: $0.baseAddress!)) }
                    b.withUnsafeMutableBufferPointer { native.apply(xp.baseAddress!, rows: rows, into: $0.baseAddress!) }
                    // The kernel itself, inputs as they are (no packing), over every slab.
                    var slabs = [Float](repeating: 0, count: (out + 15) / 16 * 16 * inF)
                    var rowMajor = [Float](repeating: 0, count: out * inF)
                    rowMajor.withUnsafeMutableBufferPointer { r in
                        for o in 0..<out { native.dequantizeRow(o, into: r.baseAddress! + o * inF) }
                        tiller_pack_slabs(r.baseAddress!, Int32(out), Int32(inF), &slabs)
                    }
                    c.withUnsafeMutableBufferPointer {
                        XCTAssertEqual(tiller_packed_gemm_avx512(xp.baseAddress!, nil, Int32(rows), Int32(inF), slabs, Int32(out), 0,
                                                                 Int32((out + 15) / 16), $0.baseAddress!, out), 1)
                    }
                }
                XCTAssertEqual(a, b, "\(type) \(out)×\(inF), rows \(rows): dequantizing panels vs packed copy")
                XCTAssertEqual(a, c, "\(type) \(out)×\(inF), rows \(rows): packed inputs vs rows as they are")
                let err = relativeError(native, dense: dense, x: x, rows: rows)
                XCTAssertLessThanOrEqual(err, 1e-5, "\(type) rows \(rows)")
            }
        }
    }

    func testF32PrecisionConvertsAtLoad() throws {
        for type in [GGMLType.q4_1, .q6_K, .bf16] {
            let raw = randomTensor(type, rows: 20, cols: 256, seed: 7)
            let dense = try dequantize(raw)
            let w = try WeightMatrix(raw, keep: .f32)
            XCTAssertEqual(w.type, .f32)
            XCTAssertEqual(w.byteCount, 20 * 256 * 4)
            for rows in [1, 3, 17] {
                let x = randomFloats(rows * 256, seed: 99)
                XCTAssertLessThanOrEqual(relativeError(w, dense: dense, x: x, rows: rows), 1e-5, "\(type) as f32, rows \(rows)")
            }
        }
    }

    func testDequantizeRowIsAnEmbeddingLookup() throws {
        for type in Self.kernelTypes {
            let raw = randomTensor(type, rows: 9, cols: 256, seed: 3)
            let dense = try dequantize(raw)
            let w = try WeightMatrix(raw)
            var row = [Float](repeating: 0, count: 256)
            for o in [0, 4, 8] {
                row.withUnsafeMutableBufferPointer { w.dequantizeRow(o, into: $0.baseAddress!) }
                XCTAssertEqual(row.map(\.bitPattern), dense[(o * 256)..<(o * 256 + 256)].map(\.bitPattern), "\(type) row \(o)")
            }
        }
    }

    func testInvalidTensorsAreRejectedWithTheirName() {
        let owned = OwnedBytes(count: 1024)
        let cases: [(RawTensor, String)] = [
            (RawTensor(name: "vec", type: .f32, shape: [256], data: owned.buffer, owner: owned), "2-D"),
            (RawTensor(name: "odd", type: .q8_0, shape: [2, 48], data: owned.buffer, owner: owned), "block size"),
            (RawTensor(name: "short", type: .f32, shape: [2, 256], data: owned.buffer, owner: owned), "bytes"),
            (RawTensor(name: "iq", type: .q2_K, shape: [1, 256], data: owned.buffer, owner: owned), "Q2_K"),
        ]
        for (raw, expected) in cases {
            XCTAssertThrowsError(try WeightMatrix(raw)) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains("'\(raw.name)'") && text.contains(expected), text)
            }
        }
    }
}
