import Foundation
import TillerFormats
import TillerTensor
import XCTest
@testable import TillerModels

/// The two default GGUF models against transformers (which dequantizes GGUF to fp32):
/// resid_post at several layers, logits, greedy continuations.
final class RealModelParityTests: XCTestCase {
    func testSmolLM2() throws {
        try checkReal(fixture: "smollm2", gguf: "SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    func testGemma3_270m() throws {
        try checkReal(fixture: "gemma3", gguf: "gemma-3-270m-q4_k_m.gguf")
    }

    func checkReal(fixture: String, gguf: String) throws {
        let model = try loadReal(gguf)
        let expected = try FixtureFile(Fixtures.path("\(fixture).expected.safetensors"))
        let meta = expected.metadata
        let layers = meta["layers"] as! [Int]
        let prompts = meta["prompts"] as! [[String: Any]]
        var worst: Float = 0
        var singles: [CapturedActivations] = []
        for p in prompts.indices {
            let tokens = try expected.ints("tokens.\(p)")
            let positions = prompts[p]["logit_positions"] as! [Int]
            let t0 = Date()
            let out = try model.forward([tokens], capture: CaptureSpec(layers: layers, positions: .all), logits: .all)
            let dt = Date().timeIntervalSince(t0)
            singles.append(out.activations[0])
            for l in layers {
                let e = relativeError(out.activations[0][l]!, try expected.floats("resid_post.\(p).\(l)"))
                worst = max(worst, e)
                XCTAssertLessThanOrEqual(e, 1e-3, "\(fixture) prompt \(p) resid_post.\(l)")
            }
            let V = model.vocabSize
            if !positions.isEmpty {
                let want = try expected.floats("logits.\(p)")
                for (i, pos) in positions.enumerated() {
                    let e = relativeError(Array(out.logits(sequence: 0, row: pos)), Array(want[i * V ..< (i + 1) * V]))
                    worst = max(worst, e)
                    XCTAssertLessThanOrEqual(e, 1e-3, "\(fixture) prompt \(p) logits at \(pos)")
                }
            }
            // Top-64 logits at the last position.
            let ids = try expected.ints("top_ids.\(p)")
            let last = out.logits(sequence: 0, row: tokens.count - 1)
            let got = ids.map { last[last.startIndex + $0] }
            let e = relativeError(got, try expected.floats("top_logits.\(p)"))
            worst = max(worst, e)
            XCTAssertLessThanOrEqual(e, 1e-3, "\(fixture) prompt \(p) top logits")
            XCTAssertEqual(argmax(last), ids[0], "\(fixture) prompt \(p) top-1 id")

            let g0 = Date()
            let gen = try model.generate([tokens], options: GenerationOptions(maxNewTokens: 12, stopTokens: []))
            let gdt = Date().timeIntervalSince(g0)
            XCTAssertEqual(gen[0].tokens, try expected.ints("greedy.\(p)"), "\(fixture) prompt \(p) greedy")
            print(String(format: "\(fixture) prompt \(p): %d tokens forward %.3fs, 12-token greedy %.3fs", tokens.count, dt, gdt))
        }
        // The three prompts as one ragged batch: same residuals as alone, same greedy ids as transformers.
        let all = try (0..<prompts.count).map { try expected.ints("tokens.\($0)") }
        let batched = try model.forward(all, capture: CaptureSpec(layers: layers, positions: .all))
        for p in all.indices {
            for l in layers {
                let e = relativeError(batched.activations[p][l]!, try expected.floats("resid_post.\(p).\(l)"))
                XCTAssertLessThanOrEqual(e, 1e-3, "\(fixture) batched prompt \(p) resid_post.\(l)")
                XCTAssertLessThanOrEqual(relativeError(batched.activations[p][l]!, singles[p][l]!), 1e-5,
                                         "\(fixture) batched vs alone, prompt \(p) resid_post.\(l)")
            }
        }
        let t0 = Date()
        let gens = try model.generate(all, options: GenerationOptions(maxNewTokens: 12, stopTokens: []))
        let dt = Date().timeIntervalSince(t0)
        for p in all.indices {
            XCTAssertEqual(gens[p].tokens, try expected.ints("greedy.\(p)"), "\(fixture) batched greedy prompt \(p)")
        }
        print(String(format: "\(fixture): batched greedy (3 × 12 tokens) %.3fs", dt))
        print("\(fixture): worst relative error \(worst)")
    }

    /// Batch-1 decode (the VNNI slabs where the CPU has them, else the fp32 one-row kernels)
    /// against the many-row path, on a real model with massive activations: the residuals of the
    /// generated positions equal those of a forward over prompt + generated tokens, at every
    /// position and with each position's own scale (the massive dims do not hide the others).
    func testSmolLM2DecodeMatchesTheFullForward() throws {
        try checkDecodeMatchesTheFullForward(gguf: "SmolLM2-135M-Instruct.Q4_1.gguf", fixture: "smollm2", layers: [0, 3, 15, 29])
    }

    /// The same on Gemma 3 270M, whose Q5_0 matrices decode through Q8_0-laid VNNI slabs, its Q4_K
    /// ones through Q4_K slabs (Q4_1's shape, fp32 scales) and its Q6_K ones through the fp32
    /// one-row kernels.
    func testGemma3DecodeMatchesTheFullForward() throws {
        try checkDecodeMatchesTheFullForward(gguf: "gemma-3-270m-q4_k_m.gguf", fixture: "gemma3", layers: [0, 5, 17])
    }

    private func checkDecodeMatchesTheFullForward(gguf: String, fixture: String, layers: [Int]) throws {
        let model = try loadReal(gguf)
        let expected = try FixtureFile(Fixtures.path("\(fixture).expected.safetensors"))
        let tokens = try expected.ints("tokens.0")
        let spec = CaptureSpec(layers: layers, positions: .all)
        let gen = try model.generate([tokens], options: GenerationOptions(maxNewTokens: 8, stopTokens: []), capture: spec)
        let all = tokens + gen[0].tokens
        let full = try model.forward([all], capture: spec)
        let width = model.hiddenSize
        var worst: Float = 0, worstWithoutMassive: Float = 0
        for l in layers {
            let a = try XCTUnwrap(gen[0].activations?[l]), b = try XCTUnwrap(full.activations[0][l])
            XCTAssertEqual(a.count, b.count, "layer \(l)")
            guard a.count == b.count else { continue }
            for pos in tokens.count..<(a.count / width) {
                let ra = Array(a[(pos * width)..<((pos + 1) * width)]), rb = Array(b[(pos * width)..<((pos + 1) * width)])
                let e = relativeError(ra, rb)
                worst = max(worst, e)
                XCTAssertLessThanOrEqual(e, 2e-5, "layer \(l) position \(pos)")
                // The same row with its three largest dims left out.
                let keep = rb.indices.sorted { abs(rb[$0]) > abs(rb[$1]) }.dropFirst(3)
                let e2 = relativeError(keep.map { ra[$0] }, keep.map { rb[$0] })
                worstWithoutMassive = max(worstWithoutMassive, e2)
                XCTAssertLessThanOrEqual(e2, 1e-4, "layer \(l) position \(pos), without its 3 largest dims")
            }
        }
        print("\(fixture) decode vs forward (\(VNNIMatrix.available ? "vnni" : "fp32") one-row kernels): worst relative error \(worst), \(worstWithoutMassive) without each row's 3 largest dims")
    }

    /// A model over the fp32-copy limit (a copy limit of 0 bytes here): prefill through dequantized
    /// panels, batched decode of six sequences through the VNNI slabs four rows a pass where the
    /// CPU has them. Greedy tokens equal transformers', and the residuals of the generated
    /// positions equal the default backend's.
    func testSmolLM2OverTheCopyLimitGeneratesTheSameTokens() throws {
        let path = try realModelPath("SmolLM2-135M-Instruct.Q4_1.gguf")
        let small = try LanguageModel(weights: GGUFWeightSource(path: path), tokenizer: nil, name: path,
                                      backend: CPUBackend(fp32CopyLimitBytes: 0))
        let model = try loadReal("SmolLM2-135M-Instruct.Q4_1.gguf")
        let expected = try FixtureFile(Fixtures.path("smollm2.expected.safetensors"))
        let count = (expected.metadata["prompts"] as! [[String: Any]]).count
        let prompts = try (0..<count).map { try expected.ints("tokens.\($0)") }
        let six = prompts + prompts
        let spec = CaptureSpec(layers: [15], positions: .all)
        let options = GenerationOptions(maxNewTokens: 12, stopTokens: [])
        let a = try small.generate(six, options: options, capture: spec)
        let b = try model.generate(six, options: options, capture: spec)
        for (i, g) in a.enumerated() {
            XCTAssertEqual(g.tokens, try expected.ints("greedy.\(i % count)"), "sequence \(i)")
            let e = relativeError(try XCTUnwrap(g.activations?[15]), try XCTUnwrap(b[i].activations?[15]))
            XCTAssertLessThanOrEqual(e, 2e-5, "sequence \(i) resid_post.15")
        }
    }
}

func loadReal(_ gguf: String) throws -> LanguageModel {
    let path = try realModelPath(gguf)
    return try LanguageModel(weights: GGUFWeightSource(path: path), tokenizer: nil, name: path)
}

/// SmolLM2 steering (transformers forward hook adding coef·v at resid_post.15) and the judge's
/// continuation log-probabilities.
final class RealModelSteeringTests: XCTestCase {
    func testSmolLM2SteeringFixture() throws {
        try checkSteeringFixture(model: loadReal("SmolLM2-135M-Instruct.Q4_1.gguf"), fixture: "smollm2")
    }

    /// Loading by cache name brings the GGUF tokenizer: greedy text as transformers decodes it,
    /// and the default stop tokens include the chat end-of-turn token.
    func testLoadByNameDecodesText() throws {
        _ = try realModelPath("SmolLM2-135M-Instruct.Q4_1.gguf")
        let model = try LanguageModel.load("smollm2-135m-instruct")
        let expected = try FixtureFile(Fixtures.path("smollm2.expected.safetensors"))
        let prompt = (expected.metadata["prompts"] as! [[String: Any]])[0]
        let tokens = try expected.ints("tokens.0")
        XCTAssertEqual(model.tokenizer?.encode(prompt["text"] as! String, addSpecialTokens: false), tokens)
        let gen = try model.generate([tokens], options: GenerationOptions(maxNewTokens: 12, stopTokens: []))[0]
        XCTAssertEqual(gen.text, prompt["greedy_text"] as? String)
        let imEnd = model.tokenizer!.encode("<|im_end|>", addSpecialTokens: false)
        XCTAssertEqual(imEnd.count, 1)
        XCTAssertTrue(model.defaultStopTokens.contains(imEnd[0]), "\(model.defaultStopTokens)")
    }

    func testSmolLM2ContinuationLogProbs() throws {
        let model = try loadReal("SmolLM2-135M-Instruct.Q4_1.gguf")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("smollm2.logprobs.json")))) as! [String: Any]
        let prompt = json["prompt_ids"] as! [Int]
        let conts = json["continuations"] as! [[String: Any]]
        let got = try model.teacherForced(TeacherForcedRequest(groups: [.init(prompt: prompt, continuations: conts.map { $0["ids"] as! [Int] })], reuse: .prefixTrie(head: nil), reduction: .sum))[0].map { $0[0] }
        for (c, lp) in zip(conts, got) {
            let want = (c["logprob_total"] as! NSNumber).doubleValue
            XCTAssertEqual(lp, want, accuracy: 1e-3 * max(1, abs(want)), "continuation \(c["text"]!)")
            print("logprob \(c["text"]!): \(lp) vs \(want)")
        }
    }
}
