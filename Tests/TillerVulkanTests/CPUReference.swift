import Foundation
import TillerTensor
@testable import TillerModels

// The CPU backend's results for the Vulkan op tests, through the recorder seam: host arrays
// uploaded, the ops recorded, results read back at submit.
enum CPURef {
    static let cpu = CPUBackend()

    private static func run(_ outputs: [(BackendBuffer, Int)], _ record: (StepRecorder) -> Void) -> [[Float]] {
        let rec = cpu.makeRecorder()
        record(rec)
        var results = outputs.map { [Float](repeating: 0, count: $0.1) }
        for i in outputs.indices {
            results[i].withUnsafeMutableBufferPointer { rec.read(outputs[i].0.at(), count: outputs[i].1, into: $0.baseAddress!) }
        }
        rec.submit()
        return results
    }

    static func matmul(_ raw: RawTensor, _ x: [Float], rows: Int) throws -> [Float] {
        let m = try cpu.matrix(raw, modelBytesFP32: 0)
        let xb = try cpu.upload(x), yb = cpu.buffer(count: rows * m.outFeatures)
        return run([(yb, rows * m.outFeatures)]) { $0.matmul(m, xb.at(), rows: rows, into: yb.at()) }[0]
    }

    static func rows(_ raw: RawTensor, _ tokens: [Int], scale: Float?) throws -> [Float] {
        let m = try cpu.matrix(raw, modelBytesFP32: 0)
        let n = tokens.count * m.inFeatures, xb = cpu.buffer(count: n)
        return run([(xb, n)]) { $0.embed(m, tokens: tokens, scale: scale, into: xb.at()) }[0]
    }

    static func rmsNorm(_ x: [Float], rows: Int, width: Int, scale: [Float], eps: Float) -> [Float] {
        let xb = try! cpu.upload(x), sb = try! cpu.upload(scale), yb = cpu.buffer(count: x.count)
        return run([(yb, x.count)]) { $0.rmsNorm(xb.at(), rows: rows, width: width, weight: sb.at(), eps: eps, into: yb.at()) }[0]
    }

    static func ropeTables(positions: [Int], invFreq: [Float], half: Int) -> ([Float], [Float]) {
        let fb = try! cpu.upload(invFreq), n = positions.count * half
        let cb = cpu.buffer(count: n), sb = cpu.buffer(count: n)
        let r = run([(cb, n), (sb, n)]) { $0.ropeTables(positions: positions, invFreq: fb.at(), half: half, cos: cb.at(), sin: sb.at()) }
        return (r[0], r[1])
    }

    static func rope(_ x: [Float], rows: Int, heads: Int, headDim: Int, cos: [Float], sin: [Float]) -> [Float] {
        let xb = try! cpu.upload(x), cb = try! cpu.upload(cos), sb = try! cpu.upload(sin)
        return run([(xb, x.count)]) { $0.rope(xb.at(), rows: rows, heads: heads, headDim: headDim, cos: cb.at(), sin: sb.at()) }[0]
    }

    static func gated(_ g: [Float], _ u: [Float], kind: Activation) -> [Float] {
        let gb = try! cpu.upload(g), ub = try! cpu.upload(u)
        return run([(gb, g.count)]) { $0.gatedActivation(gb.at(), ub.at(), count: g.count, kind: kind) }[0]
    }

    /// y += a; y[r] += bias; rows 1–2 += coef·b; rows 1–3 lose their `dir` component; softcap.
    static func elementwise(_ y0: [Float], a: [Float], bias: [Float], coef: Float, dir: [Float], rows: Int, width: Int, cap: Float) -> [Float] {
        let yb = try! cpu.upload(y0), ab = try! cpu.upload(a), bb = try! cpu.upload(bias), db = try! cpu.upload(dir)
        return run([(yb, y0.count)]) { r in
            r.add(ab.at(), into: yb.at(), count: y0.count)
            r.addBias(bb.at(), width: width, rows: rows, into: yb.at())
            r.addScaled(bb.at(), coef: coef, into: yb.at(width), rows: 2, width: width)
            r.projectOut(db.at(), from: yb.at(width), rows: 3, width: width)
            r.softcap(yb.at(), cap: cap, count: y0.count)
        }[0]
    }

    struct Attention { let heads, kvHeads, headDim, first, queries, prefix: Int; let window: Int?; let softcap: Float?; let scale: Float }

    static func attention(_ c: Attention, q: [Float], k: [Float], v: [Float], pk: [Float], pv: [Float]) -> [Float] {
        let qDim = c.heads * c.headDim
        let qb = try! cpu.upload(q), kb = try! cpu.upload(k), vb = try! cpu.upload(v), pkb = try! cpu.upload(pk), pvb = try! cpu.upload(pv)
        let ob = cpu.buffer(count: q.count)
        return run([(ob, q.count)]) { r in
            r.attention([AttentionJob(q: qb.at(), qStride: qDim, keys: kb.at(), values: vb.at(), prefixKeys: c.prefix > 0 ? pkb.at() : nil,
                                      prefixValues: c.prefix > 0 ? pvb.at() : nil, prefixLength: c.prefix, out: ob.at(), queries: c.queries,
                                      firstPosition: c.first, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, scale: c.scale,
                                      softcap: c.softcap, window: c.window)])
        }[0]
    }
}
