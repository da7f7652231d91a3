import Foundation
import TillerFormats
import TillerTensor
import XCTest
@testable import TillerModels

/// The Qwen3, Mistral, Phi-3 and OLMo-2 tiny checkpoints in their GGUF form, written as llama.cpp's
/// convert_hf_to_gguf.py writes them (tools/reference/model_gguf.py): the same weights as the
/// safetensors checkpoint, and the same resid_post / logits / greedy ids as transformers (the
/// tiny fixtures), within the tiny parity tolerance (1e-3 relative). Plus steering at resid_post
/// against transformers' forward hook for each of the four.
final class TinyGGUFTests: XCTestCase {
    func testQwen3() throws { try checkGGUF("qwen3", architecture: .qwen3) }
    func testOLMo2() throws { try checkGGUF("olmo2", architecture: .olmo2) }
    /// llama.cpp writes Mistral as `llama` and keeps no sliding window (prompt 0 fits in the window).
    func testMistral() throws { try checkGGUF("mistral", architecture: .llama, windowDropped: true) }
    /// llama.cpp ignores Phi-3's window (its Phi SWA is disabled), and so does the GGUF loader.
    func testPhi3() throws { try checkGGUF("phi3", architecture: .phi3, windowDropped: true) }

    /// Which layers slide and which RoPE table each takes come from the facts: with no
    /// layer_types, Gemma 3 keeps one global layer in six and gives it the global RoPE table; the
    /// window applies only where the config has one.
    func testAttentionLayoutFollowsTheFacts() throws {
        func config(_ a: Architecture, window: Int?) -> ModelConfig {
            ModelConfig(architecture: a, hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 6,
                        numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 16, vocabSize: 256, rmsNormEps: 1e-6,
                        ropeTheta: 1_000_000, slidingWindow: window, ropeLocalBaseFreq: a == .gemma3 ? 10_000 : nil)
        }
        let g = try Transformer.attentionLayout(config(.gemma3, window: 8))
        XCTAssertEqual(g.sliding, [true, true, true, true, true, false])
        XCTAssertNotEqual(g.ropeInvFreq[0], g.ropeInvFreq[5])
        XCTAssertEqual(g.ropeInvFreq[0], g.ropeInvFreq[4])
        XCTAssertEqual(try Transformer.attentionLayout(config(.gemma2, window: 8)).sliding, [true, false, true, false, true, false])
        XCTAssertEqual(try Transformer.attentionLayout(config(.gemma2, window: nil)).sliding, Array(repeating: false, count: 6))
        XCTAssertEqual(try Transformer.attentionLayout(config(.mistral, window: 8)).sliding, Array(repeating: true, count: 6))
        let llama = try Transformer.attentionLayout(config(.llama, window: 8))
        XCTAssertEqual(llama.sliding, Array(repeating: false, count: 6))
        XCTAssertEqual(Set(llama.ropeInvFreq.map { $0 }).count, 1)
    }

    func testSteeringFixtures() throws {
        for name in ["qwen3", "mistral", "phi3", "olmo2"] {
            try checkSteeringFixture(model: loadTiny("tiny-\(name)"), fixture: "tiny-\(name)")
        }
    }

    /// Batched = unbatched and KV-cache decoding = cache-free forward on these architectures too.
    func testBatchedAndCachedMatch() throws {
        for name in ["tiny-qwen3", "tiny-mistral", "tiny-phi3", "tiny-olmo2"] {
            let model = try loadTiny(name)
            let ps = try fixturePrompts(name)
            let capture = CaptureSpec(layers: [0, 1, 2], positions: .all)
            let batched = try model.forward(ps, capture: capture, logits: .all)
            for (i, p) in ps.enumerated() {
                let single = try model.forward([p], capture: capture, logits: .all)
                for l in 0..<3 {
                    XCTAssertLessThanOrEqual(relativeError(batched.activations[i][l]!, single.activations[0][l]!), 1e-5, "\(name) seq \(i) layer \(l)")
                }
                XCTAssertLessThanOrEqual(relativeError(batched.logits[i], single.logits[0]), 1e-5, "\(name) seq \(i) logits")
            }
            let p = ps[2]
            let gen = try model.generate([p], options: GenerationOptions(maxNewTokens: 8, stopTokens: []))[0]
            let full = try model.forward([p + gen.tokens], logits: .all)
            for (j, t) in gen.tokens.enumerated() {
                XCTAssertEqual(argmax(full.logits(sequence: 0, row: p.count - 1 + j)), t, "\(name) token \(j)")
            }
        }
    }

    func checkGGUF(_ name: String, architecture: Architecture, windowDropped: Bool = false) throws {
        let hf = try HFWeightSource(directory: Fixtures.path("tiny-\(name)"))
        let gguf = try GGUFWeightSource(path: Fixtures.path("tiny-\(name).gguf-bin"))
        let a = hf.config, b = gguf.config
        XCTAssertEqual(b.architecture, architecture)
        XCTAssertEqual(gguf.unmappedTensorNames, [])
        XCTAssertEqual(b.hiddenSize, a.hiddenSize); XCTAssertEqual(b.intermediateSize, a.intermediateSize)
        XCTAssertEqual(b.numHiddenLayers, a.numHiddenLayers); XCTAssertEqual(b.numAttentionHeads, a.numAttentionHeads)
        XCTAssertEqual(b.numKeyValueHeads, a.numKeyValueHeads); XCTAssertEqual(b.headDim, a.headDim)
        XCTAssertEqual(b.vocabSize, a.vocabSize); XCTAssertEqual(b.ropeTheta, a.ropeTheta)
        XCTAssertEqual(b.ropeScaling, a.ropeScaling)
        XCTAssertEqual(Float(b.rmsNormEps), Float(a.rmsNormEps)) // GGUF stores it as f32
        XCTAssertEqual(b.tieWordEmbeddings, a.tieWordEmbeddings); XCTAssertEqual(b.attentionBias, a.attentionBias)
        XCTAssertEqual(b.hiddenActivation, a.hiddenActivation)
        XCTAssertEqual(b.bosTokenId, a.bosTokenId); XCTAssertEqual(b.eosTokenIds, a.eosTokenIds)
        if windowDropped {
            XCTAssertNotNil(a.slidingWindow)
            XCTAssertNil(b.slidingWindow)
            XCTAssertTrue(b.layerTypes.allSatisfy { $0 == "full_attention" })
        } else {
            XCTAssertEqual(b.slidingWindow, a.slidingWindow); XCTAssertEqual(b.layerTypes, a.layerTypes)
        }
        // Every tensor, Mistral's Q/K rows un-permuted, equals the safetensors original bit for bit.
        XCTAssertEqual(Set(gguf.names), Set(hf.names))
        for n in hf.names {
            let x = try XCTUnwrap(hf.tensor(n)), y = try XCTUnwrap(gguf.tensor(n), n)
            XCTAssertEqual(y.shape, x.shape, n)
            XCTAssertEqual(try dequantize(y), try dequantize(x), n)
        }

        let model = try LanguageModel(weights: gguf, tokenizer: nil, name: "tiny-\(name).gguf")
        let expected = try FixtureFile(Fixtures.path("tiny-\(name).expected.safetensors"))
        let window = a.slidingWindow ?? Int.max
        var worst: Float = 0
        for p in 0..<3 {
            let tokens = try expected.ints("tokens.\(p)")
            // Without the window the GGUF model equals transformers wherever attention spans fit in it.
            guard !windowDropped || tokens.count <= window else { continue }
            let out = try model.forward([tokens], capture: CaptureSpec(layers: [0, 1, 2], positions: .all), logits: .all)
            for l in 0..<3 {
                let e = relativeError(out.activations[0][l]!, try expected.floats("resid_post.\(p).\(l)"))
                worst = max(worst, e)
                XCTAssertLessThanOrEqual(e, 1e-3, "\(name).gguf prompt \(p) resid_post.\(l)")
            }
            let e = relativeError(out.logits[0], try expected.floats("logits.\(p)"))
            worst = max(worst, e)
            XCTAssertLessThanOrEqual(e, 1e-3, "\(name).gguf prompt \(p) logits")
            // Greedy token j is read at position T-1+j, which attends T+j keys.
            let inWindow = windowDropped ? max(0, min(12, window - tokens.count + 1)) : 12
            let gen = try model.generate([tokens], options: GenerationOptions(maxNewTokens: 12, stopTokens: []))
            XCTAssertEqual(Array(gen[0].tokens.prefix(inWindow)), Array(try expected.ints("greedy.\(p)").prefix(inWindow)),
                           "\(name).gguf prompt \(p) greedy")
        }
        print("tiny-\(name).gguf: worst relative error \(worst)")
    }
}
