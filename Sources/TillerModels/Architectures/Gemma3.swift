import TillerFormats

// Gemma 3 text (transformers' modeling_gemma3), differences from Gemma 2: no softcaps by default;
// q_norm and k_norm (Gemma RMSNorm over head_dim) before RoPE; sliding layers per `layer_types`
// (default: every 6th layer global); sliding layers use RoPE base rope_local_base_freq without
// scaling, global layers rope_theta with the configured scaling (linear for the larger models).
enum Gemma3: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        try TransformerOptions(facts: Architecture.gemma3.facts, config: c)
    }
}
