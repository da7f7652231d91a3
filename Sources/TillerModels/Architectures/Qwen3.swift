import TillerFormats

// Qwen3 (transformers' modeling_qwen3): Qwen2 without the forced q/k/v biases (only with
// `attention_bias`), plus RMSNorm w·x̂ over each head's head_dim on q and k after the projection
// and before RoPE (q_norm / k_norm). head_dim is explicit (128 by default, ≠ hidden/heads in the
// small models); sliding window only with use_sliding_window, as in Qwen2.
enum Qwen3: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        try TransformerOptions(facts: Architecture.qwen3.facts, config: c)
    }
}
