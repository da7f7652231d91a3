import TillerFormats

// Llama 2/3/3.1, SmolLM2, Mistral-style: the shared recipe as is (transformers' modeling_llama).
// RMSNorm w·x̂, gated FFN with the config's hidden_act (SiLU: SwiGLU), head_dim^-0.5 attention scale, optional rope_scaling (llama3 / linear).
enum Llama: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        let inv = try ropeInverseFrequencies(base: c.ropeTheta, headDim: c.headDim, scaling: c.ropeScaling)
        return TransformerOptions(
            activation: try Activation(configName: c.hiddenActivation),
            attentionScale: 1 / Float(c.headDim).squareRoot(),
            sliding: (0..<c.numHiddenLayers).map { c.isSliding(layer: $0) && c.slidingWindow != nil },
            window: c.slidingWindow,
            ropeInvFreq: Array(repeating: inv, count: c.numHiddenLayers))
    }
}
