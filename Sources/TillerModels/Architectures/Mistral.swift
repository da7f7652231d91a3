import TillerFormats

// Mistral (transformers' modeling_mistral): Llama with sliding-window attention on every layer
// when `sliding_window` is set (Mistral 7B v0.1: 4096; v0.2 and later: null). llama.cpp converts
// Mistral checkpoints to the `llama` GGUF architecture, which has no window, so a Mistral GGUF
// loads with the Llama recipe.
enum Mistral: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        try TransformerOptions(facts: Architecture.mistral.facts, config: c)
    }
}
