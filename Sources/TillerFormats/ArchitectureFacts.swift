import Foundation

// Each architecture's facts, written once: its config.json model_type names and transformers'
// config defaults, its GGUF name and the conventions of llama.cpp's convert_hf_to_gguf.py, which
// layers slide, the softcap defaults, the local RoPE base, the bias and q/k-norm requirements and
// the block layout. HFConfig.swift and GGUFWeightSource.swift read this table to build a
// ModelConfig; TillerModels' Transformer reads it to build the forward pass (an architecture is
// its row here: there are no per-architecture files), and TensorNames.swift names its tensors.

/// Which layers use sliding-window attention when a config lists no `layer_types`.
public enum SlidingRule: Sendable, Equatable {
    /// Never (Llama, OLMo-2).
    case none
    /// Qwen2/Qwen3: only with `use_sliding_window`, on the layers from `max_window_layers` on.
    case fromMaxWindowLayers
    /// Every layer, whenever `sliding_window` is set (Mistral, Phi-3).
    case everyLayer
    /// Layer i slides iff (i + 1) % period != 0: Gemma 2 alternates (2), Gemma 3 has one global
    /// layer in six; `configurable` when the config's `sliding_window_pattern` overrides the period.
    case periodic(period: Int, configurable: Bool)

    /// transformers' default layer types for `layers` layers under this rule and `period`.
    public static func periodicLayerTypes(layers: Int, period: Int) -> [String] {
        (0..<layers).map { ($0 + 1) % period != 0 ? "sliding_attention" : "full_attention" }
    }
}

/// Where q/k RMSNorm applies, after the projection and before RoPE.
public enum QKNorm: Sendable, Equatable {
    case none
    /// Over each head's head_dim values (Gemma 3, Qwen3).
    case perHead
    /// Over the whole q (heads·head_dim) and k (kv_heads·head_dim) projections (OLMo-2).
    case whole
}

/// Where a decoder block's RMSNorms sit.
public enum BlockNorms: Sendable, Equatable {
    /// Llama: input_layernorm before attention, post_attention_layernorm before the MLP.
    case pre
    /// Gemma: pre-norms, and post_attention / post_feedforward norms on each output before its residual add.
    case sandwich
    /// OLMo-2: no pre-norms; post_attention_layernorm and post_feedforward_layernorm on the outputs.
    case post
}

/// transformers' config-class defaults for the keys a config.json may leave out.
struct HFDefaults: Sendable {
    var vocab: Int, hidden: Int, intermediate: Int, layers: Int, heads: Int
    var kvHeads: Int?      // nil: same as heads
    var headDim: Int?      // nil: hidden / heads
    var maxPositions: Int
    var eps: Double
    var theta: Double
    var tie: Bool
    var activation: String
    var bos: Int?, eos: [Int], pad: Int?
    /// `sliding_window` when the key is missing (it applies only under the architecture's SlidingRule).
    var slidingWindow: Int? = nil
}

/// What a GGUF file leaves out, as llama.cpp assumes it (and transformers' GGUF loader).
struct GGUFDefaults: Sendable {
    var eps: Double
    var theta: Double
    var activation: String
}

public struct ArchitectureFacts: Sendable {
    public let architecture: Architecture
    /// config.json `model_type` values read as this architecture.
    public let modelTypes: [String]
    /// Multimodal wrappers whose `text_config` holds this architecture's language model.
    public let wrapperModelTypes: [String]
    /// `general.architecture` of the GGUF files llama.cpp writes for it; nil when llama.cpp
    /// converts it under another architecture's name (Mistral is written as `llama`).
    public let ggufName: String?
    let hf: HFDefaults
    let gguf: GGUFDefaults
    /// The config.json key the MLP's activation is read from.
    public let activationKey: String
    public let sliding: SlidingRule
    /// Softcap defaults when a config has no such key; nil for architectures without softcaps.
    public let softcapDefaults: (attention: Double?, final: Double?)?
    /// RoPE base of the sliding (local) layers when the config gives none (Gemma 3); nil: one base.
    public let localRopeBase: Double?
    /// transformers' `query_pre_attn_scalar` default (attention scale scalar^-0.5); nil: head_dim^-0.5.
    public let queryPreAttnScalar: Double?
    /// GGUF has no query_pre_attn_scalar: llama.cpp uses hidden/heads for the model with this many
    /// layers (the 27B) and head_dim for all others, as their transformers configs say.
    public let ggufHiddenPerHeadScalarLayers: Int?
    /// q/k/v projection biases whatever `attention_bias` says (Qwen2).
    public let alwaysQKVBias: Bool
    public let qkNorm: QKNorm
    public let blockNorms: BlockNorms
    /// Norms multiply by 1 + w (Gemma); llama.cpp stores that 1 + w in GGUF.
    public let normAddsOne: Bool
    /// Embeddings × √hidden (Gemma).
    public let scaleEmbeddings: Bool
    /// Phi-3: one `qkv_proj` (rows q, k, v) and one `gate_up_proj` (rows gate, up).
    public let fusedProjections: Bool
    /// convert_hf_to_gguf interleaves Q/K rows per head (LlamaModel.permute) for GPT-J-style RoPE.
    public let ggufPermutesQK: Bool
    /// GGUF keeps one eos id; this turn marker also stops generation, as generation_config.json says.
    public let ggufTurnEndToken: String?

    public var supportsSoftcaps: Bool { softcapDefaults != nil }
}

extension ArchitectureFacts {
    public static let all: [ArchitectureFacts] = [
        ArchitectureFacts(
            architecture: .llama, modelTypes: ["llama"], wrapperModelTypes: [],
            ggufName: "llama",
            hf: HFDefaults(
                vocab: 32000, hidden: 4096, intermediate: 11008, layers: 32, heads: 32, kvHeads: nil, headDim: nil,
                maxPositions: 2048, eps: 1e-6, theta: 10_000, tie: false, activation: "silu",
                bos: 1, eos: [2], pad: nil),
            gguf: GGUFDefaults(eps: 1e-5, theta: 10_000, activation: "silu"),
            activationKey: "hidden_act", sliding: .none,
            softcapDefaults: nil, localRopeBase: nil,
            queryPreAttnScalar: nil, ggufHiddenPerHeadScalarLayers: nil,
            alwaysQKVBias: false, qkNorm: .none, blockNorms: .pre,
            normAddsOne: false, scaleEmbeddings: false, fusedProjections: false,
            ggufPermutesQK: true, ggufTurnEndToken: nil),
        ArchitectureFacts(
            architecture: .qwen2, modelTypes: ["qwen2"], wrapperModelTypes: [],
            ggufName: "qwen2",
            hf: HFDefaults(
                vocab: 151_936, hidden: 4096, intermediate: 22016, layers: 32, heads: 32, kvHeads: 32, headDim: nil,
                maxPositions: 32768, eps: 1e-6, theta: 10_000, tie: false, activation: "silu",
                bos: nil, eos: [], pad: nil, slidingWindow: 4096),
            gguf: GGUFDefaults(eps: 1e-5, theta: 1_000_000, activation: "silu"),
            activationKey: "hidden_act", sliding: .fromMaxWindowLayers,
            softcapDefaults: nil, localRopeBase: nil,
            queryPreAttnScalar: nil, ggufHiddenPerHeadScalarLayers: nil,
            alwaysQKVBias: true, qkNorm: .none, blockNorms: .pre,
            normAddsOne: false, scaleEmbeddings: false, fusedProjections: false,
            ggufPermutesQK: false, ggufTurnEndToken: nil),
        ArchitectureFacts(
            architecture: .gemma2, modelTypes: ["gemma2"], wrapperModelTypes: [],
            ggufName: "gemma2",
            hf: HFDefaults(
                vocab: 256_000, hidden: 2304, intermediate: 9216, layers: 26, heads: 8, kvHeads: 4, headDim: 256,
                maxPositions: 8192, eps: 1e-6, theta: 10_000, tie: true, activation: "gelu_pytorch_tanh",
                bos: 2, eos: [1], pad: 0, slidingWindow: 4096),
            gguf: GGUFDefaults(eps: 1e-6, theta: 10_000, activation: "gelu_pytorch_tanh"),
            activationKey: "hidden_activation", sliding: .periodic(period: 2, configurable: false),
            softcapDefaults: (attention: 50, final: 30), localRopeBase: nil,
            queryPreAttnScalar: 256, ggufHiddenPerHeadScalarLayers: 46,
            alwaysQKVBias: false, qkNorm: .none, blockNorms: .sandwich,
            normAddsOne: true, scaleEmbeddings: true, fusedProjections: false,
            ggufPermutesQK: false, ggufTurnEndToken: "<end_of_turn>"),
        ArchitectureFacts(
            architecture: .gemma3, modelTypes: ["gemma3_text"], wrapperModelTypes: ["gemma3"],
            ggufName: "gemma3",
            hf: HFDefaults(
                vocab: 262_208, hidden: 2304, intermediate: 9216, layers: 26, heads: 8, kvHeads: 4, headDim: 256,
                maxPositions: 131_072, eps: 1e-6, theta: 1_000_000, tie: true, activation: "gelu_pytorch_tanh",
                bos: 2, eos: [1], pad: 0, slidingWindow: 4096),
            gguf: GGUFDefaults(eps: 1e-6, theta: 1_000_000, activation: "gelu_pytorch_tanh"),
            activationKey: "hidden_activation", sliding: .periodic(period: 6, configurable: true),
            softcapDefaults: (attention: nil, final: nil), localRopeBase: 10_000,
            queryPreAttnScalar: 256, ggufHiddenPerHeadScalarLayers: 62,
            alwaysQKVBias: false, qkNorm: .perHead, blockNorms: .sandwich,
            normAddsOne: true, scaleEmbeddings: true, fusedProjections: false,
            ggufPermutesQK: false, ggufTurnEndToken: "<end_of_turn>"),
        ArchitectureFacts(
            architecture: .qwen3, modelTypes: ["qwen3"], wrapperModelTypes: [],
            ggufName: "qwen3",
            hf: HFDefaults(
                vocab: 151_936, hidden: 4096, intermediate: 22016, layers: 32, heads: 32, kvHeads: 32, headDim: 128,
                maxPositions: 32768, eps: 1e-6, theta: 10_000, tie: false, activation: "silu",
                bos: nil, eos: [], pad: nil, slidingWindow: 4096),
            gguf: GGUFDefaults(eps: 1e-6, theta: 1_000_000, activation: "silu"),
            activationKey: "hidden_act", sliding: .fromMaxWindowLayers,
            softcapDefaults: nil, localRopeBase: nil,
            queryPreAttnScalar: nil, ggufHiddenPerHeadScalarLayers: nil,
            alwaysQKVBias: false, qkNorm: .perHead, blockNorms: .pre,
            normAddsOne: false, scaleEmbeddings: false, fusedProjections: false,
            ggufPermutesQK: false, ggufTurnEndToken: nil),
        ArchitectureFacts(
            architecture: .mistral, modelTypes: ["mistral"], wrapperModelTypes: [],
            ggufName: nil,
            hf: HFDefaults(
                vocab: 32000, hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kvHeads: 8, headDim: nil,
                maxPositions: 4096 * 32, eps: 1e-6, theta: 10_000, tie: false, activation: "silu",
                bos: 1, eos: [2], pad: nil, slidingWindow: 4096),
            // Unused: Mistral GGUFs are `llama` files and take Llama's entry.
            gguf: GGUFDefaults(eps: 1e-5, theta: 10_000, activation: "silu"),
            activationKey: "hidden_act", sliding: .everyLayer,
            softcapDefaults: nil, localRopeBase: nil,
            queryPreAttnScalar: nil, ggufHiddenPerHeadScalarLayers: nil,
            alwaysQKVBias: false, qkNorm: .none, blockNorms: .pre,
            normAddsOne: false, scaleEmbeddings: false, fusedProjections: false,
            ggufPermutesQK: true, ggufTurnEndToken: nil),
        ArchitectureFacts(
            architecture: .phi3, modelTypes: ["phi3"], wrapperModelTypes: [],
            ggufName: "phi3",
            hf: HFDefaults(
                vocab: 32064, hidden: 3072, intermediate: 8192, layers: 32, heads: 32, kvHeads: nil, headDim: nil,
                maxPositions: 4096, eps: 1e-5, theta: 10_000, tie: false, activation: "silu",
                bos: 1, eos: [32000], pad: 32000, slidingWindow: nil),
            gguf: GGUFDefaults(eps: 1e-5, theta: 10_000, activation: "silu"),
            activationKey: "hidden_act", sliding: .everyLayer,
            softcapDefaults: nil, localRopeBase: nil,
            queryPreAttnScalar: nil, ggufHiddenPerHeadScalarLayers: nil,
            alwaysQKVBias: false, qkNorm: .none, blockNorms: .pre,
            normAddsOne: false, scaleEmbeddings: false, fusedProjections: true,
            ggufPermutesQK: false, ggufTurnEndToken: nil),
        ArchitectureFacts(
            architecture: .olmo2, modelTypes: ["olmo2"], wrapperModelTypes: [],
            ggufName: "olmo2",
            hf: HFDefaults(
                vocab: 50304, hidden: 4096, intermediate: 11008, layers: 32, heads: 32, kvHeads: nil, headDim: nil,
                maxPositions: 2048, eps: 1e-5, theta: 10_000, tie: false, activation: "silu",
                bos: nil, eos: [50279], pad: 1),
            gguf: GGUFDefaults(eps: 1e-5, theta: 10_000, activation: "silu"),
            activationKey: "hidden_act", sliding: .none,
            softcapDefaults: nil, localRopeBase: nil,
            queryPreAttnScalar: nil, ggufHiddenPerHeadScalarLayers: nil,
            alwaysQKVBias: false, qkNorm: .whole, blockNorms: .post,
            normAddsOne: false, scaleEmbeddings: false, fusedProjections: false,
            ggufPermutesQK: false, ggufTurnEndToken: nil),
    ]

    /// The facts of a config.json `model_type` (a wrapper's type maps to its text model).
    public static func forModelType(_ modelType: String) -> ArchitectureFacts? {
        all.first { $0.modelTypes.contains(modelType) }
    }

    /// The text model type a multimodal wrapper's `text_config` holds.
    public static func textModelType(ofWrapper modelType: String) -> String? {
        all.first { $0.wrapperModelTypes.contains(modelType) }?.modelTypes.first
    }

    public static func forGGUF(_ name: String) -> ArchitectureFacts? {
        all.first { $0.ggufName == name }
    }

    /// Every supported config.json model_type, text models then wrappers.
    public static var supportedModelTypes: [String] {
        all.flatMap(\.modelTypes) + all.flatMap(\.wrapperModelTypes).sorted()
    }

    /// Every supported GGUF `general.architecture`.
    public static var supportedGGUFNames: [String] { all.compactMap(\.ggufName) }

    /// Per layer: is it a sliding-attention layer? The config's `layer_types` when it has them,
    /// else this architecture's rule (a config built by hand may leave them out). The window
    /// applies only where the config also has a `slidingWindow`.
    public func slidingLayers(_ c: ModelConfig) -> [Bool] {
        if !c.layerTypes.isEmpty { return (0..<c.numHiddenLayers).map { c.isSliding(layer: $0) } }
        switch sliding {
        case .none, .fromMaxWindowLayers: return Array(repeating: false, count: c.numHiddenLayers)
        case .everyLayer: return Array(repeating: true, count: c.numHiddenLayers)
        case .periodic(let period, _): return (0..<c.numHiddenLayers).map { ($0 + 1) % period != 0 }
        }
    }
}

extension Architecture {
    public var facts: ArchitectureFacts {
        guard let f = ArchitectureFacts.all.first(where: { $0.architecture == self }) else {
            preconditionFailure("architecture \(rawValue) has no entry in ArchitectureFacts.all")
        }
        return f
    }
}

// MARK: - RoPE scaling formulas

extension RopeScaling {
    /// The parameters of every Llama 3.x release (low 1, high 4, original context 8192) with `factor`;
    /// GGUF files keep only the resulting divisors (`rope_freqs.weight`).
    public static func llama3Release(factor: Double) -> RopeScaling {
        RopeScaling(type: "llama3", factor: factor, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192)
    }

    /// One RoPE inverse frequency under this scaling, as transformers computes it
    /// (`_compute_llama3_parameters`, `_compute_linear_scaling_rope_parameters`).
    /// llama3: wavelength 2π/f below original/high_freq_factor keeps f, above original/low_freq_factor
    /// divides it by factor, and in between mixes the two with s = (original/wavelength − low)/(high − low).
    public func scaledInverseFrequency<F: BinaryFloatingPoint>(_ f: F) throws -> F {
        let factor = F(self.factor)
        switch type {
        case "default":
            return f
        case "linear":
            return f / factor
        case "llama3":
            guard let low = lowFreqFactor, let high = highFreqFactor, let original = originalMaxPositionEmbeddings else {
                throw ModelConfigError("rope_scaling llama3 needs low_freq_factor, high_freq_factor and original_max_position_embeddings")
            }
            let lowF = F(low), highF = F(high), old = F(original)
            let lowWavelen = old / lowF, highWavelen = old / highF
            let wavelen = 2 * F.pi / f
            if wavelen < highWavelen { return f }
            if wavelen > lowWavelen { return f / factor }
            let smooth = (old / wavelen - lowF) / (highF - lowF)
            return (1 - smooth) * f / factor + smooth * f
        default:
            throw ModelConfigError("rope_scaling type \"\(type)\" is not supported (default, linear, llama3)")
        }
    }
}

/// A configuration the engine cannot run, found while deriving values from it.
public struct ModelConfigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
