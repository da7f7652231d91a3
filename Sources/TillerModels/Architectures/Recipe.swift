import Foundation
import TillerFormats
import TillerTensor

// What an architecture file fills in (TransformerOptions), the model_type → recipe registry, and
// the RoPE frequency table the recipes share.

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
