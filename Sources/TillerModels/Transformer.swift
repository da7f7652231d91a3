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

// MARK: - Weights

final class LayerWeights {
    /// nil in post-norm blocks (OLMo-2).
    let inputNorm: [Float]?
    let q, k, v, o: MatrixOperator
    let qBias, kBias, vBias, oBias: [Float]?
    let qNorm, kNorm: [Float]?
    let postAttentionNorm: [Float]?
    let preFFNorm: [Float]?
    let postFFNorm: [Float]?
    let gate, up, down: MatrixOperator
    let sliding: Bool
    let rope: Int   // index into TransformerWeights.ropeTables

    init(inputNorm: [Float]?, q: MatrixOperator, k: MatrixOperator, v: MatrixOperator, o: MatrixOperator,
         qBias: [Float]?, kBias: [Float]?, vBias: [Float]?, oBias: [Float]?, qNorm: [Float]?, kNorm: [Float]?,
         postAttentionNorm: [Float]?, preFFNorm: [Float]?, postFFNorm: [Float]?,
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
            // Phi-3 stores q/k/v and gate/up as one tensor each: row views of it.
            let q, k, v, gate, up: MatrixOperator
            if opt.fusedProjections {
                let qkv = try loader.rowBlocks(p + "self_attn.qkv_proj.weight", rows: [qd, kd, kd], columns: H)
                (q, k, v) = (qkv[0], qkv[1], qkv[2])
                let gu = try loader.rowBlocks(p + "mlp.gate_up_proj.weight", rows: [I, I], columns: H)
                (gate, up) = (gu[0], gu[1])
            } else {
                q = try loader.matrix(p + "self_attn.q_proj.weight", [qd, H])
                k = try loader.matrix(p + "self_attn.k_proj.weight", [kd, H])
                v = try loader.matrix(p + "self_attn.v_proj.weight", [kd, H])
                gate = try loader.matrix(p + "mlp.gate_proj.weight", [I, H])
                up = try loader.matrix(p + "mlp.up_proj.weight", [I, H])
            }
            let qNormWidth = opt.qkNorm == .whole ? qd : headDim, kNormWidth = opt.qkNorm == .whole ? kd : headDim
            let qkNorm = opt.qkNorm != .none
            ls.append(LayerWeights(
                inputNorm: opt.preNorms ? try loader.norm(p + "input_layernorm.weight", H) : nil,
                q: q, k: k, v: v,
                o: try loader.matrix(p + "self_attn.o_proj.weight", [H, qd]),
                qBias: try bias("self_attn.q_proj.bias", qd, required: opt.requireQKVBias || c.attentionBias),
                kBias: try bias("self_attn.k_proj.bias", kd, required: opt.requireQKVBias || c.attentionBias),
                vBias: try bias("self_attn.v_proj.bias", kd, required: opt.requireQKVBias || c.attentionBias),
                oBias: try bias("self_attn.o_proj.bias", H, required: false),
                qNorm: qkNorm ? try loader.norm(p + "self_attn.q_norm.weight", qNormWidth) : nil,
                kNorm: qkNorm ? try loader.norm(p + "self_attn.k_norm.weight", kNormWidth) : nil,
                postAttentionNorm: opt.postNorms ? try loader.norm(p + "post_attention_layernorm.weight", H) : nil,
                preFFNorm: opt.preNorms ? try loader.norm(p + opt.preFFNormName + ".weight", H) : nil,
                postFFNorm: opt.postNorms ? try loader.norm(p + "post_feedforward_layernorm.weight", H) : nil,
                gate: gate, up: up,
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
    ///
    /// With `start`, the pass begins from given `resid_post.layer` rows (one per stacked token,
    /// as an unsteered pass computed them) instead of the embeddings: the hooks at that layer run
    /// first (the configuration's steering there), then blocks layer+1…N−1. The caches' layers
    /// ≤ start.layer are not written (a shared layer prefix, see TeacherForcing.swift).
    func step(_ items: [Item], plan: HookPlan?, logitRows: [Int], ws: Workspace, stopAfter: Int? = nil,
              start: (layer: Int, rows: UnsafePointer<Float>)? = nil) {
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

        // resid_post.l: steering edits, then capture.
        func hooks(_ l: Int) {
            guard let plan else { return }
            for (s, it) in items.enumerated() {
                plan.run(layer: l, x: ws.x + offsets[s] * H, seq: it.sequence, rows: it.tokens.count,
                         firstPosition: it.cache.length, promptLength: it.promptLength, backend: be)
            }
        }

        if let start {
            be.copy(start.rows, into: ws.x, count: N * H)
            hooks(start.layer)
        } else {
            // Embeddings.
            var r = 0
            for it in items {
                for t in it.tokens {
                    precondition(t >= 0 && t < vocab, "token id \(t) is outside the vocabulary (0..<\(vocab))")
                    embed.row(t, into: ws.x + r * H)
                    r += 1
                }
            }
            if let s = embedScale { be.scale(ws.x, by: s, count: N * H) }
        }

        // cos/sin per RoPE kind, fp32 like transformers: freqs = float(pos) · inv_freq.
        var positions: [Int] = []
        positions.reserveCapacity(N)
        for it in items { positions.append(contentsOf: it.cache.length ..< it.cache.length + it.tokens.count) }
        for (ti, inv) in ropeTables.enumerated() {
            inv.withUnsafeBufferPointer { be.ropeTables(positions: positions, invFreq: $0.baseAddress!, half: headDim / 2, cos: ws.cos[ti], sin: ws.sin[ti]) }
        }

        let normScale: (([Float]), (UnsafePointer<Float>) -> Void) -> Void = { w, body in w.withUnsafeBufferPointer { body($0.baseAddress!) } }
        let eps = Float(config.rmsNormEps)

        for l in (start.map { $0.layer + 1 } ?? 0) ..< layers.count {
            let L = layers[l]
            // Attention (post-norm blocks read the residual stream itself).
            var attnIn = UnsafePointer(ws.x)
            if let n = L.inputNorm {
                normScale(n) { be.rmsNorm(ws.x, rows: N, width: H, scale: $0, eps: eps, into: ws.h) }
                attnIn = UnsafePointer(ws.h)
            }
            L.q.apply(attnIn, rows: N, into: ws.q)
            L.k.apply(attnIn, rows: N, into: ws.k)
            L.v.apply(attnIn, rows: N, into: ws.v)
            if let b = L.qBias { addBias(b, ws.q, rows: N) }
            if let b = L.kBias { addBias(b, ws.k, rows: N) }
            if let b = L.vBias { addBias(b, ws.v, rows: N) }
            if let qn = L.qNorm, let kn = L.kNorm {
                // Per head: rows of head_dim; whole: one row of heads·head_dim per token.
                let (qRows, qWidth) = options.qkNorm == .whole ? (N, qd) : (N * heads, headDim)
                let (kRows, kWidth) = options.qkNorm == .whole ? (N, kd) : (N * kvHeads, headDim)
                normScale(qn) { be.rmsNorm(ws.q, rows: qRows, width: qWidth, scale: $0, eps: eps, into: ws.q) }
                normScale(kn) { be.rmsNorm(ws.k, rows: kRows, width: kWidth, scale: $0, eps: eps, into: ws.k) }
            }
            be.rope(ws.q, rows: N, heads: heads, headDim: headDim, cos: ws.cos[L.rope], sin: ws.sin[L.rope])
            be.rope(ws.k, rows: N, heads: kvHeads, headDim: headDim, cos: ws.cos[L.rope], sin: ws.sin[L.rope])
            var jobs: [AttentionJob] = []
            jobs.reserveCapacity(items.count)
            for (s, it) in items.enumerated() {
                let n = it.tokens.count, start = it.cache.length, off = offsets[s]
                let seg = it.cache.segments(layer: l)
                let own = start - it.cache.base
                be.copy(ws.k + off * kd, into: seg.keys + own * kd, count: n * kd)
                be.copy(ws.v + off * kd, into: seg.values + own * kd, count: n * kd)
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
            var ffIn = UnsafePointer(ws.x)
            if let n = L.preFFNorm {
                normScale(n) { be.rmsNorm(ws.x, rows: N, width: H, scale: $0, eps: eps, into: ws.h) }
                ffIn = UnsafePointer(ws.h)
            }
            L.gate.apply(ffIn, rows: N, into: ws.gate)
            L.up.apply(ffIn, rows: N, into: ws.up)
            be.gatedActivation(ws.gate, ws.up, count: N * I, kind: options.activation)
            L.down.apply(ws.gate, rows: N, into: ws.h)
            if let pn = L.postFFNorm {
                normScale(pn) { be.rmsNorm(ws.h, rows: N, width: H, scale: $0, eps: eps, into: ws.h) }
            }
            be.add(ws.h, into: ws.x, count: N * H)

            hooks(l)
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
        for (i, row) in logitRows.enumerated() { be.copy(ws.x + row * H, into: ws.logitInput + i * H, count: H) }
        normScale(finalNorm) { be.rmsNorm(ws.logitInput, rows: R, width: H, scale: $0, eps: eps, into: ws.logitInput) }
        lmHead.apply(ws.logitInput, rows: R, into: ws.logits)
        if let cap = options.finalSoftcap { be.softcap(ws.logits, cap: cap, count: R * vocab) }
    }

    private func addBias(_ b: [Float], _ y: UnsafeMutablePointer<Float>, rows: Int) {
        b.withUnsafeBufferPointer { backend.addBias($0.baseAddress!, width: b.count, rows: rows, into: y) }
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
