import Foundation
import TillerFormats
import TillerTensor

// The shared decoder-only transformer, à la llama.cpp's graph builders: norm, attention with
// RoPE/GQA/softcap/sliding window over a KV cache, gated FFN, residual adds and the resid_post
// hook. Architecture files (Architectures/*.swift) only fill in `TransformerOptions`.
//
// Batching is ragged: the new tokens of all sequences are stacked into one [N, hidden] matrix so
// every projection runs once per layer; attention runs per (sequence, head) over that sequence's
// own cache, so no padding or masks are needed and positions continue from each cache's length.

/// How a block's norms apply their weight.
enum NormStyle {
    /// w · x̂ (Llama, Qwen2)
    case weight
    /// x̂ · (1 + w) (Gemma)
    case onePlusWeight
}

/// Everything in which an architecture differs from the shared recipe.
struct TransformerOptions {
    var norm: NormStyle = .weight
    /// Multiply embeddings by √hidden, rounded to the embedding table's dtype (Gemma).
    var scaleEmbeddings = false
    /// Gemma's sandwich: a norm on the attention output and on the FFN output before each residual add.
    var sandwichNorms = false
    /// Gemma 3: RMSNorm over head_dim on q and k before RoPE.
    var qkNorm = false
    /// q/k/v projection biases are required (Qwen2) rather than optional.
    var requireQKVBias = false
    var activation: Activation = .silu
    /// Multiplies q·k (default head_dim^-0.5).
    var attentionScale: Float
    var attentionSoftcap: Float?
    var finalSoftcap: Float?
    /// Per layer: sliding-window attention with `window`.
    var sliding: [Bool]
    var window: Int?
    /// Per layer: RoPE inverse frequencies (fp32, as transformers computes them).
    var ropeInvFreq: [[Float]]
    /// transformers' name of the norm before the FFN.
    var preFFNormName = "post_attention_layernorm"
}

/// An architecture file: its options for a given config.
protocol ArchitectureRecipe {
    static func options(for config: ModelConfig) throws -> TransformerOptions
}

/// model_type → recipe.
let architectureRegistry: [Architecture: ArchitectureRecipe.Type] = [
    .llama: Llama.self,
    .qwen2: Qwen2.self,
    .gemma2: Gemma2.self,
    .gemma3: Gemma3.self,
]

/// `inv_freq = 1 / base^(2i/d)` in fp32, then the configured scaling, as transformers computes it.
func ropeInverseFrequencies(base: Double, headDim d: Int, scaling: RopeScaling?) throws -> [Float] {
    var inv = (0..<(d / 2)).map { i -> Float in
        let e = Float(2 * i) / Float(d)
        return 1 / Foundation.pow(Float(base), e)
    }
    guard let s = scaling, s.type != "default" else { return inv }
    let factor = Float(s.factor)
    switch s.type {
    case "linear":
        inv = inv.map { $0 / factor }
    case "llama3":
        guard let low = s.lowFreqFactor, let high = s.highFreqFactor, let original = s.originalMaxPositionEmbeddings else {
            throw ModelError("rope_scaling llama3 needs low_freq_factor, high_freq_factor and original_max_position_embeddings")
        }
        let lowF = Float(low), highF = Float(high), old = Float(original)
        let lowWavelen = old / lowF, highWavelen = old / highF
        inv = inv.map { f in
            let wavelen = 2 * Float.pi / f
            if wavelen < highWavelen { return f }
            if wavelen > lowWavelen { return f / factor }
            let smooth = (old / wavelen - lowF) / (highF - lowF)
            return (1 - smooth) * f / factor + smooth * f
        }
    default:
        throw ModelError("rope_scaling type \"\(s.type)\" is not supported (default, linear, llama3)")
    }
    return inv
}

// MARK: - Weights

final class LayerWeights {
    let inputNorm: [Float]
    let q, k, v, o: MatrixOperator
    let qBias, kBias, vBias, oBias: [Float]?
    let qNorm, kNorm: [Float]?
    let postAttentionNorm: [Float]?
    let preFFNorm: [Float]
    let postFFNorm: [Float]?
    let gate, up, down: MatrixOperator
    let sliding: Bool
    let rope: Int   // index into TransformerWeights.ropeTables

    init(inputNorm: [Float], q: MatrixOperator, k: MatrixOperator, v: MatrixOperator, o: MatrixOperator,
         qBias: [Float]?, kBias: [Float]?, vBias: [Float]?, oBias: [Float]?, qNorm: [Float]?, kNorm: [Float]?,
         postAttentionNorm: [Float]?, preFFNorm: [Float], postFFNorm: [Float]?,
         gate: MatrixOperator, up: MatrixOperator, down: MatrixOperator, sliding: Bool, rope: Int) {
        self.inputNorm = inputNorm; self.q = q; self.k = k; self.v = v; self.o = o
        self.qBias = qBias; self.kBias = kBias; self.vBias = vBias; self.oBias = oBias
        self.qNorm = qNorm; self.kNorm = kNorm
        self.postAttentionNorm = postAttentionNorm; self.preFFNorm = preFFNorm; self.postFFNorm = postFFNorm
        self.gate = gate; self.up = up; self.down = down; self.sliding = sliding; self.rope = rope
    }
}

/// A loaded model: options, converted weights and the backend they live on.
final class Transformer: @unchecked Sendable {
    let config: ModelConfig
    let options: TransformerOptions
    let backend: Backend
    let embed: MatrixOperator
    let lmHead: MatrixOperator
    let finalNorm: [Float]
    let embedScale: Float?
    let layers: [LayerWeights]
    /// Distinct inv_freq vectors (one per RoPE kind: e.g. Gemma 3's local and global).
    let ropeTables: [[Float]]

    let hidden: Int, heads: Int, kvHeads: Int, headDim: Int, intermediate: Int, vocab: Int
    var qDim: Int { heads * headDim }
    var kvDim: Int { kvHeads * headDim }

    init(weights src: WeightSource, name: String, backend: Backend) throws {
        let c = src.config
        config = c
        guard let recipe = architectureRegistry[c.architecture] else {
            throw ModelError("\(name): architecture \(c.architecture.rawValue) has no recipe")
        }
        let opt = try recipe.options(for: c)
        options = opt
        self.backend = backend
        hidden = c.hiddenSize; heads = c.numAttentionHeads; kvHeads = c.numKeyValueHeads
        headDim = c.headDim; intermediate = c.intermediateSize; vocab = c.vocabSize
        guard heads > 0, kvHeads > 0, heads % kvHeads == 0, headDim % 2 == 0 else {
            throw ModelError("\(name): \(heads) attention heads, \(kvHeads) key/value heads and head_dim \(headDim) are not a valid GQA layout")
        }

        let H = hidden, I = intermediate, V = vocab
        let perLayer = H * (heads + 2 * kvHeads) * headDim + heads * headDim * H + 3 * H * I
        let fp32Bytes = 4 * (c.numHiddenLayers * perLayer + (c.tieWordEmbeddings ? 1 : 2) * V * H)
        let loader = WeightLoader(source: src, model: name, backend: backend, norm: opt.norm, modelBytesFP32: fp32Bytes)
        embed = try loader.matrix("model.embed_tokens.weight", [V, H])
        if let head = try loader.optionalMatrix("lm_head.weight", [V, H]) {
            lmHead = head
        } else if c.tieWordEmbeddings {
            lmHead = embed
        } else {
            throw ModelError("\(name): missing tensor lm_head.weight (tie_word_embeddings is false)")
        }
        finalNorm = try loader.norm("model.norm.weight", H)
        if opt.scaleEmbeddings {
            // transformers: embed_scale (fp32 tensor) .to(weight.dtype) — rounded to the table's dtype.
            let s = Float(Double(H).squareRoot())
            switch try src.tensor("model.embed_tokens.weight")?.type {
            case .bf16?: embedScale = Float(bitPattern: bf16Round(s))
            case .f16?: embedScale = Float(Float16(s))
            default: embedScale = s
            }
        } else {
            embedScale = nil
        }

        var tables: [[Float]] = []
        var ls: [LayerWeights] = []
        for l in 0..<c.numHiddenLayers {
            let p = "model.layers.\(l)."
            let invFreq = opt.ropeInvFreq[l]
            let rope: Int
            if let i = tables.firstIndex(of: invFreq) { rope = i } else { tables.append(invFreq); rope = tables.count - 1 }
            let qd = heads * headDim, kd = kvHeads * headDim
            func bias(_ n: String, _ size: Int, required: Bool) throws -> [Float]? {
                if required { return try loader.vector(p + n, size) }
                return try loader.optionalVector(p + n, size)
            }
            ls.append(LayerWeights(
                inputNorm: try loader.norm(p + "input_layernorm.weight", H),
                q: try loader.matrix(p + "self_attn.q_proj.weight", [qd, H]),
                k: try loader.matrix(p + "self_attn.k_proj.weight", [kd, H]),
                v: try loader.matrix(p + "self_attn.v_proj.weight", [kd, H]),
                o: try loader.matrix(p + "self_attn.o_proj.weight", [H, qd]),
                qBias: try bias("self_attn.q_proj.bias", qd, required: opt.requireQKVBias || c.attentionBias),
                kBias: try bias("self_attn.k_proj.bias", kd, required: opt.requireQKVBias || c.attentionBias),
                vBias: try bias("self_attn.v_proj.bias", kd, required: opt.requireQKVBias || c.attentionBias),
                oBias: try bias("self_attn.o_proj.bias", H, required: false),
                qNorm: opt.qkNorm ? try loader.norm(p + "self_attn.q_norm.weight", headDim) : nil,
                kNorm: opt.qkNorm ? try loader.norm(p + "self_attn.k_norm.weight", headDim) : nil,
                postAttentionNorm: opt.sandwichNorms ? try loader.norm(p + "post_attention_layernorm.weight", H) : nil,
                preFFNorm: try loader.norm(p + opt.preFFNormName + ".weight", H),
                postFFNorm: opt.sandwichNorms ? try loader.norm(p + "post_feedforward_layernorm.weight", H) : nil,
                gate: try loader.matrix(p + "mlp.gate_proj.weight", [I, H]),
                up: try loader.matrix(p + "mlp.up_proj.weight", [I, H]),
                down: try loader.matrix(p + "mlp.down_proj.weight", [H, I]),
                sliding: opt.sliding[l], rope: rope))
        }
        layers = ls
        ropeTables = tables
    }

    // MARK: Forward step

    /// One sequence's share of a step: `tokens` new tokens appended to `cache`.
    struct Item {
        let cache: KVCache
        let tokens: ArraySlice<Int>
        let promptLength: Int
        /// Index of the sequence in the caller's batch (for steering and capture).
        let sequence: Int
    }

    /// Runs the new tokens of every item through the model, appending to their caches.
    /// `logitRows` are global row indices (into the stacked tokens) whose logits are wanted,
    /// written to `ws.logits` in that order. With `stopAfter`, the pass ends after that layer's
    /// hooks (no logits, caches left incomplete: only for one-shot capture).
    func step(_ items: [Item], plan: HookPlan?, logitRows: [Int], ws: Workspace, stopAfter: Int? = nil) {
        let N = items.reduce(0) { $0 + $1.tokens.count }
        guard N > 0 else { return }
        ws.reserve(tokens: N, logitRows: logitRows.count)
        let H = hidden, qd = qDim, kd = kvDim, I = intermediate
        let be = backend

        // Row offsets and positions.
        var offsets: [Int] = []
        var o = 0
        for it in items {
            offsets.append(o)
            o += it.tokens.count
            it.cache.reserve(it.cache.length + it.tokens.count)
        }

        // Embeddings.
        var r = 0
        for it in items {
            for t in it.tokens {
                precondition(t >= 0 && t < vocab, "token id \(t) is outside the vocabulary (0..<\(vocab))")
                embed.row(t, into: ws.x + r * H)
                if let s = embedScale { for i in 0..<H { ws.x[r * H + i] *= s } }
                r += 1
            }
        }

        // cos/sin per RoPE kind, fp32 like transformers: freqs = float(pos) · inv_freq.
        let half = headDim / 2
        for (ti, inv) in ropeTables.enumerated() {
            let cs = ws.cos[ti], sn = ws.sin[ti]
            var row = 0
            for it in items {
                for j in 0..<it.tokens.count {
                    let pos = Float(it.cache.length + j)
                    for i in 0..<half {
                        let f = pos * inv[i]
                        cs[row * half + i] = Foundation.cos(f)
                        sn[row * half + i] = Foundation.sin(f)
                    }
                    row += 1
                }
            }
        }

        let normScale: (([Float]), (UnsafePointer<Float>) -> Void) -> Void = { w, body in w.withUnsafeBufferPointer { body($0.baseAddress!) } }
        let eps = Float(config.rmsNormEps)

        for (l, L) in layers.enumerated() {
            // Attention.
            normScale(L.inputNorm) { be.rmsNorm(ws.x, rows: N, width: H, scale: $0, eps: eps, into: ws.h) }
            L.q.apply(ws.h, rows: N, into: ws.q)
            L.k.apply(ws.h, rows: N, into: ws.k)
            L.v.apply(ws.h, rows: N, into: ws.v)
            if let b = L.qBias { addBias(b, ws.q, rows: N) }
            if let b = L.kBias { addBias(b, ws.k, rows: N) }
            if let b = L.vBias { addBias(b, ws.v, rows: N) }
            if let qn = L.qNorm, let kn = L.kNorm {
                normScale(qn) { be.rmsNorm(ws.q, rows: N * heads, width: headDim, scale: $0, eps: eps, into: ws.q) }
                normScale(kn) { be.rmsNorm(ws.k, rows: N * kvHeads, width: headDim, scale: $0, eps: eps, into: ws.k) }
            }
            be.rope(ws.q, rows: N, heads: heads, headDim: headDim, cos: ws.cos[L.rope], sin: ws.sin[L.rope])
            be.rope(ws.k, rows: N, heads: kvHeads, headDim: headDim, cos: ws.cos[L.rope], sin: ws.sin[L.rope])
            var jobs: [AttentionJob] = []
            jobs.reserveCapacity(items.count)
            for (s, it) in items.enumerated() {
                let n = it.tokens.count, start = it.cache.length, off = offsets[s]
                let seg = it.cache.segments(layer: l)
                let own = start - it.cache.base
                (seg.keys + own * kd).update(from: ws.k + off * kd, count: n * kd)
                (seg.values + own * kd).update(from: ws.v + off * kd, count: n * kd)
                jobs.append(AttentionJob(
                    q: ws.q + off * qd, qStride: qd, keys: seg.keys, values: seg.values,
                    prefixKeys: seg.prefixKeys, prefixValues: seg.prefixValues, prefixLength: it.cache.base,
                    out: ws.attn + off * qd, queries: n, firstPosition: start, heads: heads, kvHeads: kvHeads,
                    headDim: headDim, scale: options.attentionScale, softcap: options.attentionSoftcap,
                    window: L.sliding ? options.window : nil))
            }
            ws.reserveScores(jobs.reduce(0) { $0 + heads * ($1.firstPosition + $1.queries) })
            be.attention(jobs, scratch: ws.scores)
            L.o.apply(ws.attn, rows: N, into: ws.h)
            if let b = L.oBias { addBias(b, ws.h, rows: N) }
            if let pn = L.postAttentionNorm {
                normScale(pn) { be.rmsNorm(ws.h, rows: N, width: H, scale: $0, eps: eps, into: ws.h) }
            }
            be.add(ws.h, into: ws.x, count: N * H)

            // Feed-forward.
            normScale(L.preFFNorm) { be.rmsNorm(ws.x, rows: N, width: H, scale: $0, eps: eps, into: ws.h) }
            L.gate.apply(ws.h, rows: N, into: ws.gate)
            L.up.apply(ws.h, rows: N, into: ws.up)
            be.gatedActivation(ws.gate, ws.up, count: N * I, kind: options.activation)
            L.down.apply(ws.gate, rows: N, into: ws.h)
            if let pn = L.postFFNorm {
                normScale(pn) { be.rmsNorm(ws.h, rows: N, width: H, scale: $0, eps: eps, into: ws.h) }
            }
            be.add(ws.h, into: ws.x, count: N * H)

            // resid_post.l: steering edits, then capture.
            if let plan {
                for (s, it) in items.enumerated() {
                    plan.run(layer: l, x: ws.x + offsets[s] * H, seq: it.sequence, rows: it.tokens.count,
                             firstPosition: it.cache.length, promptLength: it.promptLength)
                }
            }
            if let stop = stopAfter, l >= stop {
                // Layers ≤ stop hold these keys now, enough for a later chunk that also stops here.
                for it in items { it.cache.length += it.tokens.count }
                return
            }
        }
        for it in items { it.cache.length += it.tokens.count }

        // Logits: final norm and LM head on the requested rows only.
        let R = logitRows.count
        guard R > 0 else { return }
        for (i, row) in logitRows.enumerated() { (ws.logitInput + i * H).update(from: ws.x + row * H, count: H) }
        normScale(finalNorm) { be.rmsNorm(ws.logitInput, rows: R, width: H, scale: $0, eps: eps, into: ws.logitInput) }
        lmHead.apply(ws.logitInput, rows: R, into: ws.logits)
        if let cap = options.finalSoftcap {
            for i in 0..<(R * vocab) { ws.logits[i] = cap * Foundation.tanh(ws.logits[i] / cap) }
        }
    }

    private func addBias(_ b: [Float], _ y: UnsafeMutablePointer<Float>, rows: Int) {
        b.withUnsafeBufferPointer { bp in
            for r in 0..<rows { axpy(1, bp.baseAddress!, y + r * b.count, b.count) }
        }
    }

    func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: layers.count, kvDim: kvDim, capacity: capacity)
    }
}

@inline(__always)
func bf16Round(_ x: Float) -> UInt32 {
    // Round to nearest even on the upper 16 bits, as torch's float→bfloat16 conversion.
    let b = x.bitPattern
    let rounded = b &+ 0x7FFF &+ ((b >> 16) & 1)
    return rounded & 0xFFFF_0000
}

// MARK: - Scratch

/// Activation buffers for one call (prefill or a generation loop), grown when a step needs more.
final class Workspace {
    let hidden, qDim, kvDim, intermediate, vocab, halfHead, ropeKinds: Int
    private(set) var tokenCapacity = 0
    private(set) var logitCapacity = 0
    var x, h, q, k, v, attn, gate, up: UnsafeMutablePointer<Float>
    var cos: [UnsafeMutablePointer<Float>] = []
    var sin: [UnsafeMutablePointer<Float>] = []
    var logitInput, logits: UnsafeMutablePointer<Float>
    var scores: UnsafeMutablePointer<Float>
    private var scoreCapacity = 0

    init(_ t: Transformer) {
        hidden = t.hidden; qDim = t.qDim; kvDim = t.kvDim; intermediate = t.intermediate; vocab = t.vocab
        halfHead = t.headDim / 2; ropeKinds = t.ropeTables.count
        x = .allocate(capacity: 1); h = .allocate(capacity: 1); q = .allocate(capacity: 1)
        k = .allocate(capacity: 1); v = .allocate(capacity: 1); attn = .allocate(capacity: 1)
        gate = .allocate(capacity: 1); up = .allocate(capacity: 1)
        logitInput = .allocate(capacity: 1); logits = .allocate(capacity: 1); scores = .allocate(capacity: 1)
        for _ in 0..<ropeKinds { cos.append(.allocate(capacity: 1)); sin.append(.allocate(capacity: 1)) }
    }

    deinit {
        for p in [x, h, q, k, v, attn, gate, up, logitInput, logits, scores] + cos + sin { p.deallocate() }
    }

    func reserveScores(_ n: Int) {
        guard n > scoreCapacity else { return }
        scores.deallocate()
        scoreCapacity = max(n, scoreCapacity * 2)
        scores = .allocate(capacity: scoreCapacity)
    }

    func reserve(tokens n: Int, logitRows r: Int) {
        if n > tokenCapacity {
            let c = max(n, tokenCapacity * 2)
            func re(_ p: inout UnsafeMutablePointer<Float>, _ width: Int) {
                p.deallocate()
                p = .allocate(capacity: c * width)
            }
            re(&x, hidden); re(&h, hidden); re(&q, qDim); re(&k, kvDim); re(&v, kvDim); re(&attn, qDim)
            re(&gate, intermediate); re(&up, intermediate)
            for i in 0..<ropeKinds { re(&cos[i], halfHead); re(&sin[i], halfHead) }
            tokenCapacity = c
        }
        if r > logitCapacity {
            logitInput.deallocate(); logits.deallocate()
            logitInput = .allocate(capacity: r * hidden)
            logits = .allocate(capacity: r * vocab)
            logitCapacity = r
        }
    }
}

// MARK: - Weight loading with named errors

struct WeightLoader {
    let source: WeightSource
    let model: String
    let backend: Backend
    let norm: NormStyle
    let modelBytesFP32: Int

    func raw(_ name: String, _ shape: [Int]) throws -> RawTensor {
        guard let t = try source.tensor(name) else {
            throw ModelError("\(model): missing tensor \(name) (expected shape \(shape))")
        }
        try check(name, t, shape)
        return t
    }

    func check(_ name: String, _ t: RawTensor, _ shape: [Int]) throws {
        guard t.shape == shape else {
            throw ModelError("\(model): tensor \(name) has shape \(t.shape), expected \(shape)")
        }
    }

    func matrix(_ name: String, _ shape: [Int]) throws -> MatrixOperator {
        try backend.matrix(raw(name, shape), modelBytesFP32: modelBytesFP32)
    }

    func optionalMatrix(_ name: String, _ shape: [Int]) throws -> MatrixOperator? {
        guard let t = try source.tensor(name) else { return nil }
        try check(name, t, shape)
        return try backend.matrix(t, modelBytesFP32: modelBytesFP32)
    }

    func vector(_ name: String, _ n: Int) throws -> [Float] {
        try floats(raw(name, [n]))
    }

    func optionalVector(_ name: String, _ n: Int) throws -> [Float]? {
        guard let t = try source.tensor(name) else { return nil }
        try check(name, t, [n])
        return try floats(t)
    }

    /// A norm weight as the multiplier the block applies (w, or 1 + w in fp32 for Gemma).
    func norm(_ name: String, _ n: Int) throws -> [Float] {
        let w = try vector(name, n)
        switch norm {
        case .weight: return w
        case .onePlusWeight: return w.map { 1 + $0 }
        }
    }

    private func floats(_ t: RawTensor) throws -> [Float] {
        do { return try dequantize(t) } catch {
            throw ModelError("\(model): tensor \(t.name): \(error)")
        }
    }
}
