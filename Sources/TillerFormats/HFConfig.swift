import Foundation
import TillerTensor

// Hugging Face config.json → ModelConfig, for the model types in `HFConfigRegistry`.
// Both transformers layouts are read: v4 (`rope_theta`, `rope_scaling`, Gemma 3's
// `rope_local_base_freq` / `sliding_window_pattern`) and v5 (`rope_parameters`, per layer type for
// Gemma 3). Keys a config leaves out take the defaults of transformers' config classes, because
// real checkpoints rely on them (gemma-3-4b's text_config names only a handful of fields).

/// Typed, path-naming access to a JSON object.
struct JSONObject {
    let values: [String: Any]
    let path: String
    let context: String // "" or "text_config."

    /// The key is there, possibly as an explicit null.
    func present(_ key: String) -> Bool { values[key] != nil }

    func has(_ key: String) -> Bool {
        guard let v = values[key] else { return false }
        return !(v is NSNull)
    }

    private func fail(_ key: String, _ what: String) -> FileError {
        FileError(path: path, "\(context)\(key): \(what)")
    }

    func int(_ key: String) throws -> Int? {
        guard has(key) else { return nil }
        let v = values[key]!
        if let i = v as? Int { return i }
        if let d = v as? Double, d.rounded() == d, abs(d) < 9e15 { return Int(d) }
        throw fail(key, "expected an integer, found \(v)")
    }
    func int(_ key: String, default value: Int) throws -> Int { try int(key) ?? value }

    func double(_ key: String) throws -> Double? {
        guard has(key) else { return nil }
        let v = values[key]!
        if let d = v as? Double, d.isFinite { return d }
        if let i = v as? Int { return Double(i) }
        throw fail(key, "expected a number, found \(v)")
    }

    func string(_ key: String) throws -> String? {
        guard has(key) else { return nil }
        guard let s = values[key] as? String else { throw fail(key, "expected a string, found \(values[key]!)") }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard has(key) else { return nil }
        if let b = values[key] as? Bool { return b }
        throw fail(key, "expected true or false, found \(values[key]!)")
    }

    func object(_ key: String) throws -> JSONObject? {
        guard has(key) else { return nil }
        guard let o = values[key] as? [String: Any] else { throw fail(key, "expected an object") }
        return JSONObject(values: o, path: path, context: context + key + ".")
    }

    func strings(_ key: String) throws -> [String]? {
        guard has(key) else { return nil }
        guard let a = values[key] as? [String] else { throw fail(key, "expected a list of strings") }
        return a
    }

    /// A token id or a list of them (`eos_token_id` takes both forms).
    func ints(_ key: String) throws -> [Int]? {
        guard has(key) else { return nil }
        if let i = try? int(key) { return [i] }
        guard let a = values[key] as? [Any] else { throw fail(key, "expected an integer or a list of integers") }
        return try a.map {
            if let i = $0 as? Int { return i }
            throw fail(key, "expected integers, found \($0)")
        }
    }

    func positive(_ key: String, default value: Int? = nil, max: Int = 1 << 24) throws -> Int {
        guard let v = try int(key) ?? value else { throw fail(key, "missing") }
        guard v > 0, v <= max else { throw fail(key, "\(v) is out of range") }
        return v
    }
}

/// What differs between the supported model types: the architecture and transformers' defaults.
public struct HFModelType: Sendable {
    public let modelType: String
    public let architecture: Architecture
    let defaults: HFDefaults
}

struct HFDefaults: Sendable {
    var vocab: Int, hidden: Int, intermediate: Int, layers: Int, heads: Int
    var kvHeads: Int?      // nil: same as heads
    var headDim: Int?      // nil: hidden / heads
    var maxPositions: Int
    var eps: Double
    var theta: Double
    var tie: Bool
    var activation: String
    var bos: Int?, eos: [Int], pad: Int?
}

public enum HFConfigRegistry {
    public static let modelTypes: [HFModelType] = [
        HFModelType(modelType: "llama", architecture: .llama, defaults: HFDefaults(
            vocab: 32000, hidden: 4096, intermediate: 11008, layers: 32, heads: 32, kvHeads: nil, headDim: nil,
            maxPositions: 2048, eps: 1e-6, theta: 10_000, tie: false, activation: "silu", bos: 1, eos: [2], pad: nil)),
        HFModelType(modelType: "qwen2", architecture: .qwen2, defaults: HFDefaults(
            vocab: 151_936, hidden: 4096, intermediate: 22016, layers: 32, heads: 32, kvHeads: 32, headDim: nil,
            maxPositions: 32768, eps: 1e-6, theta: 10_000, tie: false, activation: "silu", bos: nil, eos: [], pad: nil)),
        HFModelType(modelType: "gemma2", architecture: .gemma2, defaults: HFDefaults(
            vocab: 256_000, hidden: 2304, intermediate: 9216, layers: 26, heads: 8, kvHeads: 4, headDim: 256,
            maxPositions: 8192, eps: 1e-6, theta: 10_000, tie: true, activation: "gelu_pytorch_tanh", bos: 2, eos: [1], pad: 0)),
        HFModelType(modelType: "gemma3_text", architecture: .gemma3, defaults: HFDefaults(
            vocab: 262_208, hidden: 2304, intermediate: 9216, layers: 26, heads: 8, kvHeads: 4, headDim: 256,
            maxPositions: 131_072, eps: 1e-6, theta: 1_000_000, tie: true, activation: "gelu_pytorch_tanh", bos: 2, eos: [1], pad: 0)),
    ]

    /// Multimodal wrappers whose `text_config` holds the language model.
    public static let wrapperTypes: [String: String] = ["gemma3": "gemma3_text"]

    public static var supportedNames: [String] { modelTypes.map(\.modelType) + wrapperTypes.keys.sorted() }

    public static func entry(_ modelType: String) -> HFModelType? {
        modelTypes.first { $0.modelType == modelType }
    }
}

extension ModelConfig {
    /// Reads a config.json (and, when it sits next to it, generation_config.json for the stop tokens).
    public init(hfConfigAt path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw FileError(path: path, "cannot read: \(error.localizedDescription)")
        }
        var generationEOS: [Int]?
        let generationPath = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("generation_config.json").path
        if let g = FileManager.default.contents(atPath: generationPath),
           let o = (try? JSONSerialization.jsonObject(with: g)) as? [String: Any] {
            generationEOS = try JSONObject(values: o, path: generationPath, context: "").ints("eos_token_id")
        }
        try self.init(hfConfigJSON: data, path: path, generationEOS: generationEOS)
    }

    /// Parses config.json bytes; `path` is only used in error messages.
    public init(hfConfigJSON data: Data, path: String, generationEOS: [Int]? = nil) throws {
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FileError(path: path, "not a JSON object")
        }
        var json = JSONObject(values: root, path: path, context: "")
        guard let outerType = try json.string("model_type") else {
            throw FileError(path: path, "missing model_type")
        }
        var modelType = outerType
        var outer: JSONObject?
        if let inner = HFConfigRegistry.wrapperTypes[outerType] {
            outer = json
            json = try json.object("text_config") ?? JSONObject(values: [:], path: path, context: "text_config.")
            modelType = try json.string("model_type") ?? inner
        }
        guard let entry = HFConfigRegistry.entry(modelType) else {
            throw FileError(path: path, "model_type \"\(modelType)\" is not supported (supported: \(HFConfigRegistry.supportedNames.joined(separator: ", ")))")
        }
        let d = entry.defaults
        let arch = entry.architecture

        let hidden = try json.positive("hidden_size", default: d.hidden)
        let layers = try json.positive("num_hidden_layers", default: d.layers, max: 4096)
        let heads = try json.positive("num_attention_heads", default: d.heads, max: 4096)
        let kvHeads = try json.positive("num_key_value_heads", default: d.kvHeads ?? heads, max: 4096)
        guard heads % kvHeads == 0 else {
            throw FileError(path: path, "num_attention_heads (\(heads)) is not a multiple of num_key_value_heads (\(kvHeads))")
        }
        let headDim = try json.positive("head_dim", default: d.headDim ?? hidden / heads)
        let intermediate = try json.positive("intermediate_size", default: d.intermediate)
        let vocab = try json.positive("vocab_size", default: d.vocab, max: 1 << 22)
        let eps = try json.double("rms_norm_eps") ?? d.eps
        let maxPositions = try json.positive("max_position_embeddings", default: d.maxPositions, max: 1 << 30)
        // A wrapper's tie flag lives at the top level in v4 layouts.
        let tie = try json.bool("tie_word_embeddings") ?? outer?.bool("tie_word_embeddings") ?? d.tie
        // Gemma 2/3's MLP reads `hidden_activation` (default gelu_pytorch_tanh) and ignores
        // `hidden_act`; Llama and Qwen2 read `hidden_act`.
        let gemma = arch == .gemma2 || arch == .gemma3
        let activation = try (gemma ? json.string("hidden_activation") : json.string("hidden_act")) ?? d.activation
        guard ModelConfig.supportedActivations.contains(activation) else {
            throw FileError(path: path, "\(json.context)hidden_act \"\(activation)\" is not supported (\(ModelConfig.supportedActivations.joined(separator: ", ")))")
        }
        guard eps > 0 else { throw FileError(path: path, "\(json.context)rms_norm_eps must be positive") }

        // RoPE: v5 `rope_parameters` (flat, or per layer type for Gemma 3), else v4 keys.
        var theta = d.theta
        var localTheta: Double? = arch == .gemma3 ? 10_000 : nil
        var scaling: RopeScaling?
        if let params = try json.object("rope_parameters") {
            if arch == .gemma3, params.has("full_attention") || params.has("sliding_attention") {
                if let full = try params.object("full_attention") {
                    theta = try full.double("rope_theta") ?? theta
                    scaling = try parseRopeScaling(full)
                }
                if let local = try params.object("sliding_attention") {
                    localTheta = try local.double("rope_theta") ?? localTheta
                    if try parseRopeScaling(local) != nil {
                        throw FileError(path: path, "\(local.context)rope_type: scaled RoPE on sliding layers is not supported")
                    }
                }
            } else {
                theta = try params.double("rope_theta") ?? json.double("rope_theta") ?? theta
                scaling = try parseRopeScaling(params)
            }
        } else {
            theta = try json.double("rope_theta") ?? theta
            if let s = try json.object("rope_scaling") { scaling = try parseRopeScaling(s) }
        }
        if arch == .gemma3, let local = try json.double("rope_local_base_freq") { localTheta = local }
        guard theta > 0, localTheta.map({ $0 > 0 }) ?? true else {
            throw FileError(path: path, "\(json.context)rope_theta must be positive")
        }

        var layerTypes = try json.strings("layer_types") ?? []
        var slidingWindow: Int?
        var queryScalar: Double?
        var attnCap: Double?
        var finalCap: Double?
        var attentionBias = try json.bool("attention_bias") ?? false
        switch arch {
        case .llama:
            break
        case .qwen2:
            attentionBias = true // Qwen2Attention always has q/k/v biases
            let useSliding = try json.bool("use_sliding_window") ?? false
            if useSliding {
                slidingWindow = try json.int("sliding_window") ?? 4096
                let maxWindowLayers = try json.int("max_window_layers") ?? 28
                if layerTypes.isEmpty {
                    layerTypes = (0..<layers).map { $0 >= maxWindowLayers ? "sliding_attention" : "full_attention" }
                }
            } else {
                layerTypes = [] // transformers ignores sliding_window unless use_sliding_window
            }
        case .gemma2, .gemma3:
            slidingWindow = try json.int("sliding_window") ?? 4096
            queryScalar = try json.double("query_pre_attn_scalar") ?? 256
            if arch == .gemma2 {
                // An explicit null turns capping off; a missing key means transformers' default.
                attnCap = try json.present("attn_logit_softcapping") ? json.double("attn_logit_softcapping") : 50
                finalCap = try json.present("final_logit_softcapping") ? json.double("final_logit_softcapping") : 30
                if layerTypes.isEmpty {
                    layerTypes = (0..<layers).map { $0 % 2 == 0 ? "sliding_attention" : "full_attention" }
                }
            } else {
                attnCap = try json.double("attn_logit_softcapping")
                finalCap = try json.double("final_logit_softcapping")
                if layerTypes.isEmpty {
                    let pattern = try json.int("sliding_window_pattern") ?? json.int("_sliding_window_pattern") ?? 6
                    guard pattern > 0 else { throw FileError(path: path, "\(json.context)sliding_window_pattern must be positive") }
                    layerTypes = (0..<layers).map { ($0 + 1) % pattern != 0 ? "sliding_attention" : "full_attention" }
                }
            }
        }
        if !layerTypes.isEmpty {
            guard layerTypes.count == layers else {
                throw FileError(path: path, "\(json.context)layer_types has \(layerTypes.count) entries for \(layers) layers")
            }
            for t in layerTypes where t != "sliding_attention" && t != "full_attention" {
                throw FileError(path: path, "\(json.context)layer_types: unknown layer type \"\(t)\"")
            }
        }
        if let w = slidingWindow, w <= 0 { throw FileError(path: path, "\(json.context)sliding_window must be positive") }

        // Token ids: the text config, then the wrapper, then the class defaults; generation
        // config's stop tokens join the config's eos.
        func tokenIDs(_ key: String, default value: [Int]) throws -> [Int] {
            if json.present(key) { return try json.ints(key) ?? [] }
            if let o = outer, o.present(key) { return try o.ints(key) ?? [] }
            return value
        }
        let bos = try tokenIDs("bos_token_id", default: d.bos.map { [$0] } ?? []).first
        let pad = try tokenIDs("pad_token_id", default: d.pad.map { [$0] } ?? []).first
        var eos = try tokenIDs("eos_token_id", default: d.eos)
        for t in generationEOS ?? [] where !eos.contains(t) { eos.append(t) }

        self.init(architecture: arch, hiddenSize: hidden, intermediateSize: intermediate, numHiddenLayers: layers,
                  numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim: headDim, vocabSize: vocab,
                  rmsNormEps: eps, ropeTheta: theta, ropeScaling: scaling, maxPositionEmbeddings: maxPositions,
                  tieWordEmbeddings: tie, attentionBias: attentionBias, hiddenActivation: activation,
                  queryPreAttnScalar: queryScalar, attnLogitSoftcapping: attnCap, finalLogitSoftcapping: finalCap,
                  slidingWindow: slidingWindow, layerTypes: layerTypes, ropeLocalBaseFreq: localTheta,
                  bosTokenId: bos, eosTokenIds: eos, padTokenId: pad)
    }
}

/// A `rope_scaling` / `rope_parameters` object → RopeScaling (nil for plain RoPE).
private func parseRopeScaling(_ o: JSONObject) throws -> RopeScaling? {
    let type = try o.string("rope_type") ?? o.string("type") ?? "default"
    switch type {
    case "default":
        return nil
    case "linear":
        let factor = try o.double("factor") ?? 1
        guard factor > 0 else { throw FileError(path: o.path, "\(o.context)factor must be positive") }
        return RopeScaling(type: "linear", factor: factor)
    case "llama3":
        guard let factor = try o.double("factor"), factor > 0,
              let low = try o.double("low_freq_factor"), let high = try o.double("high_freq_factor"), high > low,
              let original = try o.int("original_max_position_embeddings"), original > 0 else {
            throw FileError(path: o.path, "\(o.context): llama3 RoPE scaling needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings")
        }
        return RopeScaling(type: "llama3", factor: factor, lowFreqFactor: low, highFreqFactor: high,
                           originalMaxPositionEmbeddings: original)
    default:
        throw FileError(path: o.path, "\(o.context)rope_type \"\(type)\" is not supported (default, linear, llama3)")
    }
}
