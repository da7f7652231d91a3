import Foundation
import XCTest
import TillerTensor
@testable import TillerFormats

/// A tiny model in GGUF form: F32 weights whose values encode (tensor, index), so a misplaced
/// row is visible.
struct TinyGGUF {
    var arch = "llama"
    var hidden = 16, ffn = 24, layers = 2, heads = 4, kvHeads = 2, headDim = 4, vocab = 10
    var extra: [String: GGUFValue] = [:]
    var tied = true
    var biases = false

    /// transformers-layout values of a tensor.
    static func values(_ name: String, count: Int) -> [Float] {
        let seed = Float(name.utf8.reduce(0) { ($0 &* 31 &+ Int($1)) % 1000 })
        return (0..<count).map { seed + Float($0) * 0.001 }
    }

    /// convert_hf_to_gguf's LlamaModel.permute: reshape(heads, 2, d/2, …).swapaxes(1, 2).
    static func llamaPermute(_ w: [Float], rows: Int, cols: Int, heads: Int) -> [Float] {
        let d = rows / heads
        var out = [Float](repeating: 0, count: w.count)
        for h in 0..<heads { for k in 0..<2 { for i in 0..<(d / 2) {
            let src = h * d + k * (d / 2) + i        // [h][k][i]
            let dst = h * d + i * 2 + k              // [h][i][k]
            for c in 0..<cols { out[dst * cols + c] = w[src * cols + c] }
        } } }
        return out
    }

    func writer() throws -> GGUFWriter {
        var w = GGUFWriter()
        w.set("general.architecture", .string(arch))
        w.set("\(arch).embedding_length", .uint32(UInt32(hidden)))
        w.set("\(arch).block_count", .uint32(UInt32(layers)))
        w.set("\(arch).feed_forward_length", .uint32(UInt32(ffn)))
        w.set("\(arch).attention.head_count", .uint32(UInt32(heads)))
        w.set("\(arch).attention.head_count_kv", .uint32(UInt32(kvHeads)))
        w.set("\(arch).attention.key_length", .uint32(UInt32(headDim)))
        w.set("\(arch).attention.layer_norm_rms_epsilon", .float32(1e-6))
        w.set("\(arch).rope.freq_base", .float32(10000))
        w.set("\(arch).context_length", .uint32(128))
        w.set("tokenizer.ggml.tokens", .array((0..<vocab).map { .string("t\($0)") }))
        w.set("tokenizer.ggml.bos_token_id", .uint32(1))
        w.set("tokenizer.ggml.eos_token_id", .uint32(2))
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) { w.set(k, v) }
        let gemma = arch.hasPrefix("gemma")
        func add(_ gguf: String, _ hf: String, _ shape: [Int]) throws {
            var v = Self.values(hf, count: shape.reduce(1, *))
            if arch == "llama", gguf.contains("attn_q.") || gguf.contains("attn_k.") {
                let h = gguf.contains("attn_q.") ? heads : kvHeads
                v = Self.llamaPermute(v, rows: shape[0], cols: shape.count > 1 ? shape[1] : 1, heads: h)
            }
            if gemma, gguf.hasSuffix("norm.weight") { v = v.map { $0 + 1 } }
            try w.addTensor(name: gguf, floats: v, shape: shape)
        }
        try add("token_embd.weight", "model.embed_tokens.weight", [vocab, hidden])
        try add("output_norm.weight", "model.norm.weight", [hidden])
        if !tied { try add("output.weight", "lm_head.weight", [vocab, hidden]) }
        let q = heads * headDim, kv = kvHeads * headDim
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            try add("blk.\(l).attn_q.weight", p + "self_attn.q_proj.weight", [q, hidden])
            try add("blk.\(l).attn_k.weight", p + "self_attn.k_proj.weight", [kv, hidden])
            try add("blk.\(l).attn_v.weight", p + "self_attn.v_proj.weight", [kv, hidden])
            try add("blk.\(l).attn_output.weight", p + "self_attn.o_proj.weight", [hidden, q])
            if biases {
                try add("blk.\(l).attn_q.bias", p + "self_attn.q_proj.bias", [q])
                try add("blk.\(l).attn_k.bias", p + "self_attn.k_proj.bias", [kv])
                try add("blk.\(l).attn_v.bias", p + "self_attn.v_proj.bias", [kv])
            }
            try add("blk.\(l).ffn_gate.weight", p + "mlp.gate_proj.weight", [ffn, hidden])
            try add("blk.\(l).ffn_up.weight", p + "mlp.up_proj.weight", [ffn, hidden])
            try add("blk.\(l).ffn_down.weight", p + "mlp.down_proj.weight", [hidden, ffn])
            try add("blk.\(l).attn_norm.weight", p + "input_layernorm.weight", [hidden])
            if gemma {
                try add("blk.\(l).ffn_norm.weight", p + "pre_feedforward_layernorm.weight", [hidden])
                try add("blk.\(l).post_attention_norm.weight", p + "post_attention_layernorm.weight", [hidden])
                try add("blk.\(l).post_ffw_norm.weight", p + "post_feedforward_layernorm.weight", [hidden])
                if arch == "gemma3" {
                    try add("blk.\(l).attn_q_norm.weight", p + "self_attn.q_norm.weight", [headDim])
                    try add("blk.\(l).attn_k_norm.weight", p + "self_attn.k_norm.weight", [headDim])
                }
            } else {
                try add("blk.\(l).ffn_norm.weight", p + "post_attention_layernorm.weight", [hidden])
            }
        }
        return w
    }

    func write(to dir: URL, name: String = "tiny.gguf") throws -> String {
        let path = dir.appendingPathComponent(name).path
        try writer().write(to: path)
        return path
    }
}

final class GGUFWriterTests: XCTestCase {
    func testMetadataRoundTripOfEveryType() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var w = GGUFWriter(alignment: 64)
        let all: [(String, GGUFValue)] = [
            ("u8", .uint8(200)), ("i8", .int8(-100)), ("u16", .uint16(60000)), ("i16", .int16(-30000)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)), ("f32", .float32(1.5)),
            ("bool", .bool(true)), ("str", .string("héllo")), ("u64", .uint64(1 << 63)), ("i64", .int64(-(1 << 62))),
            ("f64", .float64(-2.5e-300)), ("arr", .array([.int32(1), .int32(-2)])),
            ("nested", .array([.array([.string("a")]), .array([.string("b"), .string("c")])])),
            ("empty", .array([])),
        ]
        for (k, v) in all { w.set(k, v) }
        try w.addTensor(name: "direction.1", floats: [1, 2, 3], shape: [3])
        try w.addTensor(name: "q8", type: .q8_0, shape: [2, 32], data: [UInt8](repeating: 7, count: 2 * 34))
        XCTAssertThrowsError(try w.addTensor(name: "bad", type: .q8_0, shape: [2, 16], data: [UInt8](repeating: 0, count: 34)))
        XCTAssertThrowsError(try w.addTensor(name: "mixed", floats: [1], shape: [2]))
        var mixed = GGUFWriter()
        mixed.set("m", .array([.int32(1), .string("x")]))
        XCTAssertThrowsError(try mixed.serialized())
        let path = dir.appendingPathComponent("all.gguf").path
        try w.write(to: path)

        let f = try GGUFFile(path: path)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 64)
        XCTAssertEqual(f.metadataKeys, ["general.alignment"] + all.map(\.0))
        for (k, v) in all { XCTAssertEqual(f.metadata[k], v, k) }
        XCTAssertEqual(f.dataOffset % 64, 0)
        let t = try f.tensor("direction.1")
        XCTAssertEqual(floats(t), [1, 2, 3])
        let q = try f.tensor("q8")
        XCTAssertEqual(q.shape, [2, 32])
        XCTAssertEqual(f.info("q8")?.ggmlDims, [32, 2])
        XCTAssertEqual(f.info("q8")!.offset % 64, 0)
        XCTAssertEqual(Array(q.data), [UInt8](repeating: 7, count: 68))
    }

    /// Our un-permutation inverts convert_hf_to_gguf's permutation on a synthetic Llama.
    func testSyntheticLlamaUnpermutes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let tiny = TinyGGUF(tied: false)
        let source = try GGUFWeightSource(path: tiny.write(to: dir))
        XCTAssertFalse(source.config.tieWordEmbeddings)
        XCTAssertEqual(source.config.headDim, 4)
        for name in source.names {
            let t = try XCTUnwrap(source.tensor(name))
            XCTAssertEqual(floats(t), TinyGGUF.values(name, count: t.elementCount), name)
        }
        XCTAssertEqual(source.names.count, 3 + 2 * 9)
    }

    func testSyntheticGemma2AndQwen2() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var g = TinyGGUF(arch: "gemma2", layers: 4, heads: 2, kvHeads: 1, headDim: 8)
        g.extra = ["gemma2.attn_logit_softcapping": .float32(50), "gemma2.final_logit_softcapping": .float32(30),
                   "gemma2.attention.sliding_window": .uint32(4096)]
        let gemma = try GGUFWeightSource(path: g.write(to: dir, name: "g.gguf"))
        XCTAssertEqual(gemma.config.architecture, .gemma2)
        XCTAssertEqual(gemma.config.attnLogitSoftcapping, 50)
        XCTAssertEqual(gemma.config.finalLogitSoftcapping, 30)
        XCTAssertEqual(gemma.config.layerTypes, ["sliding_attention", "full_attention", "sliding_attention", "full_attention"])
        XCTAssertEqual(gemma.config.queryPreAttnScalar, 8)
        XCTAssertNil(gemma.config.ropeLocalBaseFreq)
        for name in gemma.names {
            let t = try XCTUnwrap(gemma.tensor(name))
            // Stored +1 then −1 again: equal up to float rounding.
            assertClose(floats(t), TinyGGUF.values(name, count: t.elementCount).map(Double.init), name, tolerance: 1e-6)
        }

        var q = TinyGGUF(arch: "qwen2")
        q.biases = true
        let qwen = try GGUFWeightSource(path: q.write(to: dir, name: "q.gguf"))
        XCTAssertTrue(qwen.config.attentionBias)
        XCTAssertEqual(qwen.config.hiddenActivation, "silu")
        XCTAssertEqual(floats(try XCTUnwrap(qwen.tensor("model.layers.1.self_attn.k_proj.bias"))),
                       TinyGGUF.values("model.layers.1.self_attn.k_proj.bias", count: 8))
        // Qwen2 is not permuted: the stored rows come back as they are.
        XCTAssertEqual(floats(try XCTUnwrap(qwen.tensor("model.layers.0.self_attn.q_proj.weight"))),
                       TinyGGUF.values("model.layers.0.self_attn.q_proj.weight", count: 256))
    }

    /// Llama 3.1 GGUFs carry rope_freqs.weight instead of the scaling parameters.
    func testLlama3RopeFreqs() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var tiny = TinyGGUF(headDim: 64)
        tiny.heads = 1; tiny.kvHeads = 1; tiny.hidden = 64
        var w = try tiny.writer()
        w.set("llama.rope.freq_base", .float32(500_000))
        // convert_hf_to_gguf's LlamaModel.generate_extra_tensors for factor 8, low 1, high 4, original 8192.
        let factors: [Float] = (0..<32).map { i in
            let freq = 1 / pow(500_000.0, Double(2 * i) / 64)
            let wavelen = 2 * Double.pi / freq
            if wavelen < 8192.0 / 4 { return 1 }
            if wavelen > 8192.0 { return 8 }
            let smooth = (8192.0 / wavelen - 1) / 3
            return Float(1 / ((1 - smooth) / 8 + smooth))
        }
        try w.addTensor(name: "rope_freqs.weight", floats: factors, shape: [32])
        let path = dir.appendingPathComponent("l3.gguf").path
        try w.write(to: path)
        let source = try GGUFWeightSource(path: path)
        XCTAssertEqual(source.config.ropeScaling, RopeScaling(type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4,
                                                              originalMaxPositionEmbeddings: 8192))
        XCTAssertEqual(source.unmappedTensorNames, ["rope_freqs.weight"])

        var bad = try tiny.writer()
        bad.set("llama.rope.freq_base", .float32(500_000))
        try bad.addTensor(name: "rope_freqs.weight", floats: factors.reversed(), shape: [32])
        try bad.write(to: path)
        XCTAssertThrowsError(try GGUFWeightSource(path: path)) { XCTAssertTrue("\($0)".contains("rope_freqs.weight"), "\($0)") }
    }

    func testConfigErrorsNameFileAndKeyOrTensor() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func message(_ tiny: TinyGGUF, edit: (inout GGUFWriter) throws -> Void = { _ in }) throws -> String {
            var w = try tiny.writer()
            try edit(&w)
            let path = dir.appendingPathComponent("e.gguf").path
            try w.write(to: path)
            do { _ = try GGUFWeightSource(path: path); return "no error" } catch { return "\(error)" }
        }
        var falcon = TinyGGUF(); falcon.arch = "falcon"
        let m1 = try message(falcon)
        XCTAssertTrue(m1.contains("e.gguf") && m1.contains("falcon") && m1.contains("gemma3"), m1)
        XCTAssertTrue(m1.contains("supported: llama, qwen2, gemma2, gemma3, qwen3, phi3, olmo2"), m1)
        var phi = TinyGGUF(); phi.arch = "phi3"
        let m6 = try message(phi) { try $0.addTensor(name: "rope_factors_long.weight", floats: [1, 1], shape: [2]) }
        XCTAssertTrue(m6.contains("rope_factors_long.weight") && m6.contains("LongRoPE"), m6)
        var olmo = TinyGGUF(); olmo.arch = "olmo2"
        let m7 = try message(olmo) { $0.set("olmo2.attention.sliding_window", .uint32(4096)) }
        XCTAssertTrue(m7.contains("olmo2.attention.sliding_window"), m7)
        let m8 = try message(TinyGGUF()) { $0.set("llama.rope.dimension_count", .uint32(2)) }
        XCTAssertTrue(m8.contains("rope.dimension_count") && m8.contains("partial rotary"), m8)
        let m2 = try message(TinyGGUF()) { $0.set("llama.attention.head_count", .uint32(3)) }
        XCTAssertTrue(m2.contains("e.gguf") && m2.contains("head_count"), m2)
        let m3 = try message(TinyGGUF()) { $0.set("llama.feed_forward_length", .uint32(20)) }
        XCTAssertTrue(m3.contains("e.gguf") && m3.contains("blk.0.ffn_gate.weight") && m3.contains("[24, 16]"), m3)
        let m4 = try message(TinyGGUF()) { $0.set("llama.block_count", .uint32(1)) }
        XCTAssertTrue(m4.contains("blk.1."), m4)
        let m5 = try message(TinyGGUF()) { $0.set("llama.embedding_length", .string("wide")) }
        XCTAssertTrue(m5.contains("llama.embedding_length"), m5)
    }
}
