import Foundation
import TillerFormats
import TillerTensor

// The seam between the transformer and where its arithmetic runs. The backend owns memory:
// weights are uploaded once at load in their stored blocks (`matrix`), and every other tensor the
// forward pass touches — activations (Workspace), the KV cache, norm weights, biases, RoPE
// frequencies, steering vectors and ablation directions — is a `BackendBuffer`. A forward step is
// *recorded* on a `StepRecorder` and run by `submit()`; the only host transfers are the ones a
// caller asked for (`write`: token ids go in through `embed`, residual rows through `write`;
// `read`: captured resid_post rows and logits rows, filled when `submit()` returns). A GPU backend
// records one command stream per step and synchronises once; the CPU backend runs each op as it
// is recorded, on host memory. Architecture facts, hooks, scan, extraction, sweeps, metrics and the
// server never see which backend runs them.

/// Backend-owned fp32 storage of `count` elements.
public protocol BackendBuffer: AnyObject, Sendable {
    var count: Int { get }
}

/// A position in a buffer: `offset` elements in. Ops read or write `count` (or rows × width)
/// elements from there.
public struct BufferSlice: @unchecked Sendable {
    public let buffer: BackendBuffer
    public let offset: Int
    public init(_ buffer: BackendBuffer, offset: Int = 0) {
        self.buffer = buffer
        self.offset = offset
    }
    /// The slice `n` elements further on.
    @inline(__always)
    public static func + (s: BufferSlice, n: Int) -> BufferSlice { BufferSlice(s.buffer, offset: s.offset + n) }
}

extension BackendBuffer {
    /// The slice at element `offset` (default: the start).
    @inline(__always)
    public func at(_ offset: Int = 0) -> BufferSlice { BufferSlice(self, offset: offset) }
}

/// A weight matrix W [out, in] resident on the backend in its stored blocks, for y = x·Wᵀ
/// (`StepRecorder.matmul`) and row lookups (`StepRecorder.embed`).
public protocol MatrixOperator: AnyObject, Sendable {
    var outFeatures: Int { get }
    var inFeatures: Int { get }
}

public protocol Backend: AnyObject, Sendable {
    var name: String { get }
    /// Uploads a 2-D weight tensor (any file precision) in its stored blocks. `modelBytesFP32` is
    /// the whole model's size in fp32, so the backend can decide whether extra copies fit. Throws
    /// (naming the sizes) when the device cannot hold it.
    func matrix(_ raw: RawTensor, modelBytesFP32: Int) throws -> MatrixOperator
    /// A buffer holding `values` (norm weights, biases, RoPE frequencies, steering vectors).
    func upload(_ values: [Float]) throws -> BackendBuffer
    /// An uninitialised buffer of `count` elements (activations, KV cache).
    func buffer(count: Int) -> BackendBuffer
    /// A recorder. It records one step at a time: ops run in the order recorded, `submit()` runs
    /// them, and afterwards the recorder is empty and records the next step (a Workspace keeps one).
    /// `rowInvariant`: where the backend can, each row's products come out the same bits whatever
    /// the number of rows stacked beside it in a step (teacher-forced scoring asks for it).
    func makeRecorder(rowInvariant: Bool) -> StepRecorder
    /// Which kernel `matmul` runs for `rows` input rows of `matrix` (the backend's one kernel
    /// decision, as `tiller bench` prints it).
    func kernel(for matrix: MatrixOperator, rows: Int) -> String
}

/// One step's operations. Slices name backend buffers; host pointers appear only in `write`
/// (copied when recorded) and `read` (filled when `submit()` returns).
public protocol StepRecorder: AnyObject {
    /// dst[0..<host.count] ← host (copied from `host` before `write` returns).
    func write(_ host: UnsafeBufferPointer<Float>, into dst: BufferSlice)
    /// x[r] ← row tokens[r] of `table` as fp32, times `scale` when given (Gemma's √hidden).
    func embed(_ table: MatrixOperator, tokens: [Int], scale: Float?, into x: BufferSlice)
    /// y[rows, out] = x[rows, in] · Wᵀ (x and y must not overlap).
    func matmul(_ w: MatrixOperator, _ x: BufferSlice, rows: Int, into y: BufferSlice)
    /// y[r] ← x[r] · rsqrt(mean(x[r]²) + eps) · weight, for `rows` rows of `width` (x == y allowed).
    func rmsNorm(_ x: BufferSlice, rows: Int, width: Int, weight: BufferSlice, eps: Float, into y: BufferSlice)
    /// RoPE tables for rows at `positions`: cos/sin [positions.count, half] of
    /// float(position) · invFreq[i], in fp32 as transformers computes them.
    func ropeTables(positions: [Int], invFreq: BufferSlice, half: Int, cos: BufferSlice, sin: BufferSlice)
    /// Rotate-half RoPE in place on `heads` heads of `headDim` per row; cos/sin are [rows, headDim/2].
    func rope(_ x: BufferSlice, rows: Int, heads: Int, headDim: Int, cos: BufferSlice, sin: BufferSlice)
    /// gate[i] ← act(gate[i]) · up[i]
    func gatedActivation(_ gate: BufferSlice, _ up: BufferSlice, count: Int, kind: Activation)
    /// y[i] += x[i]
    func add(_ x: BufferSlice, into y: BufferSlice, count: Int)
    /// y[r·width + i] += bias[i] for each of `rows` rows (a projection's bias).
    func addBias(_ bias: BufferSlice, width: Int, rows: Int, into y: BufferSlice)
    /// x[r·width + i] += coef · vector[i] for each of `rows` rows (steering at resid_post).
    func addScaled(_ vector: BufferSlice, coef: Float, into x: BufferSlice, rows: Int, width: Int)
    /// x[r] ← x[r] − (x[r]·d) d for a unit direction d, for each of `rows` rows (directional ablation).
    func projectOut(_ direction: BufferSlice, from x: BufferSlice, rows: Int, width: Int)
    /// x[i] ← cap · tanh(x[i] / cap) (a logit soft-cap).
    func softcap(_ x: BufferSlice, cap: Float, count: Int)
    /// dst[i] = src[i] (KV-cache writes, gathering logit rows, cache copies).
    func copy(_ src: BufferSlice, into dst: BufferSlice, count: Int)
    /// Causal attention of each job's new queries against its sequence's cached keys/values.
    func attention(_ jobs: [AttentionJob])
    /// host[0..<count] ← src, filled when `submit()` returns (`host` must stay valid until then).
    func read(_ src: BufferSlice, count: Int, into host: UnsafeMutablePointer<Float>)
    /// Runs what was recorded; when it returns, every `read` destination is filled.
    func submit()
    /// The host address at which `src` can be read, without a copy, once `submit()` returns: the
    /// buffer itself where the backend's memory is host memory (the CPU), else nil (then `read`).
    func hostAddress(_ src: BufferSlice) -> UnsafeMutablePointer<Float>?
}

extension StepRecorder {
    public func hostAddress(_ src: BufferSlice) -> UnsafeMutablePointer<Float>? { nil }
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
public struct AttentionJob: Sendable {
    public var q: BufferSlice           // [queries, heads*headDim], row stride qStride
    public var qStride: Int
    public var keys: BufferSlice        // [positions, kvHeads*headDim]
    public var values: BufferSlice
    public var prefixKeys: BufferSlice?
    public var prefixValues: BufferSlice?
    public var prefixLength: Int
    public var out: BufferSlice         // [queries, heads*headDim], row stride qStride
    public var queries: Int
    public var firstPosition: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var scale: Float
    public var softcap: Float?
    /// Keys at positions > p − window are visible to the query at p (transformers' convention).
    public var window: Int?

    public init(q: BufferSlice, qStride: Int, keys: BufferSlice, values: BufferSlice, prefixKeys: BufferSlice?,
                prefixValues: BufferSlice?, prefixLength: Int, out: BufferSlice, queries: Int, firstPosition: Int,
                heads: Int, kvHeads: Int, headDim: Int, scale: Float, softcap: Float?, window: Int?) {
        self.q = q; self.qStride = qStride; self.keys = keys; self.values = values
        self.prefixKeys = prefixKeys; self.prefixValues = prefixValues; self.prefixLength = prefixLength
        self.out = out; self.queries = queries; self.firstPosition = firstPosition
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        self.scale = scale; self.softcap = softcap; self.window = window
    }
}

/// RoPE tables for rows at `positions`: cos/sin [positions.count, half] of float(position) ·
/// invFreq[i] in fp32, as transformers computes them. Every backend fills its tables with this
/// (a GPU's own sin/cos lose precision at large positions).
public func writeRopeTables(positions: [Int], invFreq: UnsafePointer<Float>, half: Int,
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

extension Backend {
    /// A recorder with the backend's fastest kernel per product.
    public func makeRecorder() -> StepRecorder { makeRecorder(rowInvariant: false) }
}
