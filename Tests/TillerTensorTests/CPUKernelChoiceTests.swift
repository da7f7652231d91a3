import XCTest
@testable import TillerTensor

/// The CPU backend's one kernel decision against a table of cases: the copies made at load and the
/// kernel each product runs, for every combination the engine meets.
final class CPUKernelChoiceTests: XCTestCase {
    let avx512VNNI = CPUFeatures(packed: true, vnni: true)
    let avx512 = CPUFeatures(packed: true, vnni: false)
    let portable = CPUFeatures(packed: false, vnni: false)

    func testCopiesMadeAtLoad() {
        typealias Case = (type: GGMLType, inF: Int, fits: Bool, features: CPUFeatures, want: CPUCopies)
        let cases: [Case] = [
            // Fits the fp32 limit on AVX-512: a packed copy, VNNI slabs where the type has a layout.
            (.q8_0, 576, true, avx512VNNI, CPUCopies(packed: true, vnni: true)),
            (.q4_K, 512, true, avx512VNNI, CPUCopies(packed: true, vnni: true)),
            (.q4_K, 288, true, avx512VNNI, CPUCopies(packed: true, vnni: false)),   // Q4_K slabs need rows of 256s
            (.q6_K, 256, true, avx512VNNI, CPUCopies(packed: true, vnni: false)),   // no layout for Q6_K
            (.bf16, 576, true, avx512VNNI, CPUCopies(packed: true)),
            (.f32, 576, true, avx512VNNI, CPUCopies(packed: true)),
            // Over the limit: the file's blocks (and VNNI slabs) only.
            (.q8_0, 2304, false, avx512VNNI, CPUCopies(vnni: true)),
            (.bf16, 2304, false, avx512VNNI, .none),
            // No AVX-512: a row-major fp32 copy for sgemm, except for F32 files.
            (.q8_0, 576, true, portable, CPUCopies(fp32: true)),
            (.f32, 576, true, portable, .none),
            (.q4_1, 576, true, avx512, CPUCopies(packed: true)),
            (.q4_1, 576, false, portable, .none),
        ]
        for c in cases {
            XCTAssertEqual(CPUKernelChoice.copies(type: c.type, inFeatures: c.inF, fitsFP32Limit: c.fits, features: c.features), c.want,
                           "\(c.type) in \(c.inF), fits \(c.fits), \(c.features)")
        }
    }

    func testKernelPerProduct() {
        let packedVNNI = CPUCopies(packed: true, vnni: true)
        let fp32 = CPUCopies(fp32: true)
        let vnniOnly = CPUCopies(vnni: true)
        typealias Case = (type: GGMLType, inF: Int, rows: Int, copies: CPUCopies, features: CPUFeatures, want: CPUKernel)
        let cases: [Case] = [
            // SmolLM2 on an AVX-512 VNNI CPU: decode on the slabs, one-row kernel up to three rows.
            (.q8_0, 576, 1, packedVNNI, avx512VNNI, .vnniOneRow),
            (.q8_0, 576, 3, packedVNNI, avx512VNNI, .vnniOneRow),
            (.q8_0, 576, 4, packedVNNI, avx512VNNI, .fusedRows),      // 4…7 rows: the fused kernel sharing dequantized rows
            (.q8_0, 576, 7, packedVNNI, avx512VNNI, .fusedRows),
            (.q8_0, 576, 8, packedVNNI, avx512VNNI, .packedCopy),     // from gemmMinRows on: the packed copy
            (.q8_0, 576, 512, packedVNNI, avx512VNNI, .packedCopy),
            // Over the copy limit: VNNI up to vnniMaxRows rows, then dequantized panels for the packed kernel.
            (.q8_0, 2304, 4, vnniOnly, avx512VNNI, .vnniRows),
            (.q8_0, 2304, 64, vnniOnly, avx512VNNI, .vnniRows),
            (.q8_0, 2304, 65, vnniOnly, avx512VNNI, .dequantizedPanelsPacked),
            (.bf16, 2304, 1, .none, avx512VNNI, .fusedOneRow),
            (.bf16, 2304, 32, .none, avx512VNNI, .dequantizedPanelsPacked),
            (.f32, 576, 32, .none, avx512VNNI, .panelsSgemm),         // F32 blocks are the fp32 matrix: sgemm
            // No AVX-512: sgemm on the row-major copy from 8 rows, the fused kernels below.
            (.q4_K, 512, 1, fp32, portable, .fusedOneRow),
            (.q4_K, 512, 5, fp32, portable, .fusedRows),
            (.q4_K, 512, 8, fp32, portable, .fp32CopySgemm),
            (.q4_K, 512, 8, .none, portable, .panelsSgemm),
            // F16 rows whose length is not a multiple of 32 have no fused one-row kernel.
            (.f16, 40, 1, .none, portable, .fusedRows),
            (.f16, 64, 1, .none, portable, .fusedOneRow),
            // Copies the features no longer allow are not used (TILLER_VNNI=0 after load).
            (.q8_0, 576, 1, packedVNNI, avx512, .fusedOneRow),
        ]
        for c in cases {
            XCTAssertEqual(CPUKernelChoice.kernel(type: c.type, inFeatures: c.inF, rows: c.rows, copies: c.copies, features: c.features), c.want,
                           "\(c.type) in \(c.inF), \(c.rows) rows, \(c.copies), \(c.features)")
        }
    }

    /// Row-invariant products (teacher forcing) take the packed copy at every row count where there
    /// is one, and the usual kernel where there is not.
    func testRowInvariantKernel() {
        let packedVNNI = CPUCopies(packed: true, vnni: true)
        for rows in [1, 3, 4, 7, 8, 512] {
            XCTAssertEqual(CPUKernelChoice.kernel(type: .q4_1, inFeatures: 576, rows: rows, copies: packedVNNI, features: avx512VNNI,
                                                  rowInvariant: true), .packedCopy, "\(rows) rows")
        }
        XCTAssertEqual(CPUKernelChoice.kernel(type: .q4_K, inFeatures: 512, rows: 1, copies: CPUCopies(fp32: true), features: portable,
                                              rowInvariant: true), .fusedOneRow)
        XCTAssertEqual(CPUKernelChoice.kernel(type: .q8_0, inFeatures: 576, rows: 1, copies: packedVNNI, features: avx512,
                                              rowInvariant: true), .packedCopy)
    }

    /// What the row-invariant choice rests on: the packed kernel gives each row the same bits
    /// whatever the row count of the product (tiles of 1…12 rows, inputs packed from 24 rows on).
    func testPackedKernelRowsDoNotDependOnRowCount() throws {
        guard PackedMatrix.available else { throw XCTSkip("packed copies are off here (no AVX-512 kernels, or TILLER_KERNELS=portable / TILLER_PACKED=0)") }
        let inF = 576, out = 40
        let packed = PackedMatrix(try WeightMatrix(randomTensor(.q4_1, rows: out, cols: inF, seed: 3)))
        let all = 37
        let x = randomFloats(all * inF, seed: 11)
        func product(_ first: Int, _ rows: Int) -> [Float] {
            var y = [Float](repeating: .nan, count: rows * out)
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { _ = packed.apply(xp.baseAddress! + first * inF, rows: rows, into: $0.baseAddress!) } }
            return y
        }
        let whole = product(0, all)
        for (first, rows) in [(0, 1), (5, 3), (9, 7), (2, 8), (13, 24), (0, 30)] {
            XCTAssertEqual(product(first, rows), Array(whole[first * out ..< (first + rows) * out]), "rows \(first)..<\(first + rows)")
        }
    }

    /// WeightMatrix.apply runs the decision's kernel for a matrix without copies: each native
    /// kernel gives the dequantized product whatever the row count.
    func testEveryNativeKernelMatchesTheReference() throws {
        let raw = randomTensor(.q8_0, rows: 40, cols: 64, seed: 7)
        let w = try WeightMatrix(raw)
        let dense = try dequantize(raw)
        for kernel in [CPUKernel.panelsSgemm, .dequantizedPanelsPacked, .fusedOneRow, .fusedRows] {
            for rows in [1, 3, 9] {
                let x = randomFloats(rows * 64, seed: UInt64(rows))
                var y = [Float](repeating: .nan, count: rows * 40)
                x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { w.apply(xp.baseAddress!, rows: rows, into: $0.baseAddress!, kernel: kernel) } }
                for r in 0..<rows {
                    for o in 0..<40 {
                        var ref = 0.0, magnitude = 0.0
                        for i in 0..<64 {
                            let term = Double(dense[o * 64 + i]) * Double(x[r * 64 + i])
                            ref += term
                            magnitude += abs(term)
                        }
                        XCTAssertLessThanOrEqual(abs(Double(y[r * 40 + o]) - ref), 1e-5 * magnitude, "\(kernel) \(rows) rows, [\(r), \(o)]")
                    }
                }
            }
        }
    }
}
