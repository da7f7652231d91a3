import TillerFormats

// Qwen2 (transformers' modeling_qwen2): Llama plus biases on the q/k/v projections; sliding
// window only on layers the config marks (`layer_types`, from use_sliding_window/max_window_layers).
enum Qwen2: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        var o = try Llama.options(for: c)
        o.requireQKVBias = true
        return o
    }
}
