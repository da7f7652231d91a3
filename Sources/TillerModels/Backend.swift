import Foundation
import TillerFormats
import TillerTensor

// The seam between the transformer recipe and where its arithmetic runs. Every per-token
// operation of the forward pass (embedding rows and their scale, projections and biases, norms,
// the RoPE tables and rotation, attention and the KV-cache writes, activations, residual adds,
// the steering adds and ablations at resid_post, the final soft-cap) is one of these calls, so a
// GPU backend implements this protocol without touching any model file. Buffers are host pointers
// today (unified memory on a GPU); capture reads resid_post rows into host arrays. The CPU backend
// is the only one in the package; the tests add a recording one.

/// A weight matrix W [out, in] prepared for y = x·Wᵀ.
public protocol MatrixOperator: AnyObject, Sendable {
    var outFeatures: Int { get }
    var inFeatures: Int { get }
    /// y[rows, out] = x[rows, in] · Wᵀ
    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>)
    /// Row `index` of W as fp32 (embedding lookup from a tied or quantized table).
    func row(_ index: Int, into out: UnsafeMutablePointer<Float>)
}

public protocol Backend: AnyObject, Sendable {
    var name: String { get }
    /// Prepares a 2-D weight tensor (any file precision) for projections. `modelBytesFP32` is the
    /// whole model's size in fp32, so the backend can decide whether extra fp32 copies fit.
    func matrix(_ raw: RawTensor, modelBytesFP32: Int) throws -> MatrixOperator
    /// Runs body(0..<n), spread over the backend's workers; returns when all are done.
    func parallelFor(_ n: Int, _ body: @escaping @Sendable (Int) -> Void)

    /// x[r] ← x[r] · rsqrt(mean(x[r]²) + eps) · scale, for `rows` rows of `width` (in place allowed: x == y).
    func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, width: Int, scale: UnsafePointer<Float>, eps: Float,
                 into y: UnsafeMutablePointer<Float>)
    /// Rotate-half RoPE on `heads` heads of `headDim` per row; cos/sin are [rows, headDim/2].
    func rope(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int,
              cos: UnsafePointer<Float>, sin: UnsafePointer<Float>)
    /// gate[i] ← act(gate[i]) · up[i]
    func gatedActivation(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int, kind: Activation)
    /// y[i] += x[i]
    func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int)
    /// y[r·width + i] += b[i] for each of `rows` rows (a projection's bias).
    func addBias(_ b: UnsafePointer<Float>, width: Int, rows: Int, into y: UnsafeMutablePointer<Float>)
    /// y[i] += a · x[i] (a steering vector added at resid_post).
    func addScaled(_ x: UnsafePointer<Float>, _ a: Float, into y: UnsafeMutablePointer<Float>, count: Int)
    /// x ← x − (x·d) d for a unit direction d (directional ablation of one row of `count`).
    func projectOut(_ d: UnsafePointer<Float>, from x: UnsafeMutablePointer<Float>, count: Int)
    /// x[i] ← s · x[i] (Gemma's embedding scale).
    func scale(_ x: UnsafeMutablePointer<Float>, by s: Float, count: Int)
    /// x[i] ← cap · tanh(x[i] / cap) (a logit soft-cap).
    func softcap(_ x: UnsafeMutablePointer<Float>, cap: Float, count: Int)
    /// RoPE tables for rows at `positions`: cos/sin [positions.count, half] of
    /// float(position) · invFreq[i], in fp32 as transformers computes them.
    func ropeTables(positions: [Int], invFreq: UnsafePointer<Float>, half: Int,
                    cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>)
    /// dst[i] = src[i] (KV-cache writes, gathering logit rows).
    func copy(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int)
    /// Causal attention of each job's new queries against its sequence's cached keys/values.
    /// `scratch` holds at least Σ over jobs of heads·(firstPosition + queries) floats.
    func attention(_ jobs: [AttentionJob], scratch: UnsafeMutablePointer<Float>)
}

/// The FFN's gate activation, as config.json's `hidden_act` / `hidden_activation` names it.
public enum Activation: Sendable {
    case silu
    /// GELU, tanh approximation (`gelu_pytorch_tanh`, `gelu_new`).
    case geluTanh
    /// GELU, exact: x·Φ(x) (`gelu`).
    case gelu

    /// transformers' activation name → activation (the names ModelConfig.supportedActivations lists).
    public init(configName: String) throws {
        switch configName {
        case "silu", "swish": self = .silu
        case "gelu_pytorch_tanh", "gelu_new": self = .geluTanh
        case "gelu": self = .gelu
        default:
            throw ModelError("hidden_act \"\(configName)\" is not supported (\(ModelConfig.supportedActivations.joined(separator: ", ")))")
        }
    }
}

/// One sequence's attention at one layer: `queries` new tokens whose absolute positions start at
/// `firstPosition`; the cache already holds keys/values for positions 0 ..< firstPosition+queries:
/// positions below `prefixLength` in `prefixKeys`/`prefixValues` (a shared parent cache), the
/// rest in `keys`/`values`, whose row 0 is position `prefixLength`.
public struct AttentionJob: @unchecked Sendable {
    public var q: UnsafePointer<Float>          // [queries, heads*headDim], row stride qStride
    public var qStride: Int
    public var keys: UnsafePointer<Float>       // [positions, kvHeads*headDim]
    public var values: UnsafePointer<Float>
    public var prefixKeys: UnsafePointer<Float>?
    public var prefixValues: UnsafePointer<Float>?
    public var prefixLength: Int
    public var out: UnsafeMutablePointer<Float> // [queries, heads*headDim], row stride qStride
    public var queries: Int
    public var firstPosition: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var scale: Float
    public var softcap: Float?
    /// Keys at positions > p − window are visible to the query at p (transformers' convention).
    public var window: Int?
}

// MARK: - CPU

/// The CPU backend: projections through TillerTensor's kernels, everything else here, in fp32.
public final class CPUBackend: Backend, @unchecked Sendable {
    public static let shared = CPUBackend()
    public var name: String { "cpu" }
    /// Models whose fp32 size is at most this keep an fp32 copy of every matrix beside the
    /// file's blocks: many-row products (prefill, batched decode, the judge) then run on it — the
    /// packed AVX-512 kernel where the CPU has it, else sgemm — while few-row products (batch-1
    /// decode) still stream the compact blocks. Larger models keep only the file's precision (an
    /// 8B bf16 model stays at 16 GB). The default is a third of physical memory, at least 3 GiB
    /// (8 GiB on a 24 GiB machine: Llama-3.2-1B's 4.9 GB copy fits, Gemma-2-2B's 10.5 GB does not).
    public let fp32CopyLimitBytes: Int

    public init(fp32CopyLimitBytes: Int = CPUBackend.defaultFP32CopyLimit) {
        self.fp32CopyLimitBytes = fp32CopyLimitBytes
    }

    public static var defaultFP32CopyLimit: Int {
        max(3 << 30, Int(min(ProcessInfo.processInfo.physicalMemory / 3, UInt64(Int.max))))
    }

    public func matrix(_ raw: RawTensor, modelBytesFP32: Int) throws -> MatrixOperator {
        let native = try WeightMatrix(raw, keep: .native)
        // Batch-1 decode reads Q4_1/Q8_0 matrices from slabs for the VNNI kernel where the CPU has it.
        let decode = VNNIMatrix(native)
        let fits = modelBytesFP32 <= fp32CopyLimitBytes
        // On AVX-512 CPUs the copy is packed in slabs for the packed kernel (it replaces the
        // row-major one: every many-row product runs through it); elsewhere it is row-major, for sgemm.
        if fits && PackedMatrix.available {
            return CPUMatrix(native: native, fp32: nil, packed: PackedMatrix(native), decode: decode)
        }
        let copy = raw.type != .f32 && fits
        return CPUMatrix(native: native, fp32: copy ? try WeightMatrix(raw, keep: .f32) : nil, decode: decode)
    }

    public func parallelFor(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
        if n <= 0 { return }
        if n == 1 { body(0); return }
        WorkerPool.shared.parallelFor(n, body)
    }

    public func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, width: Int, scale: UnsafePointer<Float>, eps: Float,
                        into y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let xr = x + r * width, yr = y + r * width
            let ms = sumOfSquares(xr, count: width) / Float(width)
            // transformers: x * torch.rsqrt(mean + eps), then times the (1+w) or w scale, all fp32.
            let inv = 1 / (ms + eps).squareRoot()
            for i in 0..<width { yr[i] = (xr[i] * inv) * scale[i] }
        }
    }

    public func rope(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int,
                     cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
        let half = headDim / 2
        for r in 0..<rows {
            let c = cos + r * half, s = sin + r * half
            for h in 0..<heads {
                let v = x + (r * heads + h) * headDim
                for i in 0..<half {
                    let a = v[i], b = v[i + half]
                    // q·cos + rotate_half(q)·sin, rotate_half = (−x2, x1)
                    v[i] = a * c[i] - b * s[i]
                    v[i + half] = b * c[i] + a * s[i]
                }
            }
        }
    }

    public func gatedActivation(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int,
                                kind: Activation) {
        switch kind {
        case .silu:
            // Eight lanes at a time through `vexp` (within 2 ulp of expf); the tail one by one.
            var i = 0
            while i + 8 <= count {
                let g = vload(gate + i)
                vstore(g / (1 + vexp(-g)) * vload(up + i), gate + i)
                i += 8
            }
            for j in i..<count {
                let g = gate[j]
                gate[j] = g / (1 + Foundation.exp(-g)) * up[j]
            }
        case .geluTanh:
            let k0: Float = 0.7978845608028654 // sqrt(2/π)
            // tanh(u) = 1 − 2 / (e^(2u) + 1), eight lanes at a time (e^(2u) saturates to 0 or 2^127,
            // so tanh saturates to ∓1); the tail through Foundation.tanh.
            var i = 0
            while i + 8 <= count {
                let g = vload(gate + i)
                let t = 1 - 2 / (vexp(2 * k0 * (g + 0.044715 * g * g * g)) + 1)
                vstore(0.5 * g * (1 + t) * vload(up + i), gate + i)
                i += 8
            }
            for j in i..<count {
                let g = gate[j]
                let t = Foundation.tanh(k0 * (g + 0.044715 * g * g * g))
                gate[j] = 0.5 * g * (1 + t) * up[j]
            }
        case .gelu:
            for i in 0..<count {
                let g = Double(gate[i])
                gate[i] = Float(0.5 * g * (1 + Foundation.erf(g / 2.0.squareRoot()))) * up[i]
            }
        }
    }

    public func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    public func addBias(_ b: UnsafePointer<Float>, width: Int, rows: Int, into y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows { axpy(1, b, y + r * width, count: width) }
    }

    public func addScaled(_ x: UnsafePointer<Float>, _ a: Float, into y: UnsafeMutablePointer<Float>, count: Int) {
        axpy(a, x, y, count: count)
    }

    public func projectOut(_ d: UnsafePointer<Float>, from x: UnsafeMutablePointer<Float>, count: Int) {
        axpy(-dotProduct(x, d, count: count), d, x, count: count)
    }

    public func scale(_ x: UnsafeMutablePointer<Float>, by s: Float, count: Int) {
        for i in 0..<count { x[i] *= s }
    }

    public func softcap(_ x: UnsafeMutablePointer<Float>, cap: Float, count: Int) {
        softcapInPlace(x, cap: cap, count: count)
    }

    public func ropeTables(positions: [Int], invFreq: UnsafePointer<Float>, half: Int,
                           cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>) {
        for (row, p) in positions.enumerated() {
            let pos = Float(p)
            for i in 0..<half {
                let f = pos * invFreq[i]
                cos[row * half + i] = Foundation.cos(f)
                sin[row * half + i] = Foundation.sin(f)
            }
        }
    }

    public func copy(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int) {
        dst.update(from: src, count: count)
    }

    public func attention(_ jobs: [AttentionJob], scratch: UnsafeMutablePointer<Float>) {
        // One task per (sequence, head); a head's queries run in order so its score row is reused.
        let headsPerJob = jobs.first?.heads ?? 0
        let sp = SendablePointer(scratch)
        parallelFor(jobs.count * headsPerJob) { i in
            let j = i / headsPerJob, h = i % headsPerJob
            // Score rows are laid out job after job, each job's heads side by side.
            var offset = 0
            for k in 0..<j { offset += headsPerJob * (jobs[k].firstPosition + jobs[k].queries) }
            let keys = jobs[j].firstPosition + jobs[j].queries
            attendHead(jobs[j], head: h, scores: sp.p + offset + h * keys)
        }
    }
}

/// TillerTensor's WeightMatrix behind the seam, with an optional fp32 twin for many-row products.
final class CPUMatrix: MatrixOperator, @unchecked Sendable {
    let native: WeightMatrix
    let fp32: WeightMatrix?
    let packed: PackedMatrix?
    let decode: VNNIMatrix?
    init(native: WeightMatrix, fp32: WeightMatrix?, packed: PackedMatrix? = nil, decode: VNNIMatrix? = nil) {
        self.native = native
        self.fp32 = fp32
        self.packed = packed
        self.decode = decode
    }
    var outFeatures: Int { native.outFeatures }
    var inFeatures: Int { native.inFeatures }
    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        // From 8 rows on, the packed kernel (AVX-512) or OpenBLAS sgemm on the fp32 twin beat panel
        // dequantization (sgemm: 3.4× on batch-16 decode of SmolLM2; packed: 302 vs 209 tok/s on
        // 32×64 steered generation, since sgemm re-packs the whole matrix on every call).
        if let p = packed, rows >= WeightMatrix.gemmMinRows, p.apply(x, rows: rows, into: y) {
            return
        }
        // The VNNI slabs: up to three rows always (where WeightMatrix.apply would run its one-row
        // kernels); without an fp32 copy (a model over the copy limit) up to VNNIMatrix.maxRows,
        // instead of dequantizing every panel on every decode step.
        if let d = decode,
           rows <= VNNIMatrix.oneRowKernelMaxRows || (packed == nil && fp32 == nil && rows <= VNNIMatrix.maxRows),
           d.apply(x, rows: rows, into: y) {
            return
        }
        if let f = fp32, rows >= WeightMatrix.gemmMinRows {
            f.apply(x, rows: rows, into: y)
        } else {
            native.apply(x, rows: rows, into: y)
        }
    }
    func row(_ index: Int, into out: UnsafeMutablePointer<Float>) { native.dequantizeRow(index, into: out) }
}

struct SendablePointer: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { self.p = p }
}

/// Softmax attention for every query of one head, scores in fp32 as transformers' eager path.
@inline(__always)
func attendHead(_ job: AttentionJob, head h: Int, scores: UnsafeMutablePointer<Float>) {
    let d = job.headDim
    let kvDim = job.kvHeads * d
    let g = h / (job.heads / job.kvHeads)
    // Position j's key/value row: the shared prefix below `split`, own storage from there on.
    let split = job.prefixLength
    let kOwn = job.keys + g * d, vOwn = job.values + g * d
    let kPre = (job.prefixKeys ?? job.keys) + g * d, vPre = (job.prefixValues ?? job.values) + g * d
    for t in 0..<job.queries {
        let p = job.firstPosition + t
        var lo = 0
        if let w = job.window { lo = max(0, p - w + 1) }
        let q = job.q + t * job.qStride + h * d
        if job.softcap == nil,
           MatvecKernels.attendQuery(q, keys: kPre, kOwn, values: vPre, vOwn, split: split, kvDim: kvDim, headDim: d, lo: lo, p: p,
                                     scale: job.scale, scores: scores, out: job.out + t * job.qStride + h * d) {
            continue
        }
        var m = -Float.infinity
        var j = lo
        if d % 8 == 0 {
            // Four keys at a time: each query vector is loaded once for the four.
            while j + 4 <= p + 1 {
                let k0 = j < split ? kPre + j * kvDim : kOwn + (j - split) * kvDim
                let k1 = j + 1 < split ? kPre + (j + 1) * kvDim : kOwn + (j + 1 - split) * kvDim
                let k2 = j + 2 < split ? kPre + (j + 2) * kvDim : kOwn + (j + 2 - split) * kvDim
                let k3 = j + 3 < split ? kPre + (j + 3) * kvDim : kOwn + (j + 3 - split) * kvDim
                var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
                var i = 0
                while i < d {
                    let qv = vload(q + i)
                    a0.addProduct(qv, vload(k0 + i)); a1.addProduct(qv, vload(k1 + i))
                    a2.addProduct(qv, vload(k2 + i)); a3.addProduct(qv, vload(k3 + i))
                    i += 8
                }
                let s = SIMD4<Float>(horizontalSum(a0), horizontalSum(a1), horizontalSum(a2), horizontalSum(a3)) * job.scale
                for o in 0..<4 { scores[j + o - lo] = s[o] }
                j += 4
            }
        }
        while j <= p {
            let k = j < split ? kPre + j * kvDim : kOwn + (j - split) * kvDim
            scores[j - lo] = dotProduct(q, k, count: d) * job.scale
            j += 1
        }
        // The soft-cap over the row of scores at once (`vtanh`), then its maximum.
        if let cap = job.softcap { softcapInPlace(scores, cap: cap, count: p - lo + 1) }
        m = maxValue(scores, count: p - lo + 1)
        // The softmax's exponentials, eight at a time (`vexp`); the tail through the same function.
        let n = p - lo + 1
        let mv = SIMD8<Float>(repeating: m)
        var sums = SIMD8<Float>()
        var e = 0
        while e + 8 <= n {
            let x = vexp(vload(scores + e) - mv)
            vstore(x, scores + e)
            sums += x
            e += 8
        }
        var sum = horizontalSum(sums)
        while e < n {
            let x = vexp(SIMD8<Float>(repeating: scores[e] - m))[0]
            scores[e] = x
            sum += x
            e += 1
        }
        let inv = 1 / sum
        let out = job.out + t * job.qStride + h * d
        // Σ_j w_j·v_j, 32 output lanes at a time held in registers across the keys (an axpy per
        // key would load and store the output row for every key).
        var c = 0
        while c + 32 <= d {
            var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
            for j in lo...p {
                let v = (j < split ? vPre + j * kvDim : vOwn + (j - split) * kvDim) + c
                let w = SIMD8<Float>(repeating: scores[j - lo] * inv)
                a0.addProduct(w, vload(v)); a1.addProduct(w, vload(v + 8))
                a2.addProduct(w, vload(v + 16)); a3.addProduct(w, vload(v + 24))
            }
            vstore(a0, out + c); vstore(a1, out + c + 8); vstore(a2, out + c + 16); vstore(a3, out + c + 24)
            c += 32
        }
        if c < d {
            for i in c..<d { out[i] = 0 }
            for j in lo...p {
                let v = j < split ? vPre + j * kvDim : vOwn + (j - split) * kvDim
                axpy(scores[j - lo] * inv, v + c, out + c, count: d - c)
            }
        }
    }
}
