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
    let inputNorm: BackendBuffer?
    let q, k, v, o: MatrixOperator
    let qBias, kBias, vBias, oBias: BackendBuffer?
    let qNorm, kNorm: BackendBuffer?
    let postAttentionNorm: BackendBuffer?
    let preFFNorm: BackendBuffer?
    let postFFNorm: BackendBuffer?
    let gate, up, down: MatrixOperator
    let sliding: Bool
    let rope: Int   // index into Transformer.ropeInvFreq

    init(inputNorm: BackendBuffer?, q: MatrixOperator, k: MatrixOperator, v: MatrixOperator, o: MatrixOperator,
         qBias: BackendBuffer?, kBias: BackendBuffer?, vBias: BackendBuffer?, oBias: BackendBuffer?,
         qNorm: BackendBuffer?, kNorm: BackendBuffer?,
         postAttentionNorm: BackendBuffer?, preFFNorm: BackendBuffer?, postFFNorm: BackendBuffer?,
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
    let finalNorm: BackendBuffer
    let embedScale: Float?
    let layers: [LayerWeights]
    /// Distinct inv_freq vectors (one per RoPE kind: e.g. Gemma 3's local and global), on the backend.
    let ropeInvFreq: [BackendBuffer]

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
            func bias(_ n: String, _ size: Int, required: Bool) throws -> BackendBuffer? {
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
        ropeInvFreq = try tables.map { try backend.upload($0) }
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

    /// Runs the new tokens of every item through the model, appending to their caches: the step
    /// is recorded on the workspace's recorder and submitted whole. `logitRows` are global row
    /// indices (into the stacked tokens) whose logits are wanted, read back into `ws.logits` in
    /// that order. With `stopAfter`, the pass ends after that layer's hooks (no logits, caches
    /// left incomplete: only for one-shot capture).
    func step(_ items: [Item], plan: HookPlan?, logitRows: [Int], ws: Workspace, stopAfter: Int? = nil) {
        let N = items.reduce(0) { $0 + $1.tokens.count }
        guard N > 0 else { return }
        ws.reserve(tokens: N, logitRows: logitRows.count)
        let H = hidden, qd = qDim, kd = kvDim, I = intermediate
        let rec = ws.recorder
        let (x, h, q, k, v, attn, gate, up) = (ws.x.at(), ws.h.at(), ws.q.at(), ws.k.at(), ws.v.at(), ws.attn.at(), ws.gate.at(), ws.up.at())

        // Row offsets and positions; caches grow before the step is recorded.
        var offsets: [Int] = []
        var o = 0
        for it in items {
            offsets.append(o)
            o += it.tokens.count
            it.cache.reserve(it.cache.length + it.tokens.count)
        }
        plan?.beginStep(rows: N)

        // Embeddings.
        var tokens: [Int] = []
        tokens.reserveCapacity(N)
        for it in items {
            for t in it.tokens {
                precondition(t >= 0 && t < vocab, "token id \(t) is outside the vocabulary (0..<\(vocab))")
                tokens.append(t)
            }
        }
        rec.embed(embed, tokens: tokens, scale: embedScale, into: x)

        // cos/sin per RoPE kind, fp32 like transformers: freqs = float(pos) · inv_freq.
        var positions: [Int] = []
        positions.reserveCapacity(N)
        for it in items { positions.append(contentsOf: it.cache.length ..< it.cache.length + it.tokens.count) }
        for (ti, inv) in ropeInvFreq.enumerated() {
            rec.ropeTables(positions: positions, invFreq: inv.at(), half: headDim / 2, cos: ws.cos[ti].at(), sin: ws.sin[ti].at())
        }

        let eps = Float(config.rmsNormEps)

        for (l, L) in layers.enumerated() {
            // Attention (post-norm blocks read the residual stream itself).
            var attnIn = x
            if let n = L.inputNorm {
                rec.rmsNorm(x, rows: N, width: H, weight: n.at(), eps: eps, into: h)
                attnIn = h
            }
            rec.matmul(L.q, attnIn, rows: N, into: q)
            rec.matmul(L.k, attnIn, rows: N, into: k)
            rec.matmul(L.v, attnIn, rows: N, into: v)
            if let b = L.qBias { rec.addBias(b.at(), width: qd, rows: N, into: q) }
            if let b = L.kBias { rec.addBias(b.at(), width: kd, rows: N, into: k) }
            if let b = L.vBias { rec.addBias(b.at(), width: kd, rows: N, into: v) }
            if let qn = L.qNorm, let kn = L.kNorm {
                // Per head: rows of head_dim; whole: one row of heads·head_dim per token.
                let (qRows, qWidth) = options.qkNorm == .whole ? (N, qd) : (N * heads, headDim)
                let (kRows, kWidth) = options.qkNorm == .whole ? (N, kd) : (N * kvHeads, headDim)
                rec.rmsNorm(q, rows: qRows, width: qWidth, weight: qn.at(), eps: eps, into: q)
                rec.rmsNorm(k, rows: kRows, width: kWidth, weight: kn.at(), eps: eps, into: k)
            }
            let (cos, sin) = (ws.cos[L.rope].at(), ws.sin[L.rope].at())
            rec.rope(q, rows: N, heads: heads, headDim: headDim, cos: cos, sin: sin)
            rec.rope(k, rows: N, heads: kvHeads, headDim: headDim, cos: cos, sin: sin)
            var jobs: [AttentionJob] = []
            jobs.reserveCapacity(items.count)
            for (s, it) in items.enumerated() {
                let n = it.tokens.count, start = it.cache.length, off = offsets[s]
                let seg = it.cache.segments(layer: l)
                let own = start - it.cache.base
                rec.copy(k + off * kd, into: seg.keys + own * kd, count: n * kd)
                rec.copy(v + off * kd, into: seg.values + own * kd, count: n * kd)
                jobs.append(AttentionJob(
                    q: q + off * qd, qStride: qd, keys: seg.keys, values: seg.values,
                    prefixKeys: seg.prefixKeys, prefixValues: seg.prefixValues, prefixLength: it.cache.base,
                    out: attn + off * qd, queries: n, firstPosition: start, heads: heads, kvHeads: kvHeads,
                    headDim: headDim, scale: options.attentionScale, softcap: options.attentionSoftcap,
                    window: L.sliding ? options.window : nil))
            }
            rec.attention(jobs)
            rec.matmul(L.o, attn, rows: N, into: h)
            if let b = L.oBias { rec.addBias(b.at(), width: H, rows: N, into: h) }
            if let pn = L.postAttentionNorm { rec.rmsNorm(h, rows: N, width: H, weight: pn.at(), eps: eps, into: h) }
            rec.add(h, into: x, count: N * H)

            // Feed-forward.
            var ffIn = x
            if let n = L.preFFNorm {
                rec.rmsNorm(x, rows: N, width: H, weight: n.at(), eps: eps, into: h)
                ffIn = h
            }
            rec.matmul(L.gate, ffIn, rows: N, into: gate)
            rec.matmul(L.up, ffIn, rows: N, into: up)
            rec.gatedActivation(gate, up, count: N * I, kind: options.activation)
            rec.matmul(L.down, gate, rows: N, into: h)
            if let pn = L.postFFNorm { rec.rmsNorm(h, rows: N, width: H, weight: pn.at(), eps: eps, into: h) }
            rec.add(h, into: x, count: N * H)

            // resid_post.l: steering edits, then capture.
            if let plan {
                for (s, it) in items.enumerated() {
                    plan.record(layer: l, x: x + offsets[s] * H, seq: it.sequence, rows: it.tokens.count,
                                firstPosition: it.cache.length, promptLength: it.promptLength, on: rec)
                }
            }
            if let stop = stopAfter, l >= stop {
                // Layers ≤ stop hold these keys now, enough for a later chunk that also stops here.
                for it in items { it.cache.length += it.tokens.count }
                rec.submit()
                plan?.finishStep()
                return
            }
        }
        for it in items { it.cache.length += it.tokens.count }

        // Logits: final norm and LM head on the requested rows only, read back once.
        let R = logitRows.count
        if R > 0 {
            let li = ws.logitInput.at(), lr = ws.logitRows.at()
            for (i, row) in logitRows.enumerated() { rec.copy(x + row * H, into: li + i * H, count: H) }
            rec.rmsNorm(li, rows: R, width: H, weight: finalNorm.at(), eps: eps, into: li)
            rec.matmul(lmHead, li, rows: R, into: lr)
            if let cap = options.finalSoftcap { rec.softcap(lr, cap: cap, count: R * vocab) }
            rec.read(lr, count: R * vocab, into: ws.logits)
        }
        rec.submit()
        plan?.finishStep()
    }

    func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: layers.count, kvDim: kvDim, capacity: capacity, backend: backend)
    }
}

@inline(__always)
func bf16Round(_ x: Float) -> UInt32 {
    // Round to nearest even on the upper 16 bits, as torch's float→bfloat16 conversion.
    let b = x.bitPattern
    let rounded = b &+ 0x7FFF &+ ((b >> 16) & 1)
    return rounded & 0xFFFF_0000
}

extension LanguageModel {
    /// The name of the backend the model runs on.
    public var backendName: String { transformer.backend.name }

    /// The backend's kernel for each of layer 0's projections and the LM head at each row count,
    /// as the backend's one decision makes it (`tiller bench` prints these).
    public func kernelChoices(rows: [Int]) -> [(matrix: String, rows: Int, kernel: String)] {
        let t = transformer
        guard let l = t.layers.first else { return [] }
        let named: [(String, MatrixOperator)] = [("q_proj", l.q), ("k_proj", l.k), ("v_proj", l.v), ("o_proj", l.o),
                                                 ("gate_proj", l.gate), ("up_proj", l.up), ("down_proj", l.down), ("lm_head", t.lmHead)]
        return named.flatMap { n, m in rows.map { (n, $0, t.backend.kernel(for: m, rows: $0)) } }
    }
}
