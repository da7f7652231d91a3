import TillerFormats

// Gemma 2 (transformers' modeling_gemma2), differences from Llama:
// embeddings × √hidden (rounded to the table's dtype); RMSNorm x̂·(1+w); sandwich norms (post-attention
// and post-FFN norms before each residual add, `pre_feedforward_layernorm` before the FFN); GeGLU
// with tanh GELU; attention scale query_pre_attn_scalar^-0.5; attention logits softcapped
// 50·tanh(s/50) before the mask; final logits softcapped (30); sliding window on even layers.
// All of it is in Gemma 2's ArchitectureFacts.
enum Gemma2: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        try TransformerOptions(facts: Architecture.gemma2.facts, config: c)
    }
}
