import TillerFormats

// Gemma 3 text (transformers' modeling_gemma3), differences from Gemma 2: no softcaps; q_norm and
// k_norm (Gemma RMSNorm over head_dim) before RoPE; sliding layers per `layer_types` (default:
// every 6th layer global); sliding layers use RoPE base rope_local_base_freq without scaling,
// global layers rope_theta with the configured scaling (linear for the larger models).
enum Gemma3: ArchitectureRecipe {
    static func options(for c: ModelConfig) throws -> TransformerOptions {
        var o = try Gemma2.options(for: c)
        o.attentionSoftcap = nil
        o.finalSoftcap = nil
        o.qkNorm = true
        let sliding = (0..<c.numHiddenLayers).map { l in
            c.layerTypes.isEmpty ? (l + 1) % 6 != 0 : c.isSliding(layer: l)
        }
        o.sliding = sliding.map { $0 && c.slidingWindow != nil }
        let global = try ropeInverseFrequencies(base: c.ropeTheta, headDim: c.headDim, scaling: c.ropeScaling)
        let local = try ropeInverseFrequencies(base: c.ropeLocalBaseFreq ?? 10_000, headDim: c.headDim, scaling: nil)
        o.ropeInvFreq = sliding.map { $0 ? local : global }
        return o
    }
}
