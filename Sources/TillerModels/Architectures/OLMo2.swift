import TillerFormats

// OLMo-2 (transformers' modeling_olmo2): post-norm blocks. No norm before attention or the MLP;
//   h = x + post_attention_layernorm(attn(x)),  out = h + post_feedforward_layernorm(mlp(h)),
// RMSNorm w·x̂ everywhere. q_norm / k_norm are RMSNorms over the whole q (heads·head_dim) and k
// (kv_heads·head_dim) projections, not per head, applied before RoPE.
enum OLMo2: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        try TransformerOptions(facts: Architecture.olmo2.facts, config: c)
    }
}
