import Foundation
import TillerFormats
import TillerTensor
import XCTest
@testable import TillerModels

/// Batched = unbatched, steering exactness, per-sequence specs, KV cache = full forward,
/// continuation log-probs, sampling — on the tiny checkpoints (fast) where no real model is needed.
final class BatchingSteeringTests: XCTestCase {
    /// The same prompt alone and inside a ragged batch: same residuals, logits and greedy tokens.
    func testBatchedEqualsUnbatched() throws {
        for name in ["tiny-gemma2", "tiny-gemma3", "tiny-llama31"] {
            let model = try loadTiny(name)
            let ps = try fixturePrompts(name)
            let capture = CaptureSpec(layers: [0, 1, 2], positions: .all)
            let batched = try model.forward(ps, capture: capture, logits: .all)
            // sgemm rounds a row differently depending on how many rows it gets; tiny-gemma2 (norm scales
            // ≈2, softcaps) amplifies that fp32 noise to ~3e-5 (its error against transformers is the same
            // size), the others stay below 1e-5. A wrong mask or position moves results by >1e-2.
            let tolerance: Float = name == "tiny-gemma2" ? 1e-4 : 1e-5
            for (i, p) in ps.enumerated() {
                let single = try model.forward([p], capture: capture, logits: .all)
                for l in 0..<3 {
                    XCTAssertLessThanOrEqual(relativeError(batched.activations[i][l]!, single.activations[0][l]!), tolerance, "\(name) seq \(i) layer \(l)")
                }
                XCTAssertLessThanOrEqual(relativeError(batched.logits[i], single.logits[0]), tolerance, "\(name) seq \(i) logits")
            }
            let opts = GenerationOptions(maxNewTokens: 10, stopTokens: [])
            let gb = try model.generate(ps, options: opts)
            for (i, p) in ps.enumerated() {
                XCTAssertEqual(gb[i].tokens, try model.generate([p], options: opts)[0].tokens, "\(name) seq \(i) greedy")
            }
        }
    }

    /// Prefill split into small steps (chunked) equals one step; generation through the KV cache
    /// equals a cache-free forward over prompt + generated tokens.
    func testChunkedPrefillAndCacheMatchFullForward() throws {
        let model = try loadTiny("tiny-gemma3") // sliding window 4 makes chunk boundaries matter
        let p = try fixturePrompts("tiny-gemma3")[2]
        let capture = CaptureSpec(layers: [0, 2], positions: .all)
        let whole = try model.forward([p], capture: capture, logits: .all)
        model.maxStepTokens = 3
        defer { model.maxStepTokens = 512 }
        let chunked = try model.forward([p], capture: capture, logits: .all)
        XCTAssertLessThanOrEqual(relativeError(chunked.logits[0], whole.logits[0]), 1e-5)
        XCTAssertLessThanOrEqual(relativeError(chunked.activations[0][2]!, whole.activations[0][2]!), 1e-5)

        let gen = try model.generate([p], options: GenerationOptions(maxNewTokens: 8, stopTokens: []),
                                     capture: CaptureSpec(layers: [1], positions: .response))[0]
        let full = try model.forward([p + gen.tokens], capture: CaptureSpec(layers: [1], positions: .response),
                                     logits: .all, promptLengths: [p.count])
        // Each generated token is the argmax of the full forward at the previous position.
        for (j, t) in gen.tokens.enumerated() {
            XCTAssertEqual(argmax(full.logits(sequence: 0, row: p.count - 1 + j)), t, "token \(j)")
        }
        // Response capture during generation covers every generated token, like the full forward.
        XCTAssertEqual(gen.activations!.positions, Array(p.count ..< p.count + gen.tokens.count))
        XCTAssertLessThanOrEqual(relativeError(gen.activations![1]!, full.activations[0][1]!), 1e-5)
    }

    /// Adding coef·v at resid_post.L changes resid_post.L by exactly coef·v and leaves earlier layers untouched.
    func testSteeringIsExactAtItsLayer() throws {
        let model = try loadTiny("tiny-llama31")
        let p = try fixturePrompts("tiny-llama31")[1]
        let H = model.hiddenSize
        var rng = SplitMix64(seed: 3)
        let v = (0..<H).map { _ in Float(rng.uniform() * 2 - 1) }
        let coef: Float = 2.5
        let capture = CaptureSpec(layers: [0, 1, 2], positions: .all)
        let base = try model.forward([p], capture: capture)
        let steered = try model.forward([p], capture: capture, steering: [SteeringSpec(.add(layer: 1, vector: v, coef: coef))])
        XCTAssertEqual(steered.activations[0][0]!, base.activations[0][0]!, "layer 0 must be untouched")
        let b1 = base.activations[0][1]!, s1 = steered.activations[0][1]!
        var worst: Float = 0
        for r in 0..<p.count { for i in 0..<H { worst = max(worst, abs((s1[r * H + i] - b1[r * H + i]) - coef * v[i])) } }
        XCTAssertLessThanOrEqual(worst, 1e-5, "resid_post.1 must move by coef·v")
        XCTAssertGreaterThan(relativeError(steered.activations[0][2]!, base.activations[0][2]!), 1e-3, "later layers must change")

        // Ablation: the direction's component is gone at that layer.
        let ablated = try model.forward([p], capture: capture, steering: [SteeringSpec(.ablate(layer: 1, direction: v))])
        let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let a1 = ablated.activations[0][1]!
        for r in 0..<p.count {
            var d: Float = 0
            for i in 0..<H { d += a1[r * H + i] * v[i] / n }
            XCTAssertLessThanOrEqual(abs(d), 1e-4)
        }
    }

    /// Two sequences with different specs in one batch each equal their single runs (forward and generate).
    func testPerSequenceSteeringInOneBatch() throws {
        let model = try loadTiny("tiny-gemma3")
        let ps = try fixturePrompts("tiny-gemma3")
        let H = model.hiddenSize
        var rng = SplitMix64(seed: 5)
        let v1 = (0..<H).map { _ in Float(rng.uniform() - 0.5) }
        let v2 = (0..<H).map { _ in Float(rng.uniform() - 0.5) }
        let specs: [SteeringSpec?] = [
            SteeringSpec(.add(layer: 0, vector: v1, coef: 8)),
            nil,
            SteeringSpec(.add(layer: 1, vector: v2, coef: -6, positions: .response), .add(layer: 0, vector: v1, coef: 3)),
        ]
        let batch = [ps[1], ps[0], ps[2]]
        let capture = CaptureSpec(layers: [2], positions: .all)
        let together = try model.forward(batch, capture: capture, steering: specs, logits: .all, promptLengths: [5, 5, 20])
        let opts = GenerationOptions(maxNewTokens: 8, stopTokens: [])
        let genTogether = try model.generate(batch, options: opts, steering: specs)
        for i in 0..<3 {
            let alone = try model.forward([batch[i]], capture: capture, steering: [specs[i]], logits: .all,
                                          promptLengths: [[5, 5, 20][i]])
            XCTAssertLessThanOrEqual(relativeError(together.logits[i], alone.logits[0]), 1e-5, "seq \(i)")
            XCTAssertLessThanOrEqual(relativeError(together.activations[i][2]!, alone.activations[0][2]!), 1e-5, "seq \(i)")
            XCTAssertEqual(genTogether[i].tokens, try model.generate([batch[i]], options: opts, steering: [specs[i]])[0].tokens)
        }
        XCTAssertNotEqual(together.logits[0], try model.forward([batch[0]], logits: .all).logits[0], "steering had no effect")
    }

    /// transformers with a forward hook adding coef·v at resid_post.L: logits and greedy ids.
    func testSteeringFixtureTinyLlama() throws {
        try checkSteeringFixture(model: loadTiny("tiny-llama31"), fixture: "tiny-llama31")
    }

    func testContinuationLogProbsMatchForward() throws {
        let model = try loadTiny("tiny-qwen2")
        let p = try fixturePrompts("tiny-qwen2")[0]
        let conts = [[7], [9, 10, 11], [], [200, 3]]
        let got = try model.teacherForced(TeacherForcedRequest(groups: [.init(prompt: p, continuations: conts)], reuse: .prefixTrie(head: nil), reduction: .sum))[0].map { $0[0] }
        for (c, lp) in zip(conts, got) {
            var want = 0.0
            if !c.isEmpty {
                let full = try model.forward([p + c], logits: .all)
                for (j, t) in c.enumerated() { want += logSoftmax(full.logits(sequence: 0, row: p.count - 1 + j), at: t) }
            }
            XCTAssertEqual(lp, want, accuracy: 1e-4)
        }
    }

    func testSamplingIsSeededAndBatchIndependent() throws {
        let model = try loadTiny("tiny-llama31")
        let ps = try fixturePrompts("tiny-llama31")
        let opts = GenerationOptions(maxNewTokens: 12, temperature: 1.2, topP: 0.9, seed: 42, stopTokens: [])
        let a = try model.generate(ps, options: opts)
        let b = try model.generate([ps[2]], options: opts)
        XCTAssertEqual(a[2].tokens, b[0].tokens)
        XCTAssertEqual(try model.generate(ps, options: opts).map(\.tokens), a.map(\.tokens))
        var other = opts
        other.seed = 43
        XCTAssertNotEqual(try model.generate(ps, options: other).map(\.tokens), a.map(\.tokens))
        XCTAssertNotEqual(a[2].tokens, try model.generate([ps[2]], options: .init(maxNewTokens: 12, stopTokens: []))[0].tokens)
    }

    func testStopTokensAndBudget() throws {
        let model = try loadTiny("tiny-llama31")
        let p = try fixturePrompts("tiny-llama31")[0]
        let free = try model.generate([p], options: GenerationOptions(maxNewTokens: 6, stopTokens: []))[0]
        XCTAssertEqual(free.tokens.count, 6)
        XCTAssertEqual(free.finishReason, .length)
        let stop = free.tokens[3]
        let stopped = try model.generate([p], options: GenerationOptions(maxNewTokens: 6, stopTokens: [stop]))[0]
        XCTAssertEqual(stopped.finishReason, .stop)
        XCTAssertEqual(stopped.stopToken, stop)
        XCTAssertEqual(stopped.tokens, Array(free.tokens.prefix(while: { $0 != stop })))
    }

    /// Every position selector returns exactly the matching rows of a full capture; the streaming
    /// callback sees the same rows without storing anything.
    func testCapturePositionsAndStreaming() throws {
        let model = try loadTiny("tiny-qwen2")
        let ps = try fixturePrompts("tiny-qwen2")
        let H = model.hiddenSize
        let promptLengths = [3, 7, 20]
        let full = try model.forward(ps, capture: CaptureSpec(layers: [0, 2], positions: .all), promptLengths: promptLengths)
        func rows(_ s: Int, _ l: Int, _ r: Range<Int>) -> [Float] { Array(full.activations[s][l]![r.lowerBound * H ..< r.upperBound * H]) }
        let cases: [(CapturePositions, (Int, Int) -> Range<Int>)] = [
            (.prompt, { p, _ in 0 ..< p }),
            (.response, { p, n in p ..< n }),
            (.firstResponse(2), { p, n in p ..< min(n, p + 2) }),
            (.lastPrompt, { p, _ in p - 1 ..< p }),
        ]
        for (sel, range) in cases {
            let got = try model.forward(ps, capture: CaptureSpec(layers: [0, 2], positions: sel), logits: .none, promptLengths: promptLengths)
            for s in 0..<3 {
                let r = range(promptLengths[s], ps[s].count)
                XCTAssertEqual(got.activations[s].positions, Array(r), "\(sel) seq \(s)")
                XCTAssertEqual(got.activations[s].rowCount, r.count)
                for l in [0, 2] { XCTAssertEqual(got.activations[s][l]!, rows(s, l, r), "\(sel) seq \(s) layer \(l)") }
            }
        }
        let mean = try model.forward(ps, capture: CaptureSpec(layers: [2], positions: .meanResponse), promptLengths: promptLengths)
        for s in 0..<3 {
            let r = promptLengths[s] ..< ps[s].count
            let block = rows(s, 2, r)
            let want = (0..<H).map { i in (0..<r.count).reduce(Float(0)) { $0 + block[$1 * H + i] } / Float(r.count) }
            XCTAssertEqual(mean.activations[s].rowCount, 1)
            XCTAssertLessThanOrEqual(maxAbsDiff(mean.activations[s][2]!, want), 1e-5)
        }

        var streamed = [[Int: [Float]]](repeating: [:], count: 3)
        let result = try model.forward(ps, capture: CaptureSpec(layers: [0, 2], positions: .response), promptLengths: promptLengths) {
            layer, seq, buffer, count, positions in
            XCTAssertEqual(buffer.count, count * H)
            XCTAssertEqual(positions.count, count)
            streamed[seq][layer, default: []].append(contentsOf: buffer)
        }
        XCTAssertTrue(result.logits.allSatisfy(\.isEmpty))
        XCTAssertTrue(result.activations.allSatisfy { $0.layers.isEmpty }, "streaming must not store")
        for s in 0..<3 {
            for l in [0, 2] { XCTAssertEqual(streamed[s][l]!, rows(s, l, promptLengths[s] ..< ps[s].count)) }
        }
    }

    func testBadInputsNameTheProblem() throws {
        let model = try loadTiny("tiny-llama31")
        XCTAssertThrowsError(try model.forward([[1, 999]])) { XCTAssert("\($0)".contains("999"), "\($0)") }
        XCTAssertThrowsError(try model.forward([[]])) { XCTAssert("\($0)".contains("empty"), "\($0)") }
        XCTAssertThrowsError(try model.forward([[1, 2]], steering: [SteeringSpec(.add(layer: 1, vector: [1, 2], coef: 1))])) {
            XCTAssert("\($0)".contains("expected hidden size 64"), "\($0)")
        }
        XCTAssertThrowsError(try model.forward([[1, 2]], capture: CaptureSpec(layers: [7]))) {
            XCTAssert("\($0)".contains("layer 7"), "\($0)")
        }
    }
}

/// Checks a `<model>.steering.safetensors` fixture (see Fixtures/README.md).
func checkSteeringFixture(model: LanguageModel, fixture: String) throws {
    let f = try FixtureFile(Fixtures.path("\(fixture).steering.safetensors"))
    let layer = f.metadata["layer"] as! Int
    let tokens = try f.ints("tokens")
    let v = try f.floats("vector")
    let coef = try f.floats("coef")[0]
    let opts = GenerationOptions(maxNewTokens: 12, stopTokens: [])
    let all = SteeringSpec(.add(layer: layer, vector: v, coef: coef, positions: .all))
    let resp = SteeringSpec(.add(layer: layer, vector: v, coef: coef, positions: .response))

    let base = try model.forward([tokens])
    let e0 = relativeError(base.logits[0], try f.floats("base.logits_last"))
    XCTAssertLessThanOrEqual(e0, 1e-3, "\(fixture) base logits")
    let steered = try model.forward([tokens], steering: [all])
    let e1 = relativeError(steered.logits[0], try f.floats("steer_all.logits_last"))
    XCTAssertLessThanOrEqual(e1, 1e-3, "\(fixture) steer_all logits")

    // All three configurations in one batch, as a sweep runs them.
    let gens = try model.generate([tokens, tokens, tokens], options: opts, steering: [nil, all, resp])
    XCTAssertEqual(gens[0].tokens, try f.ints("base.greedy"), "\(fixture) base greedy")
    XCTAssertEqual(gens[1].tokens, try f.ints("steer_all.greedy"), "\(fixture) steer_all greedy")
    let respGreedy = try f.ints("steer_response.greedy")
    XCTAssertEqual(gens[2].tokens, respGreedy, "\(fixture) steer_response greedy")

    let longer = tokens + respGreedy.prefix(11)
    let r = try model.forward([longer], steering: [resp], promptLengths: [tokens.count])
    let e2 = relativeError(r.logits[0], try f.floats("steer_response.logits_last"))
    XCTAssertLessThanOrEqual(e2, 1e-3, "\(fixture) steer_response logits")
    print("\(fixture) steering: relative errors base \(e0), steer_all \(e1), steer_response \(e2)")
}

/// A checkpoint with one tensor removed or swapped, to check load errors.
final class EditedSource: WeightSource, @unchecked Sendable {
    let base: WeightSource
    let edit: (String) throws -> RawTensor??
    init(_ base: WeightSource, edit: @escaping (String) throws -> RawTensor??) {
        self.base = base
        self.edit = edit
    }
    var config: ModelConfig { base.config }
    var names: [String] { base.names }
    func tensor(_ name: String) throws -> RawTensor? {
        if let replaced = try edit(name) { return replaced }
        return try base.tensor(name)
    }
}

final class LoadErrorTests: XCTestCase {
    func testMissingAndMisshapenTensorsAreNamed() throws {
        let src = try HFWeightSource(directory: Fixtures.path("tiny-llama31"))
        let missing = EditedSource(src) { $0 == "model.layers.1.mlp.up_proj.weight" ? .some(nil) : nil }
        XCTAssertThrowsError(try LanguageModel(weights: missing, tokenizer: nil, name: "tiny-llama31")) {
            XCTAssert("\($0)".contains("tiny-llama31: missing tensor model.layers.1.mlp.up_proj.weight (expected shape [128, 64])"), "\($0)")
        }
        let swapped = EditedSource(src) { name in
            name == "model.layers.0.self_attn.q_proj.weight" ? .some(try src.tensor("model.layers.0.self_attn.k_proj.weight")) : nil
        }
        XCTAssertThrowsError(try LanguageModel(weights: swapped, tokenizer: nil, name: "tiny-llama31")) {
            XCTAssert("\($0)".contains("model.layers.0.self_attn.q_proj.weight has shape [32, 64], expected [64, 64]"), "\($0)")
        }
        // Untied checkpoint without lm_head.weight.
        let noHead = EditedSource(src) { $0 == "lm_head.weight" ? .some(nil) : nil }
        XCTAssertThrowsError(try LanguageModel(weights: noHead, tokenizer: nil, name: "tiny-llama31")) {
            XCTAssert("\($0)".contains("lm_head.weight"), "\($0)")
        }
    }
}
