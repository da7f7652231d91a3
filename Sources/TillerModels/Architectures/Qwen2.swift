import TillerFormats

// Qwen2 (transformers' modeling_qwen2): Llama plus biases on the q/k/v projections, which are
// always there (the facts' alwaysQKVBias); sliding window only on layers the config marks
// (`layer_types`, from use_sliding_window/max_window_layers).
enum Qwen2: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        try TransformerOptions(facts: Architecture.qwen2.facts, config: c)
    }
}
