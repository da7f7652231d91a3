import Foundation
import TillerTensor
@testable import TillerModels

// The CPU backend's results for the Vulkan op tests, through the host-pointer Backend of main
// before issue 27's seam (Seam/CPUReference.swift is the same through the recorder seam; Package.swift
// builds one of the two).
enum CPURef {
    static let cpu = CPUBackend()

    static func matmul(_ raw: RawTensor, _ x: [Float], rows: Int) throws -> [Float] {
        let m = try cpu.matrix(raw, modelBytesFP32: 0)
        var y = [Float](repeating: 0, count: rows * m.outFeatures)
        m.apply(x, rows: rows, into: &y)
        return y
    }

    static func rows(_ raw: RawTensor, _ tokens: [Int], scale: Float?) throws -> [Float] {
        let m = try cpu.matrix(raw, modelBytesFP32: 0)
        let width = m.inFeatures
        var out = [Float](repeating: 0, count: tokens.count * width)
        for (r, t) in tokens.enumerated() { out.withUnsafeMutableBufferPointer { m.row(t, into: $0.baseAddress! + r * width) } }
        if let s = scale { cpu.scale(&out, by: s, count: out.count) }
        return out
    }

    static func rmsNorm(_ x: [Float], rows: Int, width: Int, scale: [Float], eps: Float) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        cpu.rmsNorm(x, rows: rows, width: width, scale: scale, eps: eps, into: &y)
        return y
    }

    static func ropeTables(positions: [Int], invFreq: [Float], half: Int) -> ([Float], [Float]) {
        var c = [Float](repeating: 0, count: positions.count * half), s = c
        cpu.ropeTables(positions: positions, invFreq: invFreq, half: half, cos: &c, sin: &s)
        return (c, s)
    }

    static func rope(_ x: [Float], rows: Int, heads: Int, headDim: Int, cos: [Float], sin: [Float]) -> [Float] {
        var y = x
        cpu.rope(&y, rows: rows, heads: heads, headDim: headDim, cos: cos, sin: sin)
        return y
    }

    static func gated(_ g: [Float], _ u: [Float], kind: Activation) -> [Float] {
        var y = g
        cpu.gatedActivation(&y, u, count: g.count, kind: kind)
        return y
    }

    /// y += a; y[r] += bias; rows 1–2 += coef·b; rows 1–3 lose their `dir` component; softcap.
    static func elementwise(_ y0: [Float], a: [Float], bias: [Float], coef: Float, dir: [Float], rows: Int, width: Int, cap: Float) -> [Float] {
        var w = y0
        cpu.add(a, into: &w, count: w.count)
        cpu.addBias(bias, width: width, rows: rows, into: &w)
        w.withUnsafeMutableBufferPointer { p in
            for r in 1..<3 { cpu.addScaled(bias, coef, into: p.baseAddress! + r * width, count: width) }
            for r in 1..<4 { cpu.projectOut(dir, from: p.baseAddress! + r * width, count: width) }
        }
        cpu.softcap(&w, cap: cap, count: w.count)
        return w
    }

    struct Attention { let heads, kvHeads, headDim, first, queries, prefix: Int; let window: Int?; let softcap: Float?; let scale: Float }

    static func attention(_ c: Attention, q: [Float], k: [Float], v: [Float], pk: [Float], pv: [Float]) -> [Float] {
        let qDim = c.heads * c.headDim
        var out = [Float](repeating: 0, count: q.count)
        var scratch = [Float](repeating: 0, count: c.heads * (c.first + c.queries))
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            pk.withUnsafeBufferPointer { pkp in pv.withUnsafeBufferPointer { pvp in out.withUnsafeMutableBufferPointer { op in
                let job = AttentionJob(q: qp.baseAddress!, qStride: qDim, keys: kp.baseAddress!, values: vp.baseAddress!,
                                       prefixKeys: c.prefix > 0 ? pkp.baseAddress! : nil, prefixValues: c.prefix > 0 ? pvp.baseAddress! : nil,
                                       prefixLength: c.prefix, out: op.baseAddress!, queries: c.queries, firstPosition: c.first,
                                       heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, scale: c.scale, softcap: c.softcap,
                                       window: c.window)
                cpu.attention([job], scratch: &scratch)
            } } }
        } } }
        return out
    }
}
