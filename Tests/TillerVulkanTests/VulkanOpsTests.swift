import Foundation
@testable import TillerModels
import TillerTensor
import XCTest
@testable import TillerVulkan

// Every Vulkan kernel against the CPU backend on random inputs: normalised error
// ‖gpu − cpu‖ / ‖cpu‖, every output finite, and guard regions around each output unchanged
// (a kernel that writes past its rows fails). They run on whatever Vulkan device comes first
// (Mesa's lavapipe in CI); TILLER_REQUIRE_VULKAN=1 makes a missing device a failure, not a skip.

/// The device the tests run on: the one TILLER_TEST_VULKAN_DEVICE names, else index 0.
func testDevice() throws -> VulkanDevice {
    let index = Int(ProcessInfo.processInfo.environment["TILLER_TEST_VULKAN_DEVICE"] ?? "") ?? 0
    do {
        return try VulkanDevice.open(index)
    } catch {
        if ProcessInfo.processInfo.environment["TILLER_REQUIRE_VULKAN"] == "1" { throw error }
        throw XCTSkip("no Vulkan device: \(error)")
    }
}

struct Rng {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        var z = state
        z = (z ^ (z >> 33)) &* 0xff51_afd7_ed55_8ccd
        return z ^ (z >> 33)
    }
    mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }
    mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] { (0..<n).map { _ in float(lo, hi) } }
}

/// ‖a − b‖ / max(‖b‖, tiny), in Double.
func normalisedError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var num = 0.0, den = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    return (num / max(den, 1e-30)).squareRoot()
}

let guardValue: Float = -12345.5
let guardCount = 67

/// A device buffer of `guardCount` guard values, `count` elements (initial `values`, else guard
/// values), and `guardCount` guard values again; the slice points at the middle.
func guarded(_ d: VulkanDevice, count: Int, values: [Float]? = nil) throws -> VulkanSlice {
    let body = values ?? [Float](repeating: guardValue, count: count)
    let all = [Float](repeating: guardValue, count: guardCount) + body + [Float](repeating: guardValue, count: guardCount)
    return VulkanSlice(try d.upload(all), offset: guardCount)
}

/// The middle of a guarded buffer, after checking the guards and that every value is finite.
func readGuarded(_ d: VulkanDevice, _ s: VulkanSlice, count: Int, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) throws -> [Float] {
    let all = try d.read(s.buffer, count: count + 2 * guardCount)
    for i in 0..<guardCount where all[i] != guardValue || all[guardCount + count + i] != guardValue {
        XCTFail("\(what): guard region overwritten", file: file, line: line)
        break
    }
    let body = Array(all[guardCount..<(guardCount + count)])
    if let bad = body.firstIndex(where: { !$0.isFinite }) {
        XCTFail("\(what): element \(bad) is \(body[bad])", file: file, line: line)
    }
    return body
}

func assertClose(_ gpu: [Float], _ cpu: [Float], _ tolerance: Double, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    let e = normalisedError(gpu, cpu)
    XCTAssertLessThanOrEqual(e, tolerance, "\(what): normalised error \(e)", file: file, line: line)
}

/// Random stored blocks of `type` for a [rows, cols] matrix: random bytes with sane fp16 scales.
func randomMatrix(_ type: GGMLType, rows: Int, cols: Int, seed: UInt64) -> (RawTensor, OwnedBytes) {
    var rng = Rng(seed)
    let bytes = type.byteCount(elements: rows * cols)!
    let owned = OwnedBytes(count: bytes)
    let p = owned.pointer
    func f16(_ x: Float, at o: Int) { p.storeBytes(of: Float16(x).bitPattern, toByteOffset: o, as: UInt16.self) }
    switch type {
    case .f32:
        for i in 0..<(rows * cols) { p.storeBytes(of: rng.float(), toByteOffset: 4 * i, as: Float.self) }
    case .f16:
        for i in 0..<(rows * cols) { f16(rng.float(), at: 2 * i) }
    case .bf16:
        for i in 0..<(rows * cols) { p.storeBytes(of: UInt16(rng.float().bitPattern >> 16), toByteOffset: 2 * i, as: UInt16.self) }
    default:
        for i in 0..<bytes { p.storeBytes(of: UInt8(truncatingIfNeeded: rng.next()), toByteOffset: i, as: UInt8.self) }
        let blocks = rows * cols / type.blockSize
        for b in 0..<blocks {
            let o = b * type.blockBytes
            switch type {
            case .q8_0: f16(rng.float(0.001, 0.02), at: o)
            case .q4_0, .q5_0: f16(rng.float(0.01, 0.1), at: o)
            case .q4_1: f16(rng.float(0.01, 0.1), at: o); f16(rng.float(-0.5, 0.5), at: o + 2)
            case .q4_K: f16(rng.float(0.001, 0.01), at: o); f16(rng.float(0.001, 0.01), at: o + 2)
            case .q6_K: f16(rng.float(0.0005, 0.005), at: o + 208)
            default: fatalError("no generator for \(type)")
            }
        }
    }
    let raw = RawTensor(name: "w.\(type)", type: type, shape: [rows, cols],
                        data: UnsafeRawBufferPointer(start: p, count: bytes), owner: owned)
    return (raw, owned)
}

final class VulkanOpsTests: XCTestCase {
    func testShadersAreFresh() throws {
        // The fingerprint scripts/build-shaders.sh records: each GLSL source (sorted by name) as
        // "name\n" + bytes, then the script itself.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.appendingPathComponent("shaders/vulkan")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertFalse(names.isEmpty)
        var fp = Fingerprint()
        for n in names {
            fp.add(bytes: Array((n + "\n").utf8))
            fp.add(bytes: try Data(contentsOf: dir.appendingPathComponent(n)))
        }
        fp.add(bytes: try Data(contentsOf: root.appendingPathComponent("scripts/build-shaders.sh")))
        XCTAssertEqual(fp.hex, vulkanShadersFingerprint,
                       "the committed SPIR-V (Sources/CTillerShaders/shaders.c) is stale: run scripts/build-shaders.sh")
        for t in VulkanKernelChoice.types {
            for k in ["matvec_sg", "matvec_sh", "matmul", "embed"] { XCTAssertTrue(vulkanShaderNames.contains("\(k)_\(t)"), "\(k)_\(t)") }
        }
    }

    func testKernelChoiceTable() {
        let cases: [(GGMLType, Int, Bool, String)] = [
            (.q4_1, 1, true, "matvec_sg_Q4_1"), (.q4_1, 1, false, "matvec_sh_Q4_1"), (.q6_K, 8, true, "matvec_sg_Q6_K"),
            (.q6_K, 9, true, "matmul_Q6_K"), (.bf16, 64, false, "matmul_BF16"), (.f32, 4, true, "matvec_sg_F32"),
        ]
        for (type, rows, sg, shader) in cases {
            XCTAssertEqual(VulkanKernelChoice.decide(type: type, rows: rows, subgroupArithmetic: sg).shader, shader, "\(type) \(rows) \(sg)")
        }
        // The tiled kernel's row tile: the fewest of 16, 32, 64 rows that cover the batch.
        let tiles: [(Int, Int)] = [(1, 0), (8, 0), (9, 16), (16, 16), (17, 32), (32, 32), (33, 64), (64, 64), (65, 64), (4096, 64)]
        for (rows, tile) in tiles {
            let c = VulkanKernelChoice.decide(type: .q4_1, rows: rows, subgroupArithmetic: true)
            XCTAssertEqual(c.rowTile, tile, "rows \(rows)")
            XCTAssertEqual(c.description, tile == 0 ? "matvec_sg_Q4_1" : "matmul_Q4_1 64x\(tile)", "rows \(rows)")
        }
    }

    /// Every weight type, mat-vec (subgroup and shared-memory reductions) and tiled, against the CPU
    /// backend's product; one matrix also split into parts.
    func testMatmulEveryType() throws {
        let d = try testDevice()
        let out = 80, inF = 512
        for (ti, type) in VulkanKernelChoice.types.enumerated() {
            let (raw, owner) = randomMatrix(type, rows: out, cols: inF, seed: UInt64(ti))
            let gpu = try VulkanMatrix(device: d, raw)
            let split = try VulkanMatrix(device: d, raw, partBytes: 30 * raw.type.byteCount(elements: inF)!)
            XCTAssertEqual(split.parts.count, 3)
            for rows in [1, 5, 13, 30, 70] {
                var rng = Rng(UInt64(rows))
                let x = rng.floats(rows * inF)
                let want = try CPURef.matmul(raw, x, rows: rows)
                let matrices: [VulkanMatrix] = rows == 5 || rows == 70 ? [gpu, split] : [gpu]
                for (mi, m) in matrices.enumerated() {
                    let xs = try guarded(d, count: x.count, values: x)
                    let ys = try guarded(d, count: rows * out)
                    let step = try VulkanStep(device: d)
                    try step.matmul(m, xs, rows: rows, into: ys)
                    try step.submit()
                    let got = try readGuarded(d, ys, count: rows * out, "\(type) rows \(rows) matrix \(mi)")
                    assertClose(got, want, 2e-6, "\(type) rows \(rows) matrix \(mi)")
                }
            }
            _ = owner
        }
    }

    /// Float weights whose rows are not whole 32-element runs nor whole vec4s (70 columns): the
    /// kernels' element-by-element tails and unaligned input reads, mat-vec and tiled.
    func testMatmulRaggedWidth() throws {
        let d = try testDevice()
        let out = 67, inF = 70
        for (ti, type) in [GGMLType.f32, .f16, .bf16].enumerated() {
            let (raw, owner) = randomMatrix(type, rows: out, cols: inF, seed: 50 + UInt64(ti))
            let m = try VulkanMatrix(device: d, raw)
            for rows in [1, 3, 8, 9, 40] {
                var rng = Rng(UInt64(rows) + 7)
                let x = rng.floats(rows * inF)
                let want = try CPURef.matmul(raw, x, rows: rows)
                let xs = try guarded(d, count: x.count, values: x)
                let ys = try guarded(d, count: rows * out)
                let step = try VulkanStep(device: d)
                try step.matmul(m, xs, rows: rows, into: ys)
                try step.submit()
                assertClose(try readGuarded(d, ys, count: rows * out, "\(type) rows \(rows)"), want, 2e-6, "\(type) rows \(rows) width \(inF)")
            }
            _ = owner
        }
    }

    /// The shared-memory mat-vec reduction runs even where subgroup arithmetic exists.
    func testMatvecSharedMemoryFallback() throws {
        let d = try testDevice()
        let (raw, owner) = randomMatrix(.q4_K, rows: 33, cols: 256, seed: 7)
        let m = try VulkanMatrix(device: d, raw)
        var rng = Rng(3)
        let x = rng.floats(2 * 256)
        let want = try CPURef.matmul(raw, x, rows: 2)
        for shader in ["matvec_sh_Q4_K", "matvec_sg_Q4_K"] where shader == "matvec_sh_Q4_K" || d.info.features.subgroupArithmetic {
            let xs = try guarded(d, count: x.count, values: x)
            let ys = try guarded(d, count: 66)
            let step = try VulkanStep(device: d)
            try step.matvec(shader: shader, m, xs, rows: 2, into: ys)
            try step.submit()
            assertClose(try readGuarded(d, ys, count: 66, shader), want, 2e-6, shader)
        }
        _ = owner
    }

    func testEmbedEveryType() throws {
        let d = try testDevice()
        let rows = 40, width = 256
        for (ti, type) in VulkanKernelChoice.types.enumerated() {
            let (raw, owner) = randomMatrix(type, rows: rows, cols: width, seed: 100 + UInt64(ti))
            let tokens = [0, 39, 17, 17, 5, 22]
            for scale in [nil, Float(3.5)] {
                let want = try CPURef.rows(raw, tokens, scale: scale)
                for m in [try VulkanMatrix(device: d, raw), try VulkanMatrix(device: d, raw, partBytes: 15 * raw.type.byteCount(elements: width)!)] {
                    let xs = try guarded(d, count: want.count)
                    let step = try VulkanStep(device: d)
                    try step.embed(m, tokens: tokens, scale: scale, into: xs)
                    try step.submit()
                    XCTAssertEqual(try readGuarded(d, xs, count: want.count, "embed \(type)"), want, "embed \(type) parts \(m.parts.count)")
                }
            }
            _ = owner
        }
    }

    func testNormRopeActivationsAndElementwise() throws {
        let d = try testDevice()
        var rng = Rng(42)
        let rows = 5, width = 96
        // rmsNorm, out of place and in place
        let x = rng.floats(rows * width, -3, 3), scale = rng.floats(width, 0.5, 1.5)
        let want = CPURef.rmsNorm(x, rows: rows, width: width, scale: scale, eps: 1e-6)
        do {
            let xs = try guarded(d, count: x.count, values: x), ys = try guarded(d, count: x.count), ss = try guarded(d, count: width, values: scale)
            let inPlace = try guarded(d, count: x.count, values: x)
            let step = try VulkanStep(device: d)
            try step.rmsNorm(xs, rows: rows, width: width, scale: ss, eps: 1e-6, into: ys)
            try step.rmsNorm(inPlace, rows: rows, width: width, scale: ss, eps: 1e-6, into: inPlace)
            try step.submit()
            assertClose(try readGuarded(d, ys, count: x.count, "rmsNorm"), want, 1e-6, "rmsNorm")
            assertClose(try readGuarded(d, inPlace, count: x.count, "rmsNorm in place"), want, 1e-6, "rmsNorm in place")
        }
        // RoPE tables and rotation: 3 rows at positions far apart, 4 heads of 32
        do {
            let heads = 4, headDim = 32, half = 16
            let positions = [0, 7, 3000]
            let invFreq = (0..<half).map { Float(1 / pow(10000, Double(2 * $0) / Double(headDim))) }
            let (c, s) = CPURef.ropeTables(positions: positions, invFreq: invFreq, half: half)
            let q = rng.floats(3 * heads * headDim)
            let wantQ = CPURef.rope(q, rows: 3, heads: heads, headDim: headDim, cos: c, sin: s)
            let qs = try guarded(d, count: q.count, values: q)
            let cs = try guarded(d, count: c.count), sn = try guarded(d, count: s.count)
            let step = try VulkanStep(device: d)
            try step.ropeTables(positions: positions, invFreq: invFreq, half: half, cos: cs, sin: sn)
            try step.rope(qs, rows: 3, heads: heads, headDim: headDim, cos: cs, sin: sn)
            try step.submit()
            XCTAssertEqual(try readGuarded(d, cs, count: c.count, "cos"), c)
            XCTAssertEqual(try readGuarded(d, sn, count: s.count, "sin"), s)
            assertClose(try readGuarded(d, qs, count: q.count, "rope"), wantQ, 1e-6, "rope")
        }
        // Gated activations, over a range that includes large |g| (saturation, no inf/NaN)
        for (kind, vk) in [(Activation.silu, VulkanActivation.silu), (.geluTanh, .geluTanh), (.gelu, .gelu)] {
            var g = rng.floats(1000, -8, 8)
            g += [-100, -30, 30, 100, 0]
            let u = rng.floats(g.count)
            let wantG = CPURef.gated(g, u, kind: kind)
            let gs = try guarded(d, count: g.count, values: g), us = try guarded(d, count: u.count, values: u)
            let step = try VulkanStep(device: d)
            try step.gatedActivation(gs, us, count: g.count, kind: vk)
            try step.submit()
            assertClose(try readGuarded(d, gs, count: g.count, "\(kind)"), wantG, 2e-6, "\(kind)")
        }
        // add, addBias, addScaled (a steering vector on some rows), projectOut, softcap, copy, read; scale
        do {
            let y0 = rng.floats(rows * width, -40, 40), a = rng.floats(rows * width), b = rng.floats(width)
            var dir = rng.floats(width)
            let norm = dir.reduce(0) { $0 + $1 * $1 }.squareRoot()
            dir = dir.map { $0 / norm }
            let w = CPURef.elementwise(y0, a: a, bias: b, coef: -2.5, dir: dir, rows: rows, width: width, cap: 30)
            let ys = try guarded(d, count: w.count, values: y0), asl = try guarded(d, count: a.count, values: a)
            let bs = try guarded(d, count: width, values: b), ds = try guarded(d, count: width, values: dir)
            let copied = try guarded(d, count: w.count)
            let step = try VulkanStep(device: d)
            try step.add(asl, into: ys, count: w.count)
            try step.addBias(bs, width: width, rows: rows, into: ys)
            try step.addScaled(vector: bs, coef: -2.5, into: VulkanSlice(ys.buffer, offset: ys.offset + width), rows: 2, width: width)
            try step.projectOut(direction: ds, from: VulkanSlice(ys.buffer, offset: ys.offset + width), rows: 3, width: width)
            try step.softcap(ys, cap: 30, count: w.count)
            try step.copy(ys, into: copied, count: w.count)
            var host = [Float](repeating: 0, count: w.count)
            try host.withUnsafeMutableBufferPointer { try step.read(copied, count: w.count, into: $0.baseAddress!) }
            try step.submit()
            assertClose(try readGuarded(d, ys, count: w.count, "elementwise"), w, 1e-6, "elementwise")
            assertClose(host, w, 1e-6, "copy + read")
            // scale (Gemma's embedding scale where it is not folded into the gather)
            let scaled = try guarded(d, count: y0.count, values: y0)
            let step2 = try VulkanStep(device: d)
            try step2.scale(scaled, by: 0.75, count: y0.count)
            try step2.submit()
            XCTAssertEqual(try readGuarded(d, scaled, count: y0.count, "scale"), y0.map { $0 * 0.75 })
        }
    }

    /// Attention against the CPU backend: GQA, several new queries after cached positions, a shared
    /// prefix, a sliding window, a score soft-cap, and head sizes 64 and 256.
    func testAttention() throws {
        let d = try testDevice()
        var rng = Rng(9)
        struct Case { let heads, kvHeads, headDim, first, queries, prefix: Int; let window: Int?; let softcap: Float? }
        let cases = [
            Case(heads: 4, kvHeads: 2, headDim: 64, first: 0, queries: 7, prefix: 0, window: nil, softcap: nil),
            Case(heads: 4, kvHeads: 1, headDim: 64, first: 130, queries: 3, prefix: 50, window: nil, softcap: nil),
            Case(heads: 2, kvHeads: 2, headDim: 256, first: 70, queries: 2, prefix: 0, window: 16, softcap: 50),
            Case(heads: 8, kvHeads: 4, headDim: 32, first: 0, queries: 200, prefix: 0, window: 100, softcap: nil),
        ]
        for (ci, c) in cases.enumerated() {
            let qDim = c.heads * c.headDim, kvDim = c.kvHeads * c.headDim
            let positions = c.first + c.queries
            let q = rng.floats(c.queries * qDim, -2, 2)
            let pk = rng.floats(max(c.prefix, 1) * kvDim), pv = rng.floats(max(c.prefix, 1) * kvDim)
            let k = rng.floats((positions - c.prefix) * kvDim), v = rng.floats((positions - c.prefix) * kvDim)
            let scale = 1 / Float(c.headDim).squareRoot()
            let want = CPURef.attention(CPURef.Attention(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, first: c.first,
                                                         queries: c.queries, prefix: c.prefix, window: c.window, softcap: c.softcap, scale: scale),
                                        q: q, k: k, v: v, pk: pk, pv: pv)
            let qs = try guarded(d, count: q.count, values: q), ks = try guarded(d, count: k.count, values: k)
            let vs = try guarded(d, count: v.count, values: v), os = try guarded(d, count: q.count)
            let pks = try guarded(d, count: pk.count, values: pk), pvs = try guarded(d, count: pv.count, values: pv)
            let step = try VulkanStep(device: d)
            func seam(_ v: VulkanSlice) -> BufferSlice { BufferSlice(v.buffer, offset: v.offset) }
            try step.attention([AttentionJob(
                q: seam(qs), qStride: qDim, keys: seam(ks), values: seam(vs), prefixKeys: c.prefix > 0 ? seam(pks) : nil,
                prefixValues: c.prefix > 0 ? seam(pvs) : nil, prefixLength: c.prefix, out: seam(os), queries: c.queries, firstPosition: c.first, heads: c.heads, kvHeads: c.kvHeads,
                headDim: c.headDim, scale: scale, softcap: c.softcap, window: c.window)])
            try step.submit()
            // The score soft-cap goes through a different tanh than the CPU's (within a few ulp).
            assertClose(try readGuarded(d, os, count: q.count, "attention \(ci)"), want, c.softcap == nil ? 2e-6 : 1e-5, "attention case \(ci)")
        }
    }

    /// Barriers go in only where an op touches what an un-barriered earlier op wrote or read.
    func testBarriersOnlyOnHazards() throws {
        let d = try testDevice()
        let a = try d.upload([Float](repeating: 1, count: 64)), b = try d.upload([Float](repeating: 2, count: 64))
        let step = try VulkanStep(device: d)
        try step.scale(VulkanSlice(a), by: 2, count: 32)                  // writes a[0..<32]
        try step.scale(VulkanSlice(a, offset: 32), by: 3, count: 32)      // disjoint: no barrier
        try step.scale(VulkanSlice(b), by: 4, count: 64)                  // other buffer: no barrier
        XCTAssertEqual(step.barriers, 0)
        try step.add(VulkanSlice(a), into: VulkanSlice(b), count: 64)     // reads a, rewrites b: barrier
        XCTAssertEqual(step.barriers, 1)
        try step.scale(VulkanSlice(a), by: 10, count: 64)                 // writes a, which the add read: barrier
        XCTAssertEqual(step.barriers, 2)
        try step.submit()
        XCTAssertEqual(try d.read(a, count: 64), [Float](repeating: 20, count: 32) + [Float](repeating: 30, count: 32))
        XCTAssertEqual(try d.read(b, count: 64), [Float](repeating: 10, count: 32) + [Float](repeating: 11, count: 32))
    }
}
