import TillerTensor

// The one model configuration every loader produces (HF config.json and GGUF `<arch>.*` keys)
// and every architecture reads. Field names follow transformers' config keys.

/// The supported architectures; what each one is lives in its row of `ArchitectureFacts`.
public enum Architecture: String, Sendable, Codable, CaseIterable {
    case llama      // Llama 2/3/3.1, SmolLM2 (and Mistral GGUFs, which llama.cpp writes as llama)
    case qwen2
    case gemma2
    case gemma3     // text model (Gemma3ForCausalLM or the text part of Gemma3ForConditionalGeneration)
    case qwen3
    case mistral
    case phi3
    case olmo2
}

public struct RopeScaling: Sendable, Codable, Equatable {
    /// "default", "linear", "llama3"
    public var type: String
    public var factor: Double
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositionEmbeddings: Int?

    public init(type: String, factor: Double, lowFreqFactor: Double? = nil, highFreqFactor: Double? = nil,
                originalMaxPositionEmbeddings: Int? = nil) {
        self.type = type
        self.factor = factor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }
}

public struct ModelConfig: Sendable, Codable, Equatable {
    public var architecture: Architecture
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    /// Gemma 3: applies to the full-attention layers only; sliding layers use plain RoPE with
    /// `ropeLocalBaseFreq` (transformers' `rope_parameters["sliding_attention"]`).
    public var ropeScaling: RopeScaling?
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool              // q/k/v biases (always for Qwen2)
    public var hiddenActivation: String         // one of supportedActivations
    /// Gate activations the transformer runs (transformers' ACT2FN names).
    public static let supportedActivations = ["silu", "swish", "gelu_pytorch_tanh", "gelu_new", "gelu"]

    // Gemma 2 / 3
    public var queryPreAttnScalar: Double?
    public var attnLogitSoftcapping: Double?
    public var finalLogitSoftcapping: Double?
    public var slidingWindow: Int?
    /// Per layer: "sliding_attention" or "full_attention". Empty means all full.
    public var layerTypes: [String]
    /// Gemma 3: RoPE base of the sliding (local) layers.
    public var ropeLocalBaseFreq: Double?

    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var padTokenId: Int?

    public init(architecture: Architecture, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
                numAttentionHeads: Int, numKeyValueHeads: Int, headDim: Int, vocabSize: Int,
                rmsNormEps: Double, ropeTheta: Double, ropeScaling: RopeScaling? = nil,
                maxPositionEmbeddings: Int = 8192, tieWordEmbeddings: Bool = true, attentionBias: Bool = false,
                hiddenActivation: String = "silu", queryPreAttnScalar: Double? = nil,
                attnLogitSoftcapping: Double? = nil, finalLogitSoftcapping: Double? = nil,
                slidingWindow: Int? = nil, layerTypes: [String] = [], ropeLocalBaseFreq: Double? = nil,
                bosTokenId: Int? = nil, eosTokenIds: [Int] = [], padTokenId: Int? = nil) {
        self.architecture = architecture
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads
        self.headDim = headDim
        self.vocabSize = vocabSize
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias
        self.hiddenActivation = hiddenActivation
        self.queryPreAttnScalar = queryPreAttnScalar
        self.attnLogitSoftcapping = attnLogitSoftcapping
        self.finalLogitSoftcapping = finalLogitSoftcapping
        self.slidingWindow = slidingWindow
        self.layerTypes = layerTypes
        self.ropeLocalBaseFreq = ropeLocalBaseFreq
        self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds
        self.padTokenId = padTokenId
    }

    public func isSliding(layer: Int) -> Bool {
        layer < layerTypes.count && layerTypes[layer] == "sliding_attention"
    }
}

/// Where a model's tensors come from, under transformers' parameter names
/// (`model.layers.0.self_attn.q_proj.weight`, `model.embed_tokens.weight`, `lm_head.weight`, …),
/// with loader quirks already undone (GGUF's Q/K permutation for Llama, GGUF's +1 on Gemma norms).
public protocol WeightSource: AnyObject, Sendable {
    var config: ModelConfig { get }
    var names: [String] { get }
    /// The tensor with this transformers name, or nil when the checkpoint lacks it (e.g. a tied lm_head).
    func tensor(_ name: String) throws -> RawTensor?
}
