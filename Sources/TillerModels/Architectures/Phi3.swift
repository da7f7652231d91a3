import TillerFormats

// Phi-3 (transformers' modeling_phi3): Llama's block with fused projections. `qkv_proj` stacks
// the q, k and v rows ([heads + 2·kv_heads]·head_dim × hidden) and `gate_up_proj` the gate and
// up rows (2·intermediate × hidden, gate first); both are split by rows on load (a view, no
// copy). Sliding-window attention on every layer when `sliding_window` is set (2047 for
// Phi-3-mini-4k); llama.cpp ignores the window for phi3 GGUFs, and so do we there. LongRoPE
// (the 128k models) and partial rotary factors are refused by the loaders.
enum Phi3: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        try TransformerOptions(facts: Architecture.phi3.facts, config: c)
    }
}
