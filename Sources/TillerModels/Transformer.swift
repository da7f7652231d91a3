import Foundation
import TillerFormats
import TillerTensor

// The shared decoder-only transformer, à la llama.cpp's graph builders: norm, attention with
// RoPE/GQA/softcap/sliding window over a KV cache, gated FFN, residual adds and the resid_post
// hook. An architecture is its row of ArchitectureFacts (TillerFormats) and nothing else: the
// block layout, norms, biases, softcaps and sliding layers are read from it here, and its tensor
// names from the one table of TensorName. The step is recorded on the backend (Backend.swift).
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

/// A loaded model: its facts, its weights on the backend, and what the facts imply for a step.
final class Transformer: @unchecked Sendable {
    let config: ModelConfig
    let facts: ArchitectureFacts
    let backend: Backend
    let activation: Activation
    /// Multiplies q·k (head_dim^-0.5, or query_pre_attn_scalar^-0.5 for Gemma).
    let attentionScale: Float
    let attentionSoftcap: Float?
    let finalSoftcap: Float?
    /// The sliding layers' window.
    let window: Int?
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
        let f = c.architecture.facts
        config = c
        facts = f
        self.backend = backend
        hidden = c.hiddenSize; heads = c.numAttentionHeads; kvHeads = c.numKeyValueHeads
        headDim = c.headDim; intermediate = c.intermediateSize; vocab = c.vocabSize
        guard heads > 0, kvHeads > 0, heads % kvHeads == 0, headDim % 2 == 0 else {
            throw ModelError("\(name): \(heads) attention heads, \(kvHeads) key/value heads and head_dim \(headDim) are not a valid GQA layout")
        }
        activation = try Activation(configName: c.hiddenActivation)
        let scalar = f.queryPreAttnScalar != nil ? (c.queryPreAttnScalar ?? Double(c.headDim)) : Double(c.headDim)
        attentionScale = 1 / Float(scalar).squareRoot()
        attentionSoftcap = f.supportsSoftcaps ? c.attnLogitSoftcapping.map(Float.init) : nil
        finalSoftcap = f.supportsSoftcaps ? c.finalLogitSoftcapping.map(Float.init) : nil
        window = c.slidingWindow
        let layout = try Self.attentionLayout(c)

        let H = hidden, I = intermediate, V = vocab
        let perLayer = H * (heads + 2 * kvHeads) * headDim + heads * headDim * H + 3 * H * I
        let fp32Bytes = 4 * (c.numHiddenLayers * perLayer + (c.tieWordEmbeddings ? 1 : 2) * V * H)
        let loader = WeightLoader(source: src, model: name, backend: backend, config: c, modelBytesFP32: fp32Bytes)
        embed = try loader.matrix(.embed)
        if let head = try loader.optionalMatrix(.lmHead) {
            lmHead = head
        } else if c.tieWordEmbeddings {
            lmHead = embed
        } else {
            throw ModelError("\(name): missing tensor \(loader.name(.lmHead)) (tie_word_embeddings is false)")
        }
        finalNorm = try loader.norm(.finalNorm)
        if f.scaleEmbeddings {
            // transformers: embed_scale (fp32 tensor) .to(weight.dtype) — rounded to the table's dtype.
            let s = Float(Double(H).squareRoot())
            switch try src.tensor(loader.name(.embed))?.type {
            case .bf16?: embedScale = Float(bitPattern: bf16Round(s))
            case .f16?: embedScale = Float(Float16(s))
            default: embedScale = s
            }
        } else {
            embedScale = nil
        }

        let preNorms = f.blockNorms != .post, postNorms = f.blockNorms != .pre
        let qkNorm = f.qkNorm != .none
        let biasRequired = f.alwaysQKVBias || c.attentionBias
        var tables: [[Float]] = []
        var ls: [LayerWeights] = []
        for l in 0..<c.numHiddenLayers {
            let invFreq = layout.ropeInvFreq[l]
            let rope: Int
            if let i = tables.firstIndex(of: invFreq) { rope = i } else { tables.append(invFreq); rope = tables.count - 1 }
            func bias(_ t: ModelTensor, required: Bool) throws -> BackendBuffer? {
                required ? try loader.vector(t, layer: l) : try loader.optionalVector(t, layer: l)
            }
            // Phi-3 stores q/k/v and gate/up as one tensor each: row views of it.
            let q, k, v, gate, up: MatrixOperator
            if f.fusedProjections {
                let qkv = try loader.rowBlocks(.qkv, layer: l, rows: [heads * headDim, kvHeads * headDim, kvHeads * headDim])
                (q, k, v) = (qkv[0], qkv[1], qkv[2])
                let gu = try loader.rowBlocks(.gateUp, layer: l, rows: [I, I])
                (gate, up) = (gu[0], gu[1])
            } else {
                q = try loader.matrix(.q, layer: l)
                k = try loader.matrix(.k, layer: l)
                v = try loader.matrix(.v, layer: l)
                gate = try loader.matrix(.gate, layer: l)
                up = try loader.matrix(.up, layer: l)
            }
            ls.append(LayerWeights(
                inputNorm: preNorms ? try loader.norm(.inputNorm, layer: l) : nil,
                q: q, k: k, v: v,
                o: try loader.matrix(.o, layer: l),
                qBias: try bias(.qBias, required: biasRequired),
                kBias: try bias(.kBias, required: biasRequired),
                vBias: try bias(.vBias, required: biasRequired),
                oBias: try bias(.oBias, required: false),
                qNorm: qkNorm ? try loader.norm(.qNorm, layer: l) : nil,
                kNorm: qkNorm ? try loader.norm(.kNorm, layer: l) : nil,
                postAttentionNorm: postNorms ? try loader.norm(.postAttentionNorm, layer: l) : nil,
                preFFNorm: preNorms ? try loader.norm(.preFFNorm, layer: l) : nil,
                postFFNorm: postNorms ? try loader.norm(.postFFNorm, layer: l) : nil,
                gate: gate, up: up,
                down: try loader.matrix(.down, layer: l),
                sliding: layout.sliding[l], rope: rope))
        }
        layers = ls
        ropeInvFreq = try tables.map { try backend.upload($0) }
    }

    /// Per layer: whether it attends through the sliding window (its facts' rule or the config's
    /// layer_types, and only with a window), and its RoPE inverse frequencies (with a local RoPE
    /// base, the sliding layers' plain table; the global layers keep the configured scaling).
    static func attentionLayout(_ c: ModelConfig) throws -> (sliding: [Bool], ropeInvFreq: [[Float]]) {
        let f = c.architecture.facts
        let global = try ropeInverseFrequencies(base: c.ropeTheta, headDim: c.headDim, scaling: c.ropeScaling)
        let slidingTypes = f.slidingLayers(c)
        var rope = Array(repeating: global, count: c.numHiddenLayers)
        if let localBase = f.localRopeBase {
            let local = try ropeInverseFrequencies(base: c.ropeLocalBaseFreq ?? localBase, headDim: c.headDim, scaling: nil)
            rope = slidingTypes.map { $0 ? local : global }
        }
        return (slidingTypes.map { $0 && c.slidingWindow != nil }, rope)
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
    ///
    /// With `start`, the pass begins from given `resid_post.layer` rows (one per stacked token,
    /// as an unsteered pass computed them) instead of the embeddings: they are written to the
    /// backend, the hooks at that layer run first (the configuration's steering there), then
    /// blocks layer+1…N−1. The caches' layers ≤ start.layer are not written (a shared layer
    /// prefix, see TeacherForcing.swift).
    func step(_ items: [Item], plan: HookPlan?, logitRows: [Int], ws: Workspace, stopAfter: Int? = nil,
              start: (layer: Int, rows: UnsafePointer<Float>)? = nil) {
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

        // resid_post.l: steering edits, then capture.
        func hooks(_ l: Int) {
            guard let plan else { return }
            for (s, it) in items.enumerated() {
                plan.record(layer: l, x: x + offsets[s] * H, seq: it.sequence, rows: it.tokens.count,
                            firstPosition: it.cache.length, promptLength: it.promptLength, on: rec)
            }
        }

        if let start {
            rec.write(UnsafeBufferPointer(start: start.rows, count: N * H), into: x)
            hooks(start.layer)
        } else {
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
        }

        // cos/sin per RoPE kind, fp32 like transformers: freqs = float(pos) · inv_freq.
        var positions: [Int] = []
        positions.reserveCapacity(N)
        for it in items { positions.append(contentsOf: it.cache.length ..< it.cache.length + it.tokens.count) }
        for (ti, inv) in ropeInvFreq.enumerated() {
            rec.ropeTables(positions: positions, invFreq: inv.at(), half: headDim / 2, cos: ws.cos[ti].at(), sin: ws.sin[ti].at())
        }

        let eps = Float(config.rmsNormEps)

        for l in (start.map { $0.layer + 1 } ?? 0) ..< layers.count {
            let L = layers[l]
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
                let (qRows, qWidth) = facts.qkNorm == .whole ? (N, qd) : (N * heads, headDim)
                let (kRows, kWidth) = facts.qkNorm == .whole ? (N, kd) : (N * kvHeads, headDim)
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
                    headDim: headDim, scale: attentionScale, softcap: attentionSoftcap,
                    window: L.sliding ? window : nil))
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
            rec.gatedActivation(gate, up, count: N * I, kind: activation)
            rec.matmul(L.down, gate, rows: N, into: h)
            if let pn = L.postFFNorm { rec.rmsNorm(h, rows: N, width: H, weight: pn.at(), eps: eps, into: h) }
            rec.add(h, into: x, count: N * H)

            hooks(l)
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
            if let cap = finalSoftcap { rec.softcap(lr, cap: cap, count: R * vocab) }
            ws.logitsView = rec.hostAddress(lr)
            if ws.logitsView == nil { rec.read(lr, count: R * vocab, into: ws.logitsCopy) }
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
    /// The backend the model runs on (a judge or a second model loaded for this one goes there too).
    public var backend: Backend { transformer.backend }
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

/// `inv_freq = 1 / base^(2i/d)` in fp32, then the configured scaling, as transformers computes it.
func ropeInverseFrequencies(base: Double, headDim d: Int, scaling: RopeScaling?) throws -> [Float] {
    let inv = (0..<(d / 2)).map { i -> Float in
        let e = Float(2 * i) / Float(d)
        return 1 / Foundation.pow(Float(base), e)
    }
    guard let s = scaling else { return inv }
    do {
        return try inv.map { try s.scaledInverseFrequency($0) }
    } catch let e as ModelConfigError {
        throw ModelError(e.description)
    }
}
