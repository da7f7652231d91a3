import Foundation
import TillerTensor

// Hugging Face config.json → ModelConfig, for the model types in `ArchitectureFacts.all`.
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
        if let inner = ArchitectureFacts.textModelType(ofWrapper: outerType) {
            outer = json
            json = try json.object("text_config") ?? JSONObject(values: [:], path: path, context: "text_config.")
            modelType = try json.string("model_type") ?? inner
        }
        guard let facts = ArchitectureFacts.forModelType(modelType) else {
            throw FileError(path: path, "model_type \"\(modelType)\" is not supported (supported: \(ArchitectureFacts.supportedModelTypes.joined(separator: ", ")))")
        }
        let d = facts.hf
        let arch = facts.architecture

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
        // Each MLP reads its own key: Gemma 2/3 `hidden_activation` (a legacy `hidden_act` is
        // ignored), the others `hidden_act`.
        let activation = try json.string(facts.activationKey) ?? d.activation
        guard ModelConfig.supportedActivations.contains(activation) else {
            throw FileError(path: path, "\(json.context)hidden_act \"\(activation)\" is not supported (\(ModelConfig.supportedActivations.joined(separator: ", ")))")
        }
        guard eps > 0 else { throw FileError(path: path, "\(json.context)rms_norm_eps must be positive") }

        // RoPE: v5 `rope_parameters` (flat, or per layer type where the architecture has a local
        // base), else v4 keys.
        var theta = d.theta
        var localTheta: Double? = facts.localRopeBase
        var scaling: RopeScaling?
        let ropeParams = try json.object("rope_parameters")
        if let params = ropeParams {
            if localTheta != nil, params.has("full_attention") || params.has("sliding_attention") {
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
        if localTheta != nil, let local = try json.double("rope_local_base_freq") { localTheta = local }
        guard theta > 0, localTheta.map({ $0 > 0 }) ?? true else {
            throw FileError(path: path, "\(json.context)rope_theta must be positive")
        }
        // Partial rotary embeddings (Phi-4-mini's 0.75) rotate only part of each head.
        if let partial = try ropeParams?.double("partial_rotary_factor") ?? json.double("partial_rotary_factor"), partial != 1 {
            throw FileError(path: path, "\(json.context)partial_rotary_factor \(partial) is not supported (only 1.0)")
        }

        var layerTypes = try json.strings("layer_types") ?? []
        var slidingWindow: Int?
        var attnCap: Double?
        var finalCap: Double?
        let attentionBias = try facts.alwaysQKVBias || (json.bool("attention_bias") ?? false)
        let queryScalar = try facts.queryPreAttnScalar.map { try json.double("query_pre_attn_scalar") ?? $0 }
        // An explicit null turns a cap off; a missing key means transformers' default.
        if let caps = facts.softcapDefaults {
            attnCap = try json.present("attn_logit_softcapping") ? json.double("attn_logit_softcapping") : caps.attention
            finalCap = try json.present("final_logit_softcapping") ? json.double("final_logit_softcapping") : caps.final
        }
        // A missing sliding_window takes the class default; Mistral and Phi-3 read an explicit
        // null as no window, the others as the default.
        func window(nullMeansNone: Bool = false) throws -> Int? {
            if nullMeansNone, json.present("sliding_window") { return try json.int("sliding_window") }
            return try json.int("sliding_window") ?? d.slidingWindow
        }
        switch facts.sliding {
        case .none:
            break
        case .fromMaxWindowLayers:
            if try json.bool("use_sliding_window") ?? false {
                slidingWindow = try window()
                let maxWindowLayers = try json.int("max_window_layers") ?? 28
                if layerTypes.isEmpty {
                    layerTypes = (0..<layers).map { $0 >= maxWindowLayers ? "sliding_attention" : "full_attention" }
                }
            } else {
                layerTypes = [] // transformers ignores sliding_window unless use_sliding_window
            }
        case .everyLayer:
            slidingWindow = try window(nullMeansNone: true)
            if slidingWindow != nil, layerTypes.isEmpty {
                layerTypes = Array(repeating: "sliding_attention", count: layers)
            }
        case .periodic(let period, let configurable):
            slidingWindow = try window()
            if layerTypes.isEmpty {
                var pattern = period
                if configurable {
                    pattern = try json.int("sliding_window_pattern") ?? json.int("_sliding_window_pattern") ?? period
                    guard pattern > 0 else { throw FileError(path: path, "\(json.context)sliding_window_pattern must be positive") }
                }
                layerTypes = SlidingRule.periodicLayerTypes(layers: layers, period: pattern)
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
