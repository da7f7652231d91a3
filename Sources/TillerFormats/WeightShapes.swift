import TillerTensor

extension ModelConfig {
    /// The shape (PyTorch order) a transformers parameter must have under this configuration;
    /// nil for names it does not constrain.
    public func expectedShape(of name: String) -> [Int]? {
        let q = numAttentionHeads * headDim
        let kv = numKeyValueHeads * headDim
        if name == "model.embed_tokens.weight" || name == "lm_head.weight" { return [vocabSize, hiddenSize] }
        if name == "model.norm.weight" { return [hiddenSize] }
        let prefix = "model.layers."
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), Int(rest[..<dot]) != nil else { return nil }
        switch String(rest[rest.index(after: dot)...]) {
        case "self_attn.q_proj.weight": return [q, hiddenSize]
        case "self_attn.k_proj.weight", "self_attn.v_proj.weight": return [kv, hiddenSize]
        case "self_attn.o_proj.weight": return [hiddenSize, q]
        case "self_attn.q_proj.bias": return [q]
        case "self_attn.k_proj.bias", "self_attn.v_proj.bias": return [kv]
        case "self_attn.qkv_proj.weight": return [q + 2 * kv, hiddenSize]
        case "self_attn.q_norm.weight": return architecture.facts.qkNorm == .whole ? [q] : [headDim]
        case "self_attn.k_norm.weight": return architecture.facts.qkNorm == .whole ? [kv] : [headDim]
        case "mlp.gate_proj.weight", "mlp.up_proj.weight": return [intermediateSize, hiddenSize]
        case "mlp.gate_up_proj.weight": return [2 * intermediateSize, hiddenSize]
        case "mlp.down_proj.weight": return [hiddenSize, intermediateSize]
        case "input_layernorm.weight", "post_attention_layernorm.weight",
             "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight":
            return [hiddenSize]
        default: return nil
        }
    }

    /// Why a tensor of this name and shape cannot belong to this model, or nil if it can.
    public func shapeProblem(of name: String, shape: [Int]) -> String? {
        let prefix = "model.layers."
        if name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            if let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]), layer >= numHiddenLayers {
                return "layer \(layer) does not exist in a model of \(numHiddenLayers) layers"
            }
        }
        guard let want = expectedShape(of: name), want != shape else { return nil }
        return "shape \(shape) does not match the configuration, which implies \(want)"
    }
}
