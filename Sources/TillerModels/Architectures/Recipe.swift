import Foundation
import TillerFormats
import TillerTensor

// What an architecture file fills in (TransformerOptions), the facts → options mapping they all
// start from, the recipe registry, and the RoPE frequency table the recipes share.

/// How a block's norms apply their weight.
enum NormStyle {
    /// w · x̂ (Llama, Qwen, Mistral, Phi-3, OLMo-2)
    case weight
    /// x̂ · (1 + w) (Gemma)
    case onePlusWeight
}

/// Everything in which an architecture differs from the shared recipe.
struct TransformerOptions {
    var norm: NormStyle = .weight
    /// Multiply embeddings by √hidden, rounded to the embedding table's dtype (Gemma).
    var scaleEmbeddings = false
    /// Pre-norms (Llama), pre- and post-norms (Gemma's sandwich) or post-norms only (OLMo-2).
    var blockNorms: BlockNorms = .pre
    /// RMSNorm on q and k before RoPE: per head (Gemma 3, Qwen3) or over the whole projection (OLMo-2).
    var qkNorm: QKNorm = .none
    /// q/k/v projection biases are required (Qwen2) rather than optional.
    var requireQKVBias = false
    /// One qkv_proj and one gate_up_proj tensor, split by rows on load (Phi-3).
    var fusedProjections = false
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

    var preNorms: Bool { blockNorms != .post }
    var postNorms: Bool { blockNorms != .pre }
}

extension TransformerOptions {
    /// The options an architecture's table of facts (ArchitectureFacts) implies for a config:
    /// norm style and placement, q/k norm, biases, fused projections, attention scale, softcaps,
    /// which layers slide and, with a local RoPE base, the sliding layers' RoPE table.
    init(facts f: ArchitectureFacts, config c: ModelConfig) throws {
        let global = try ropeInverseFrequencies(base: c.ropeTheta, headDim: c.headDim, scaling: c.ropeScaling)
        let slidingTypes = f.slidingLayers(c)
        var rope = Array(repeating: global, count: c.numHiddenLayers)
        if let localBase = f.localRopeBase {
            // Sliding layers: plain RoPE with the local base; global layers keep the configured scaling.
            let local = try ropeInverseFrequencies(base: c.ropeLocalBaseFreq ?? localBase, headDim: c.headDim, scaling: nil)
            rope = slidingTypes.map { $0 ? local : global }
        }
        let scalar = f.queryPreAttnScalar != nil ? (c.queryPreAttnScalar ?? Double(c.headDim)) : Double(c.headDim)
        self.init(
            norm: f.normAddsOne ? .onePlusWeight : .weight, scaleEmbeddings: f.scaleEmbeddings,
            blockNorms: f.blockNorms, qkNorm: f.qkNorm, requireQKVBias: f.alwaysQKVBias,
            fusedProjections: f.fusedProjections,
            activation: try Activation(configName: c.hiddenActivation),
            attentionScale: 1 / Float(scalar).squareRoot(),
            attentionSoftcap: f.supportsSoftcaps ? c.attnLogitSoftcapping.map(Float.init) : nil,
            finalSoftcap: f.supportsSoftcaps ? c.finalLogitSoftcapping.map(Float.init) : nil,
            sliding: slidingTypes.map { $0 && c.slidingWindow != nil }, window: c.slidingWindow,
            ropeInvFreq: rope,
            preFFNormName: f.blockNorms == .sandwich ? "pre_feedforward_layernorm" : "post_attention_layernorm")
    }
}

/// An architecture file: its options for a given config.
protocol ArchitectureRecipe {
    static func options(for config: ModelConfig) throws -> TransformerOptions
}

/// Architecture → recipe.
let architectureRegistry: [Architecture: ArchitectureRecipe.Type] = [
    .llama: Llama.self,
    .qwen2: Qwen2.self,
    .gemma2: Gemma2.self,
    .gemma3: Gemma3.self,
    .qwen3: Qwen3.self,
    .mistral: Mistral.self,
    .phi3: Phi3.self,
    .olmo2: OLMo2.self,
]

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
