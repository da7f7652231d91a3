import Foundation
import TillerFormats
import TillerTensor

// MARK: - CPU

/// Host memory as a backend buffer.
final class CPUBuffer: BackendBuffer, @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
    }
    deinit { pointer.deallocate() }
}

extension BufferSlice {
    /// The host address of a CPU buffer's slice.
    @inline(__always)
    var host: UnsafeMutablePointer<Float> { unsafeDowncast(buffer, to: CPUBuffer.self).pointer + offset }
}

/// The CPU backend: projections through TillerTensor's kernels, everything else here, in fp32.
/// Its buffers are host memory and its recorder runs each op as it is recorded.
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
        let copies = CPUKernelChoice.copies(type: raw.type, inFeatures: native.inFeatures,
                                            fitsFP32Limit: modelBytesFP32 <= fp32CopyLimitBytes, features: .current)
        return CPUMatrix(native: native,
                         fp32: copies.fp32 ? try WeightMatrix(raw, keep: .f32) : nil,
                         packed: copies.packed ? PackedMatrix(native) : nil,
                         decode: copies.vnni ? VNNIMatrix(native) : nil)
    }

    public func upload(_ values: [Float]) throws -> BackendBuffer {
        let b = CPUBuffer(count: values.count)
        values.withUnsafeBufferPointer { b.pointer.update(from: $0.baseAddress!, count: values.count) }
        return b
    }

    public func buffer(count: Int) -> BackendBuffer { CPUBuffer(count: count) }

    public func makeRecorder(rowInvariant: Bool) -> StepRecorder { CPURecorder(rowInvariant: rowInvariant) }

    public func kernel(for matrix: MatrixOperator, rows: Int) -> String {
        let m = unsafeDowncast(matrix, to: CPUMatrix.self)
        return "\(m.kernel(rows: rows).rawValue) (\(m.native.type), \(m.copies))"
    }

    /// Runs body(0..<n) over the worker pool; returns when all are done.
    static func parallelFor(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
        if n <= 0 { return }
        if n == 1 { body(0); return }
        WorkerPool.shared.parallelFor(n, body)
    }
}

/// TillerTensor's WeightMatrix behind the seam, with the copies `CPUKernelChoice.copies` chose.
final class CPUMatrix: MatrixOperator, @unchecked Sendable {
    let native: WeightMatrix
    let fp32: WeightMatrix?
    let packed: PackedMatrix?
    let decode: VNNIMatrix?
    let copies: CPUCopies
    init(native: WeightMatrix, fp32: WeightMatrix?, packed: PackedMatrix?, decode: VNNIMatrix?) {
        self.native = native
        self.fp32 = fp32
        self.packed = packed
        self.decode = decode
        copies = CPUCopies(packed: packed != nil, fp32: fp32 != nil, vnni: decode != nil)
    }
    var outFeatures: Int { native.outFeatures }
    var inFeatures: Int { native.inFeatures }

    func kernel(rows: Int, copies c: CPUCopies? = nil, rowInvariant: Bool = false) -> CPUKernel {
        CPUKernelChoice.kernel(type: native.type, inFeatures: native.inFeatures, rows: rows, copies: c ?? copies, features: .current,
                               rowInvariant: rowInvariant)
    }

    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, rowInvariant: Bool = false) {
        guard rows > 0 else { return }
        var k = kernel(rows: rows, rowInvariant: rowInvariant)
        switch k {
        case .packedCopy:
            if packed!.apply(x, rows: rows, into: y) { return }
            k = kernel(rows: rows, copies: CPUCopies(fp32: copies.fp32, vnni: copies.vnni))
        case .vnniOneRow, .vnniRows:
            if decode!.apply(x, rows: rows, into: y, kernel: k) { return }
            // The digits could not represent this input: the fp32 kernels instead.
            k = kernel(rows: rows, copies: CPUCopies(packed: copies.packed, fp32: copies.fp32))
        default: break
        }
        if k == .fp32CopySgemm { fp32!.apply(x, rows: rows, into: y, kernel: .panelsSgemm) } else { native.apply(x, rows: rows, into: y, kernel: k) }
    }
    func row(_ index: Int, into out: UnsafeMutablePointer<Float>) { native.dequantizeRow(index, into: out) }
}

/// Runs every op as it is recorded, on host memory; `submit` has nothing left to do.
final class CPURecorder: StepRecorder {
    /// Products whose rows' outputs do not depend on the row count (`CPUKernelChoice.kernel`'s
    /// `rowInvariant`), for a `Workspace(rowInvariant: true)`.
    let rowInvariant: Bool
    init(rowInvariant: Bool) { self.rowInvariant = rowInvariant }
    /// Attention score rows, grown when a step needs more.
    private var scores: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
    private var scoreCapacity = 0

    deinit { scores.deallocate() }

    func write(_ host: UnsafeBufferPointer<Float>, into dst: BufferSlice) {
        guard let base = host.baseAddress else { return }
        dst.host.update(from: base, count: host.count)
    }

    func embed(_ table: MatrixOperator, tokens: [Int], scale: Float?, into x: BufferSlice) {
        let m = unsafeDowncast(table, to: CPUMatrix.self)
        let width = m.inFeatures
        let out = x.host
        for (r, t) in tokens.enumerated() { m.row(t, into: out + r * width) }
        if let s = scale {
            for i in 0..<(tokens.count * width) { out[i] *= s }
        }
    }

    func matmul(_ w: MatrixOperator, _ x: BufferSlice, rows: Int, into y: BufferSlice) {
        unsafeDowncast(w, to: CPUMatrix.self).apply(x.host, rows: rows, into: y.host, rowInvariant: rowInvariant)
    }

    func rmsNorm(_ xs: BufferSlice, rows: Int, width: Int, weight: BufferSlice, eps: Float, into ys: BufferSlice) {
        let x = xs.host, y = ys.host, scale = weight.host
        for r in 0..<rows {
            let xr = x + r * width, yr = y + r * width
            let ms = sumOfSquares(xr, count: width) / Float(width)
            // transformers: x * torch.rsqrt(mean + eps), then times the (1+w) or w scale, all fp32.
            let inv = 1 / (ms + eps).squareRoot()
            for i in 0..<width { yr[i] = (xr[i] * inv) * scale[i] }
        }
    }

    func ropeTables(positions: [Int], invFreq: BufferSlice, half: Int, cos cs: BufferSlice, sin ss: BufferSlice) {
        writeRopeTables(positions: positions, invFreq: invFreq.host, half: half, cos: cs.host, sin: ss.host)
    }

    func rope(_ xs: BufferSlice, rows: Int, heads: Int, headDim: Int, cos cs: BufferSlice, sin ss: BufferSlice) {
        let x = xs.host, cos = cs.host, sin = ss.host
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

    func gatedActivation(_ gs: BufferSlice, _ us: BufferSlice, count: Int, kind: Activation) {
        let gate = gs.host, up = us.host
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

    func add(_ xs: BufferSlice, into ys: BufferSlice, count: Int) {
        let x = xs.host, y = ys.host
        for i in 0..<count { y[i] += x[i] }
    }

    func addBias(_ bias: BufferSlice, width: Int, rows: Int, into ys: BufferSlice) {
        let b = bias.host, y = ys.host
        for r in 0..<rows { axpy(1, b, y + r * width, count: width) }
    }

    func addScaled(_ vector: BufferSlice, coef: Float, into xs: BufferSlice, rows: Int, width: Int) {
        let v = vector.host, x = xs.host
        for r in 0..<rows { axpy(coef, v, x + r * width, count: width) }
    }

    func projectOut(_ direction: BufferSlice, from xs: BufferSlice, rows: Int, width: Int) {
        let d = direction.host, x = xs.host
        for r in 0..<rows {
            let xr = x + r * width
            axpy(-dotProduct(xr, d, count: width), d, xr, count: width)
        }
    }

    func softcap(_ x: BufferSlice, cap: Float, count: Int) {
        softcapInPlace(x.host, cap: cap, count: count)
    }

    func copy(_ src: BufferSlice, into dst: BufferSlice, count: Int) {
        dst.host.update(from: src.host, count: count)
    }

    func attention(_ jobs: [AttentionJob]) {
        // Score rows are laid out job after job, each job's heads side by side.
        let headsPerJob = jobs.first?.heads ?? 0
        var starts: [Int] = []
        starts.reserveCapacity(jobs.count)
        var total = 0
        for j in jobs { starts.append(total); total += headsPerJob * (j.firstPosition + j.queries) }
        let offsets = starts
        if total > scoreCapacity {
            scores.deallocate()
            scoreCapacity = max(total, scoreCapacity * 2)
            scores = .allocate(capacity: scoreCapacity)
        }
        let host = jobs.map(HostAttentionJob.init)
        let sp = SendablePointer(scores)
        // One task per (sequence, head); a head's queries run in order so its score row is reused.
        CPUBackend.parallelFor(jobs.count * headsPerJob) { i in
            let j = i / headsPerJob, h = i % headsPerJob
            let keys = host[j].firstPosition + host[j].queries
            attendHead(host[j], head: h, scores: sp.p + offsets[j] + h * keys)
        }
    }

    func read(_ src: BufferSlice, count: Int, into host: UnsafeMutablePointer<Float>) {
        host.update(from: src.host, count: count)
    }

    func submit() {}

    /// CPU buffers are host memory: the logits rows are read where the LM head wrote them (a copy
    /// of Gemma 3's 32 × 262k rows per step cost 7% of its batched generation).
    func hostAddress(_ src: BufferSlice) -> UnsafeMutablePointer<Float>? { src.host }
}

struct SendablePointer: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { self.p = p }
}

/// An AttentionJob with its slices resolved to host addresses.
struct HostAttentionJob: @unchecked Sendable {
    let q: UnsafePointer<Float>
    let qStride: Int
    let keys: UnsafePointer<Float>
    let values: UnsafePointer<Float>
    let prefixKeys: UnsafePointer<Float>?
    let prefixValues: UnsafePointer<Float>?
    let prefixLength: Int
    let out: UnsafeMutablePointer<Float>
    let queries: Int
    let firstPosition: Int
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    let scale: Float
    let softcap: Float?
    let window: Int?

    init(_ j: AttentionJob) {
        q = UnsafePointer(j.q.host); qStride = j.qStride
        keys = UnsafePointer(j.keys.host); values = UnsafePointer(j.values.host)
        prefixKeys = j.prefixKeys.map { UnsafePointer($0.host) }; prefixValues = j.prefixValues.map { UnsafePointer($0.host) }
        prefixLength = j.prefixLength; out = j.out.host; queries = j.queries; firstPosition = j.firstPosition
        heads = j.heads; kvHeads = j.kvHeads; headDim = j.headDim; scale = j.scale; softcap = j.softcap; window = j.window
    }
}

/// Softmax attention for every query of one head, scores in fp32 as transformers' eager path.
@inline(__always)
func attendHead(_ job: HostAttentionJob, head h: Int, scores: UnsafeMutablePointer<Float>) {
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
