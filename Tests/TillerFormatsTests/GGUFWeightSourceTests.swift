import Foundation
import XCTest
import TillerTensor
@testable import TillerFormats

final class GGUFWeightSourceTests: XCTestCase {
    func testSmolLM2ConfigMatchesTransformers() throws {
        let source = try GGUFWeightSource(path: cachedModel("SmolLM2-135M-Instruct.Q4_1.gguf"))
        let c = source.config
        XCTAssertEqual(c.architecture, .llama)
        XCTAssertEqual(c.numHiddenLayers, 30)
        XCTAssertEqual(c.hiddenSize, 576)
        XCTAssertEqual(c.intermediateSize, 1536)
        XCTAssertEqual(c.numAttentionHeads, 9)
        XCTAssertEqual(c.numKeyValueHeads, 3)
        XCTAssertEqual(c.headDim, 64)
        XCTAssertEqual(c.vocabSize, 49152)
        XCTAssertEqual(c.ropeTheta, 100_000)
        XCTAssertNil(c.ropeScaling)
        XCTAssertEqual(c.rmsNormEps, 1e-5, accuracy: 1e-12)
        XCTAssertEqual(c.maxPositionEmbeddings, 8192)
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertFalse(c.attentionBias)
        XCTAssertEqual(c.hiddenActivation, "silu")
        XCTAssertEqual(c.bosTokenId, 1)
        XCTAssertEqual(c.eosTokenIds, [2])
        XCTAssertEqual(c.padTokenId, 2)
        XCTAssertEqual(c.layerTypes, [])

        let ref = try Fixtures.json("gguf_reference.json")["smollm2"] as! [String: Any]
        let rc = ref["config"] as! [String: Any]
        XCTAssertEqual(c.rmsNormEps, rc["rms_norm_eps"] as! Double)
        XCTAssertEqual(c.vocabSize, rc["vocab_size"] as! Int)
        XCTAssertEqual(c.headDim, rc["head_dim"] as! Int)

        XCTAssertEqual(source.names.count, 272)
        XCTAssertNil(try source.tensor("lm_head.weight"))
        XCTAssertEqual(source.unmappedTensorNames, [])
        let embed = try XCTUnwrap(source.tensor("model.embed_tokens.weight"))
        XCTAssertEqual(embed.shape, [49152, 576])
        XCTAssertEqual(embed.type, .q8_0)
        let down = try XCTUnwrap(source.tensor("model.layers.3.mlp.down_proj.weight"))
        XCTAssertEqual(down.shape, [576, 1536])
        XCTAssertNotNil(try source.tensor("model.layers.29.post_attention_layernorm.weight"))
    }

    /// The un-permuted Q/K rows are the rows transformers' GGUF loader produces.
    func testSmolLM2QKRowsMatchTransformers() throws {
        let source = try GGUFWeightSource(path: cachedModel("SmolLM2-135M-Instruct.Q4_1.gguf"))
        let ref = try Fixtures.json("gguf_reference.json")["smollm2"] as! [String: Any]
        let rows = ref["rows"] as! [String: [String: [Double]]]
        XCTAssertEqual(rows.count, 4)
        for (name, picks) in rows {
            let t = try XCTUnwrap(source.tensor(name), name)
            XCTAssertEqual(t.type, .q4_1)
            for (rowText, expected) in picks {
                let row = Int(rowText)!
                assertClose(dequantizeQ4_1Row(t, row: row), expected, "\(name) row \(row)")
            }
        }
        // Without the un-permutation, row 1 of layer 0's q_proj would be GGUF's row 1, which is
        // transformers' row 32: make sure the fixture tells them apart.
        let q = try source.gguf.tensor("blk.0.attn_q.weight")
        let stored = dequantizeQ4_1Row(q, row: 1)
        let expected1 = rows["model.layers.0.self_attn.q_proj.weight"]!["1"]!
        let expected32 = rows["model.layers.0.self_attn.q_proj.weight"]!["32"]!
        XCTAssertGreaterThan(zip(stored, expected1).map { abs(Double($0) - $1) }.max()!, 1e-3)
        XCTAssertEqual(zip(stored, expected32).map { abs(Double($0) - $1) }.max()!, 0, accuracy: 1e-6)

        let vectors = ref["vectors"] as! [String: [Double]]
        for (name, expected) in vectors {
            assertClose(floats(try XCTUnwrap(source.tensor(name))), expected, name)
        }
    }

    func testGemma3ConfigMatchesTransformers() throws {
        let source = try GGUFWeightSource(path: cachedModel("gemma-3-270m-q4_k_m.gguf"))
        let c = source.config
        XCTAssertEqual(c.architecture, .gemma3)
        XCTAssertEqual(c.numHiddenLayers, 18)
        XCTAssertEqual(c.hiddenSize, 640)
        XCTAssertEqual(c.intermediateSize, 2048)
        XCTAssertEqual(c.numAttentionHeads, 4)
        XCTAssertEqual(c.numKeyValueHeads, 1)
        XCTAssertEqual(c.headDim, 256)
        XCTAssertEqual(c.vocabSize, 262144)
        XCTAssertEqual(c.slidingWindow, 512)
        XCTAssertEqual(c.ropeTheta, 1_000_000)
        XCTAssertEqual(c.ropeLocalBaseFreq, 10_000)
        XCTAssertEqual(c.queryPreAttnScalar, 256)
        XCTAssertNil(c.attnLogitSoftcapping)
        XCTAssertNil(c.finalLogitSoftcapping)
        XCTAssertEqual(c.hiddenActivation, "gelu_pytorch_tanh")
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertEqual(c.maxPositionEmbeddings, 32768)
        XCTAssertEqual(c.bosTokenId, 2)
        XCTAssertEqual(c.eosTokenIds, [1, 106]) // <eos>, <end_of_turn> as in generation_config.json
        XCTAssertEqual(c.padTokenId, 0)

        let rc = (try Fixtures.json("gguf_reference.json")["gemma3"] as! [String: Any])["config"] as! [String: Any]
        XCTAssertEqual(c.layerTypes, rc["layer_types"] as! [String])
        XCTAssertEqual(c.queryPreAttnScalar, rc["query_pre_attn_scalar"] as? Double)
        XCTAssertEqual(c.slidingWindow, rc["sliding_window"] as? Int)
        XCTAssertEqual(c.rmsNormEps, rc["rms_norm_eps"] as! Double)
        let rope = rc["rope_parameters"] as! [String: [String: Any]]
        XCTAssertEqual(c.ropeTheta, rope["full_attention"]!["rope_theta"] as! Double)
        XCTAssertEqual(c.ropeLocalBaseFreq, rope["sliding_attention"]!["rope_theta"] as? Double)
        XCTAssertTrue(c.isSliding(layer: 0))
        XCTAssertFalse(c.isSliding(layer: 5))

        XCTAssertEqual(source.names.count, 236)
        XCTAssertEqual(try source.tensor("model.layers.0.self_attn.q_proj.weight")?.shape, [1024, 640])
        XCTAssertEqual(try source.tensor("model.layers.0.self_attn.o_proj.weight")?.shape, [640, 1024])
        XCTAssertEqual(source.ggufName(for: "model.layers.4.pre_feedforward_layernorm.weight"), "blk.4.ffn_norm.weight")
        XCTAssertEqual(source.ggufName(for: "model.layers.4.post_attention_layernorm.weight"), "blk.4.post_attention_norm.weight")
    }

    /// Every Gemma norm (q/k norms included) comes back without convert_hf_to_gguf's +1.
    func testGemma3NormsMatchTransformers() throws {
        let source = try GGUFWeightSource(path: cachedModel("gemma-3-270m-q4_k_m.gguf"))
        let vectors = (try Fixtures.json("gguf_reference.json")["gemma3"] as! [String: Any])["vectors"] as! [String: [Double]]
        XCTAssertEqual(vectors.count, 7)
        for (name, expected) in vectors {
            let t = try XCTUnwrap(source.tensor(name), name)
            XCTAssertEqual(t.type, .f32)
            let got = floats(t)
            assertClose(got, expected, name)
            let raw = floats(try source.gguf.tensor(source.ggufName(for: name)!))
            XCTAssertEqual(Double(raw[0]) - 1, Double(got[0]), accuracy: 1e-6)
        }
    }

    func testNameMapping() {
        XCTAssertEqual(GGUFNames.transformersName("blk.12.ffn_norm.weight", architecture: .llama),
                       "model.layers.12.post_attention_layernorm.weight")
        XCTAssertEqual(GGUFNames.transformersName("blk.12.ffn_norm.weight", architecture: .gemma2),
                       "model.layers.12.pre_feedforward_layernorm.weight")
        XCTAssertEqual(GGUFNames.transformersName("blk.0.attn_q.bias", architecture: .qwen2),
                       "model.layers.0.self_attn.q_proj.bias")
        XCTAssertEqual(GGUFNames.transformersName("output.weight", architecture: .qwen2), "lm_head.weight")
        XCTAssertNil(GGUFNames.transformersName("rope_freqs.weight", architecture: .llama))
        XCTAssertNil(GGUFNames.transformersName("blk.x.attn_q.weight", architecture: .llama))
        XCTAssertEqual(GGUFNames.ggufName("model.layers.3.mlp.down_proj.weight"), "blk.3.ffn_down.weight")
        XCTAssertEqual(GGUFNames.ggufName("model.norm.weight"), "output_norm.weight")
        // Phi-3's fused projections; OLMo-2's post-norms.
        XCTAssertEqual(GGUFNames.transformersName("blk.1.attn_qkv.weight", architecture: .phi3), "model.layers.1.self_attn.qkv_proj.weight")
        XCTAssertEqual(GGUFNames.transformersName("blk.1.ffn_up.weight", architecture: .phi3), "model.layers.1.mlp.gate_up_proj.weight")
        XCTAssertEqual(GGUFNames.transformersName("blk.1.ffn_up.weight", architecture: .qwen3), "model.layers.1.mlp.up_proj.weight")
        XCTAssertEqual(GGUFNames.transformersName("blk.1.post_attention_norm.weight", architecture: .olmo2),
                       "model.layers.1.post_attention_layernorm.weight")
        XCTAssertEqual(GGUFNames.ggufName("model.layers.2.mlp.gate_up_proj.weight"), "blk.2.ffn_up.weight")
        XCTAssertEqual(GGUFNames.ggufName("model.layers.2.self_attn.qkv_proj.weight"), "blk.2.attn_qkv.weight")
    }

    /// One table entry per architecture, with distinct model_type and GGUF names.
    func testArchitectureFactsCoverEveryArchitecture() {
        XCTAssertEqual(ArchitectureFacts.all.map(\.architecture), Architecture.allCases)
        for a in Architecture.allCases { XCTAssertEqual(a.facts.architecture, a) }
        let types = ArchitectureFacts.all.flatMap { $0.modelTypes + $0.wrapperModelTypes }
        XCTAssertEqual(Set(types).count, types.count)
        XCTAssertEqual(Set(ArchitectureFacts.supportedGGUFNames).count, ArchitectureFacts.supportedGGUFNames.count)
        XCTAssertEqual(ArchitectureFacts.forGGUF("llama")?.architecture, .llama) // Mistral GGUFs too
        XCTAssertNil(Architecture.mistral.facts.ggufName)
        XCTAssertEqual(ArchitectureFacts.textModelType(ofWrapper: "gemma3"), "gemma3_text")
        XCTAssertEqual(SlidingRule.periodicLayerTypes(layers: 3, period: 2), ["sliding_attention", "full_attention", "sliding_attention"])
    }

    /// The one Llama 3 RoPE formula: the three wavelength bands of transformers' _compute_llama3_parameters.
    func testLlama3ScaledInverseFrequency() throws {
        let s = RopeScaling.llama3Release(factor: 8)
        let high = 2 * Double.pi / 100, low = 2 * Double.pi / 10_000, mid = 2 * Double.pi / 4096
        XCTAssertEqual(try s.scaledInverseFrequency(high), high)       // wavelength 100 < 8192/4
        XCTAssertEqual(try s.scaledInverseFrequency(low), low / 8)     // wavelength 10000 > 8192
        let smooth = (8192.0 / 4096 - 1) / 3
        XCTAssertEqual(try s.scaledInverseFrequency(mid), (1 - smooth) * mid / 8 + smooth * mid, accuracy: 1e-15)
        XCTAssertThrowsError(try RopeScaling(type: "llama3", factor: 8).scaledInverseFrequency(1.0))
        XCTAssertThrowsError(try RopeScaling(type: "yarn", factor: 8).scaledInverseFrequency(1.0)) {
            XCTAssertTrue("\($0)".contains("yarn"), "\($0)")
        }
    }
}
