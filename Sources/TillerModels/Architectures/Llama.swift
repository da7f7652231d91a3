import TillerFormats

// Llama 2/3/3.1, SmolLM2 (transformers' modeling_llama): the shared recipe as is. RMSNorm w·x̂
// before attention and before the MLP, gated FFN with the config's hidden_act (SiLU: SwiGLU),
// head_dim^-0.5 attention scale, optional rope_scaling (llama3 / linear).
enum Llama: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        try TransformerOptions(facts: Architecture.llama.facts, config: c)
    }
}
