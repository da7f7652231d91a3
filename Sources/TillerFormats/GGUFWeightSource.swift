import Foundation
import TillerTensor

// A GGUF model file seen as a transformers checkpoint: the `<arch>.*` hyperparameters become a
// `ModelConfig` (matching what transformers' GGUF loader and llama.cpp derive), GGUF tensor names
// become transformers parameter names, and the two rewrites llama.cpp's convert_hf_to_gguf.py
// applies are undone so an architecture sees exactly the values transformers would:
//   - Llama (and Mistral, written as llama): rows of Q and K are interleaved per head (`permute` in LlamaModel) so that llama.cpp
//     can use GPT-J-style RoPE. We move the rows back; quant blocks never straddle rows, so this is
//     a byte copy, no dequantisation.
//   - Gemma 2/3: every `*norm.weight` is stored as 1 + w (transformers' GemmaRMSNorm multiplies by
//     1 + w). We subtract the 1 again.

public final class GGUFWeightSource: WeightSource, @unchecked Sendable {
    public let gguf: GGUFFile
    public let config: ModelConfig
    /// transformers names of every mapped tensor, in file order.
    public let names: [String]
    /// GGUF tensors this mapping does not know (for example llama.cpp's `rope_freqs.weight`).
    public let unmappedTensorNames: [String]
    private let ggufName: [String: String]

    public convenience init(path: String) throws {
        try self.init(gguf: GGUFFile(path: path))
    }

    public init(gguf: GGUFFile) throws {
        self.gguf = gguf
        let config = try ModelConfig(gguf: gguf)
        self.config = config
        var names: [String] = []
        var map: [String: String] = [:]
        var unmapped: [String] = []
        for info in gguf.tensorInfos {
            guard let hf = GGUFNames.transformersName(info.name, architecture: config.architecture) else {
                unmapped.append(info.name)
                continue
            }
            guard map[hf] == nil else {
                throw FileError(path: gguf.path, "tensors \(map[hf]!) and \(info.name) both map to \(hf)")
            }
            map[hf] = info.name
            names.append(hf)
        }
        self.names = names
        self.ggufName = map
        self.unmappedTensorNames = unmapped
        try validateShapes()
    }

    /// GGUF's name for a transformers parameter name.
    public func ggufName(for name: String) -> String? { ggufName[name] }

    public func tensor(_ name: String) throws -> RawTensor? {
        guard let g = ggufName[name] else { return nil }
        let t = try gguf.tensor(g)
        let stored = RawTensor(name: name, type: t.type, shape: t.shape, data: t.data, owner: t.owner)
        let facts = config.architecture.facts
        if facts.ggufPermutesQK {
            if g.hasSuffix(".attn_q.weight") || g.hasSuffix(".attn_q.bias") {
                return try unpermuteRows(stored, heads: config.numAttentionHeads)
            }
            if g.hasSuffix(".attn_k.weight") || g.hasSuffix(".attn_k.bias") {
                return try unpermuteRows(stored, heads: config.numKeyValueHeads)
            }
        }
        if facts.normAddsOne, g.hasSuffix("norm.weight") { return try subtractOne(stored) }
        return stored
    }

    /// Undoes convert_hf_to_gguf's `permute`: within each head of `d` rows, GGUF row `2i + k`
    /// holds transformers row `k·d/2 + i` (k ∈ {0, 1}).
    private func unpermuteRows(_ t: RawTensor, heads: Int) throws -> RawTensor {
        let rows = t.shape[0]
        guard heads > 0, rows % heads == 0, (rows / heads) % 2 == 0 else {
            throw FileError(path: gguf.path, "tensor \(ggufName[t.name] ?? t.name): \(rows) rows cannot be split into \(heads) heads of an even size")
        }
        let rowBytes = t.data.count / rows
        let d = rows / heads
        let half = d / 2
        let owned = OwnedBytes(count: t.data.count)
        let src = t.data.baseAddress!
        for h in 0..<heads {
            for k in 0..<2 {
                for i in 0..<half {
                    let hfRow = h * d + k * half + i
                    let ggufRow = h * d + 2 * i + k
                    (owned.pointer + hfRow * rowBytes).copyMemory(from: src + ggufRow * rowBytes, byteCount: rowBytes)
                }
            }
        }
        return RawTensor(name: t.name, type: t.type, shape: t.shape, data: owned.buffer, owner: owned)
    }

    private func subtractOne(_ t: RawTensor) throws -> RawTensor {
        let n = t.elementCount
        var values = [Float](repeating: 0, count: n)
        switch t.type {
        case .f32:
            for i in 0..<n { values[i] = t.data.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
        case .f16:
            for i in 0..<n {
                values[i] = Float(Float16(bitPattern: t.data.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .bf16:
            for i in 0..<n {
                let bits = UInt32(t.data.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16
                values[i] = Float(bitPattern: bits)
            }
        default:
            throw FileError(path: gguf.path, "tensor \(ggufName[t.name] ?? t.name): norm weights of type \(t.type) are not supported (F32, F16, BF16)")
        }
        for i in 0..<n { values[i] -= 1 }
        return OwnedBytes.f32Tensor(name: t.name, shape: t.shape, values: values)
    }

    /// A hostile or mismatched file must fail here, naming the tensor, rather than make an
    /// architecture read past a row.
    private func validateShapes() throws {
        for hf in names {
            let g = ggufName[hf]!
            guard let info = gguf.info(g) else { continue }
            if let problem = config.shapeProblem(of: hf, shape: info.shape) {
                throw FileError(path: gguf.path, "tensor \(g): \(problem)")
            }
        }
        for required in ["model.embed_tokens.weight", "model.norm.weight"] where ggufName[required] == nil {
            throw FileError(path: gguf.path, "missing tensor \(GGUFNames.ggufName(required) ?? required)")
        }
    }
}

/// GGUF ↔ transformers tensor names, from the one table (TensorName).
public enum GGUFNames {
    public static func transformersName(_ gguf: String, architecture: Architecture) -> String? {
        let names = TensorName.spellings(architecture)
        if let g = names.first(where: { !$0.tensor.isPerLayer && $0.gguf == gguf }) { return g.transformers }
        let parts = gguf.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0,
              let n = names.first(where: { $0.tensor.isPerLayer && $0.gguf == parts[2] }) else { return nil }
        return "model.layers.\(layer).\(n.transformers)"
    }

    /// GGUF's name for a transformers name, under any architecture's spelling (for messages).
    public static func ggufName(_ transformers: String) -> String? {
        for facts in ArchitectureFacts.all {
            let arch = facts.architecture
            guard let (tensor, layer) = TensorName.parse(transformers: transformers, architecture: arch),
                  let n = TensorName.spellings(arch).first(where: { $0.tensor == tensor })
            else { continue }
            return layer.map { "blk.\($0).\(n.gguf)" } ?? n.gguf
        }
        return nil
    }
}

extension ModelConfig {
    /// The configuration implied by a GGUF file's `<arch>.*` and `tokenizer.ggml.*` keys.
    /// Where GGUF has no key, the defaults are those transformers' config classes use (and that
    /// llama.cpp hard-codes), so a GGUF model and its HF original configure identically.
    public init(gguf: GGUFFile) throws {
        let path = gguf.path
        guard let archName = gguf.architecture else {
            throw FileError(path: path, "missing general.architecture")
        }
        guard let facts = ArchitectureFacts.forGGUF(archName) else {
            throw FileError(path: path, "GGUF architecture \"\(archName)\" is not supported (supported: \(ArchitectureFacts.supportedGGUFNames.joined(separator: ", ")))")
        }
        let arch = facts.architecture
        let m = gguf.metadata
        func value(_ key: String) -> GGUFValue? { m["\(archName).\(key)"] }
        func int(_ key: String) throws -> Int? {
            guard let v = value(key) else { return nil }
            guard let i = v.int else { throw FileError(path: path, "\(archName).\(key) is not an integer: \(v)") }
            return i
        }
        func double(_ key: String) throws -> Double? {
            guard let v = value(key) else { return nil }
            guard let d = v.double, d.isFinite else { throw FileError(path: path, "\(archName).\(key) is not a number: \(v)") }
            return d
        }
        func positive(_ key: String, _ v: Int?, max: Int = 1 << 24) throws -> Int {
            guard let v else { throw FileError(path: path, "missing \(archName).\(key)") }
            guard v > 0, v <= max else { throw FileError(path: path, "\(archName).\(key) = \(v) is out of range") }
            return v
        }

        let hidden = try positive("embedding_length", int("embedding_length"))
        let layers = try positive("block_count", int("block_count"), max: 4096)
        let ffn = try positive("feed_forward_length", int("feed_forward_length"))
        let heads = try positive("attention.head_count", int("attention.head_count"), max: 4096)
        let kvHeads = try positive("attention.head_count_kv", int("attention.head_count_kv") ?? heads, max: 4096)
        guard heads % kvHeads == 0 else {
            throw FileError(path: path, "\(archName).attention.head_count (\(heads)) is not a multiple of head_count_kv (\(kvHeads))")
        }
        let headDim = try positive("attention.key_length",
                                   int("attention.key_length") ?? int("rope.dimension_count") ?? (hidden / heads))
        if let v = try int("attention.value_length"), v != headDim {
            throw FileError(path: path, "\(archName).attention.value_length (\(v)) differs from key_length (\(headDim)); unsupported")
        }

        // Vocabulary size is the embedding's row count; the token list is the usual witness.
        var vocab = try int("vocab_size")
        if let tokens = m["tokenizer.ggml.tokens"]?.array { vocab = tokens.count }
        if let embd = gguf.info("token_embd.weight"), embd.shape.count == 2 { vocab = embd.shape[0] }
        let vocabSize = try positive("vocab_size", vocab, max: 1 << 22)

        let eps = try double("attention.layer_norm_rms_epsilon") ?? facts.gguf.eps
        let theta = try double("rope.freq_base") ?? facts.gguf.theta
        guard eps > 0, theta > 0 else { throw FileError(path: path, "non-positive rms epsilon or rope base") }

        var scaling: RopeScaling?
        if let type = value("rope.scaling.type")?.string, type != "none" {
            // YaRN and friends change attention in ways ModelConfig cannot express: refuse them.
            guard type == "linear" else {
                throw FileError(path: path, "\(archName).rope.scaling.type \"\(type)\" is not supported (linear, or Llama 3 rope_freqs)")
            }
            let factor = try double("rope.scaling.factor") ?? 1
            guard factor > 0 else { throw FileError(path: path, "\(archName).rope.scaling.factor = \(factor)") }
            scaling = RopeScaling(type: type, factor: factor)
        }
        if let freqs = gguf.info("rope_freqs.weight") {
            scaling = try llama3Scaling(gguf: gguf, info: freqs, theta: theta, headDim: headDim)
        }
        // Phi-3's 128k models store LongRoPE factors, which rescale RoPE by context length.
        for name in ["rope_factors_long.weight", "rope_factors_short.weight"] where gguf.info(name) != nil {
            throw FileError(path: path, "tensor \(name): LongRoPE scaling is not supported")
        }
        if let partial = try int("rope.dimension_count"), partial != headDim {
            throw FileError(path: path, "\(archName).rope.dimension_count (\(partial)) differs from the head size (\(headDim)): partial rotary embeddings are not supported")
        }

        let hasBias = gguf.info("blk.0.attn_q.bias") != nil || gguf.info("blk.0.attn_qkv.bias") != nil
        let tie = gguf.info("output.weight") == nil

        var slidingWindow: Int?
        var layerTypes: [String] = []
        let activation = facts.gguf.activation
        var queryScalar: Double?
        var attnCap: Double?
        var finalCap: Double?
        var localBase: Double?
        switch facts.sliding {
        case .periodic(let period, _):
            slidingWindow = try int("attention.sliding_window") ?? facts.hf.slidingWindow
            if let w = slidingWindow, w <= 0 {
                throw FileError(path: path, "\(archName).attention.sliding_window = \(w): a sliding window must be positive")
            }
            var pattern = period
            var explicit: [Bool]?
            if let p = value("attention.sliding_window_pattern") {
                if let n = p.int, p.array == nil {
                    guard n > 0 else { throw FileError(path: path, "\(archName).attention.sliding_window_pattern = \(n)") }
                    pattern = n
                } else if let a = p.array {
                    guard a.count == layers else {
                        throw FileError(path: path, "\(archName).attention.sliding_window_pattern has \(a.count) entries for \(layers) layers")
                    }
                    explicit = a.map { $0.bool ?? false }
                }
            }
            layerTypes = explicit.map { $0.map { $0 ? "sliding_attention" : "full_attention" } }
                ?? SlidingRule.periodicLayerTypes(layers: layers, period: pattern)
        case .none:
            // convert_hf_to_gguf writes a window only for OLMo-3 (which shares the olmo2 name).
            if let w = try int("attention.sliding_window"), w > 0 {
                throw FileError(path: path, "\(archName).attention.sliding_window = \(w): sliding-window attention is not supported for this architecture")
            }
        case .fromMaxWindowLayers, .everyLayer:
            // Qwen2/Qwen3 GGUFs may carry attention.sliding_window, but the checkpoints they come
            // from set use_sliding_window = false, so it is not applied (as in transformers).
            // Phi-3 GGUFs carry one too, which llama.cpp ignores (its Phi SWA is disabled).
            break
        }
        if facts.queryPreAttnScalar != nil {
            // llama.cpp: the 27B Gemmas scale queries by 1/sqrt(hidden/heads), all others by
            // 1/sqrt(head_dim) — the same values transformers' configs carry as query_pre_attn_scalar.
            let hiddenPerHead = layers == facts.ggufHiddenPerHeadScalarLayers
            queryScalar = try double("attention.query_pre_attn_scalar")
                ?? Double(hiddenPerHead ? hidden / heads : headDim)
        }
        if let caps = facts.softcapDefaults {
            attnCap = try double("attn_logit_softcapping") ?? caps.attention
            finalCap = try double("final_logit_softcapping") ?? caps.final
        }
        if let base = facts.localRopeBase {
            // llama.cpp hard-codes the local RoPE base of Gemma 3 (transformers' default too).
            localBase = try double("rope.freq_base_swa") ?? base
        }

        func token(_ key: String) -> Int? {
            guard let v = m["tokenizer.ggml.\(key)"]?.int, v >= 0, v < vocabSize else { return nil }
            return v
        }
        var eos: [Int] = []
        for key in ["eos_token_id", "eot_token_id", "eom_token_id"] {
            if let t = token(key), !eos.contains(t) { eos.append(t) }
        }
        // Gemma's generation_config.json stops on <end_of_turn> as well as <eos>; GGUF only keeps
        // the latter, so find the turn marker in the vocabulary as llama.cpp does.
        if let marker = facts.ggufTurnEndToken, let tokens = m["tokenizer.ggml.tokens"]?.array,
           let i = tokens.firstIndex(of: .string(marker)), !eos.contains(i) {
            eos.append(i)
        }

        self.init(architecture: arch, hiddenSize: hidden, intermediateSize: ffn, numHiddenLayers: layers,
                  numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim: headDim, vocabSize: vocabSize,
                  rmsNormEps: eps, ropeTheta: theta, ropeScaling: scaling,
                  maxPositionEmbeddings: try positive("context_length", int("context_length") ?? 8192, max: 1 << 30),
                  tieWordEmbeddings: tie, attentionBias: hasBias, hiddenActivation: activation,
                  queryPreAttnScalar: queryScalar, attnLogitSoftcapping: attnCap, finalLogitSoftcapping: finalCap,
                  slidingWindow: slidingWindow, layerTypes: layerTypes, ropeLocalBaseFreq: localBase,
                  bosTokenId: token("bos_token_id"), eosTokenIds: eos, padTokenId: token("padding_token_id"))
    }
}

/// convert_hf_to_gguf.py stores Llama 3.1-style RoPE scaling as a `rope_freqs.weight` tensor of
/// per-frequency divisors instead of its parameters. Recover the parameters: the factor is the
/// largest divisor; low/high frequency factors and the original context are those of every
/// Llama 3.x release, which we then check reproduce the stored tensor.
private func llama3Scaling(gguf: GGUFFile, info: GGUFTensorInfo, theta: Double, headDim: Int) throws -> RopeScaling {
    let path = gguf.path
    guard info.type == .f32, info.shape == [headDim / 2] else {
        throw FileError(path: path, "tensor rope_freqs.weight: expected F32 [\(headDim / 2)], got \(info.type) \(info.shape)")
    }
    let t = try gguf.tensor("rope_freqs.weight")
    let stored = (0..<headDim / 2).map { Double(t.data.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self)) }
    guard let factor = stored.max(), factor >= 1 else {
        throw FileError(path: path, "tensor rope_freqs.weight: values below 1")
    }
    let candidate = RopeScaling.llama3Release(factor: factor)
    for (i, s) in stored.enumerated() {
        let freq = 1 / pow(theta, Double(2 * i) / Double(headDim))
        let expected = try freq / candidate.scaledInverseFrequency(freq)
        guard abs(expected - s) <= 1e-3 * expected else {
            throw FileError(path: path, "tensor rope_freqs.weight: entry \(i) = \(s) does not follow Llama 3 RoPE scaling (expected \(expected)); unsupported")
        }
    }
    return candidate
}
