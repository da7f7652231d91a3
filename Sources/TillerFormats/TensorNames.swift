import Foundation

// The tensors of a decoder checkpoint, named once. The loader (TillerModels' Transformer), the
// shape check (ModelConfig.expectedShape) and the GGUF mapping (GGUFNames) all read this table:
// an architecture whose checkpoint spells a tensor differently adds a row here, with the facts
// under which that spelling holds.

/// What a tensor is in the decoder, whatever a file calls it.
public enum ModelTensor: Sendable, Hashable, CaseIterable {
    case embed, lmHead, finalNorm
    /// The norm before attention (absent in post-norm blocks).
    case inputNorm
    case q, k, v, o
    /// Phi-3's stacked q, k and v rows.
    case qkv
    case qBias, kBias, vBias, oBias
    case qNorm, kNorm
    /// Gemma's and OLMo-2's norm on the attention output, before its residual add.
    case postAttentionNorm
    /// The norm before the MLP (transformers' post_attention_layernorm in Llama-style blocks).
    case preFFNorm
    case postFFNorm
    case gate, up, down
    /// Phi-3's stacked gate and up rows.
    case gateUp

    /// Whether the tensor is per layer (`model.layers.L.…`, `blk.L.…`).
    public var isPerLayer: Bool { ![.embed, .lmHead, .finalNorm].contains(self) }

    /// The shape (PyTorch order) this tensor has under `c`.
    public func shape(_ c: ModelConfig) -> [Int] {
        let (h, q, kv, i) = (c.hiddenSize, c.numAttentionHeads * c.headDim, c.numKeyValueHeads * c.headDim, c.intermediateSize)
        let whole = c.architecture.facts.qkNorm == .whole
        switch self {
        case .embed, .lmHead: return [c.vocabSize, h]
        case .finalNorm, .inputNorm, .postAttentionNorm, .preFFNorm, .postFFNorm, .oBias: return [h]
        case .q: return [q, h]
        case .k, .v: return [kv, h]
        case .o: return [h, q]
        case .qkv: return [q + 2 * kv, h]
        case .qBias: return [q]
        case .kBias, .vBias: return [kv]
        case .qNorm: return whole ? [q] : [c.headDim]
        case .kNorm: return whole ? [kv] : [c.headDim]
        case .gate, .up: return [i, h]
        case .gateUp: return [2 * i, h]
        case .down: return [h, i]
        }
    }
}

/// One spelling of a tensor: transformers' name and GGUF's (per-layer tensors: the part after
/// `model.layers.L.` and `blk.L.`), for the architectures whose facts satisfy `holds`.
public struct TensorName: Sendable {
    public let tensor: ModelTensor
    public let transformers: String
    public let gguf: String
    let holds: @Sendable (ArchitectureFacts) -> Bool

    init(_ tensor: ModelTensor, _ transformers: String, _ gguf: String,
         holds: @escaping @Sendable (ArchitectureFacts) -> Bool = { _ in true }) {
        self.tensor = tensor
        self.transformers = transformers
        self.gguf = gguf
        self.holds = holds
    }

    /// Every tensor's spellings; under any one architecture each tensor has at most one, and no
    /// two tensors share a name (llama.cpp's gguf-py tensor_mapping.py, the subset these architectures use).
    public static let table: [TensorName] = [
        TensorName(.embed, "model.embed_tokens.weight", "token_embd.weight"),
        TensorName(.lmHead, "lm_head.weight", "output.weight"),
        TensorName(.finalNorm, "model.norm.weight", "output_norm.weight"),
        TensorName(.inputNorm, "input_layernorm.weight", "attn_norm.weight", holds: { $0.blockNorms != .post }),
        TensorName(.q, "self_attn.q_proj.weight", "attn_q.weight"),
        TensorName(.k, "self_attn.k_proj.weight", "attn_k.weight"),
        TensorName(.v, "self_attn.v_proj.weight", "attn_v.weight"),
        TensorName(.qkv, "self_attn.qkv_proj.weight", "attn_qkv.weight"),
        TensorName(.o, "self_attn.o_proj.weight", "attn_output.weight"),
        TensorName(.qBias, "self_attn.q_proj.bias", "attn_q.bias"),
        TensorName(.kBias, "self_attn.k_proj.bias", "attn_k.bias"),
        TensorName(.vBias, "self_attn.v_proj.bias", "attn_v.bias"),
        TensorName(.oBias, "self_attn.o_proj.bias", "attn_output.bias"),
        TensorName(.qNorm, "self_attn.q_norm.weight", "attn_q_norm.weight"),
        TensorName(.kNorm, "self_attn.k_norm.weight", "attn_k_norm.weight"),
        TensorName(.postAttentionNorm, "post_attention_layernorm.weight", "post_attention_norm.weight", holds: { $0.blockNorms != .pre }),
        // llama.cpp calls the norm before the MLP `ffn_norm` in both families; transformers calls
        // it post_attention_layernorm in Llama-style blocks and pre_feedforward_layernorm in
        // Gemma's sandwich, where post_attention_layernorm is the extra norm after attention.
        TensorName(.preFFNorm, "post_attention_layernorm.weight", "ffn_norm.weight", holds: { $0.blockNorms == .pre }),
        TensorName(.preFFNorm, "pre_feedforward_layernorm.weight", "ffn_norm.weight", holds: { $0.blockNorms == .sandwich }),
        TensorName(.postFFNorm, "post_feedforward_layernorm.weight", "post_ffw_norm.weight", holds: { $0.blockNorms != .pre }),
        TensorName(.gate, "mlp.gate_proj.weight", "ffn_gate.weight"),
        // Phi-3's fused gate/up projection is llama.cpp's ffn_up.
        TensorName(.up, "mlp.up_proj.weight", "ffn_up.weight", holds: { !$0.fusedProjections }),
        TensorName(.gateUp, "mlp.gate_up_proj.weight", "ffn_up.weight", holds: { $0.fusedProjections }),
        TensorName(.down, "mlp.down_proj.weight", "ffn_down.weight"),
    ]

    /// The spellings that hold for an architecture.
    public static func spellings(_ architecture: Architecture) -> [TensorName] {
        let f = architecture.facts
        return table.filter { $0.holds(f) }
    }

    /// transformers' full name of `tensor` in `architecture` (`layer` for per-layer tensors).
    public static func transformers(_ tensor: ModelTensor, layer: Int? = nil, architecture: Architecture) -> String {
        guard let n = spellings(architecture).first(where: { $0.tensor == tensor }) else {
            preconditionFailure("no name for \(tensor) in \(architecture.rawValue)")
        }
        return tensor.isPerLayer ? "model.layers.\(layer!).\(n.transformers)" : n.transformers
    }

    /// The tensor a transformers name denotes in `architecture`, with its layer (nil for global tensors).
    public static func parse(transformers name: String, architecture: Architecture) -> (tensor: ModelTensor, layer: Int?)? {
        let names = spellings(architecture)
        if let g = names.first(where: { !$0.tensor.isPerLayer && $0.transformers == name }) { return (g.tensor, nil) }
        let prefix = "model.layers."
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]) else { return nil }
        let tail = rest[rest.index(after: dot)...]
        guard let n = names.first(where: { $0.tensor.isPerLayer && $0.transformers == tail }) else { return nil }
        return (n.tensor, layer)
    }
}
