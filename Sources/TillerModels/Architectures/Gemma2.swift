import TillerFormats

// Gemma 2 (transformers' modeling_gemma2), differences from Llama:
// embeddings × √hidden (rounded to the table's dtype); RMSNorm x̂·(1+w); sandwich norms (post-attention
// and post-FFN norms before each residual add, `pre_feedforward_layernorm` before the FFN); GeGLU
// with tanh GELU; attention scale query_pre_attn_scalar^-0.5; attention logits softcapped
// 50·tanh(s/50) before the mask; final logits softcapped (30); sliding window on even layers.
enum Gemma2: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        let inv = try ropeInverseFrequencies(base: c.ropeTheta, headDim: c.headDim, scaling: c.ropeScaling)
        // transformers' default layer_types: "sliding_attention" if (i + 1) % 2 else "full_attention".
        let sliding = (0..<c.numHiddenLayers).map { l in
            c.layerTypes.isEmpty ? (l + 1) % 2 != 0 : c.isSliding(layer: l)
        }
        return TransformerOptions(
            norm: .onePlusWeight, scaleEmbeddings: true, sandwichNorms: true,
            activation: try Activation(configName: c.hiddenActivation),
            attentionScale: 1 / Float(c.queryPreAttnScalar ?? Double(c.headDim)).squareRoot(),
            attentionSoftcap: c.attnLogitSoftcapping.map(Float.init),
            finalSoftcap: c.finalLogitSoftcapping.map(Float.init),
            sliding: sliding.map { $0 && c.slidingWindow != nil }, window: c.slidingWindow,
            ropeInvFreq: Array(repeating: inv, count: c.numHiddenLayers),
            preFFNormName: "pre_feedforward_layernorm")
    }
}
