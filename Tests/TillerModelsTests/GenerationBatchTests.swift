import Foundation
import XCTest
@testable import TillerModels

/// Per-sequence options in one batch, the token callback (streaming, cancellation) and
/// continuous batching (sequences joining a running batch) on the tiny checkpoints.
final class GenerationBatchTests: XCTestCase {
    /// Every sequence of a batch with its own budget, temperature, top-p and seed gives exactly the
    /// tokens it gives alone.
    func testPerSequenceOptionsEqualSeparateCalls() throws {
        for name in ["tiny-llama31", "tiny-gemma3"] {
            let model = try loadTiny(name)
            let ps = try fixturePrompts(name)
            let options = [
                GenerationOptions(maxNewTokens: 9, stopTokens: []),
                GenerationOptions(maxNewTokens: 4, temperature: 0.8, seed: 11, stopTokens: []),
                GenerationOptions(maxNewTokens: 12, temperature: 1.3, topP: 0.7, seed: 5, stopTokens: []),
            ]
            let batched = try model.generate(ps, perSequence: options)
            for i in ps.indices {
                let alone = try model.generate([ps[i]], options: options[i])[0]
                XCTAssertEqual(batched[i].tokens, alone.tokens, "\(name) seq \(i)")
                XCTAssertEqual(batched[i].tokens.count, options[i].maxNewTokens, "\(name) seq \(i) budget")
                XCTAssertEqual(batched[i].finishReason, .length)
            }
            // Sampling really happened: a different seed gives different tokens for the sampled ones.
            var other = options[2]
            other.seed = 6
            XCTAssertNotEqual(try model.generate([ps[2]], options: other)[0].tokens, batched[2].tokens, name)
            XCTAssertThrowsError(try model.generate(ps, perSequence: Array(options.prefix(2))))
        }
    }

    /// The callback sees every token in order with the logits it was sampled from; a stop token is
    /// reported with `.stop` and is not part of the result; returning false cancels one sequence.
    func testTokenCallbackStreamsAndCancels() throws {
        let model = try loadTiny("tiny-llama31")
        let ps = try fixturePrompts("tiny-llama31")
        let opts = GenerationOptions(maxNewTokens: 10, stopTokens: [])
        let plain = try model.generate(ps, options: opts)
        var seen = [[Int]](repeating: [], count: ps.count)
        var finishes = [FinishReason?](repeating: nil, count: ps.count)
        let streamed = try model.generate(ps, options: opts) { step in
            XCTAssertEqual(step.index, seen[step.sequence].count)
            XCTAssertEqual(step.logits.count, model.vocabSize)
            // Greedy: the token is the argmax of the logits handed over.
            XCTAssertEqual(argmax(Array(step.logits)[...]), step.token)
            seen[step.sequence].append(step.token)
            if step.finish != nil { finishes[step.sequence] = step.finish }
            return true
        }
        for i in ps.indices {
            XCTAssertEqual(seen[i], plain[i].tokens)
            XCTAssertEqual(streamed[i].tokens, plain[i].tokens)
            XCTAssertEqual(finishes[i], .length)
        }
        // The handed-over logits are the model's at that position (a full forward over the text).
        var rows: [[Float]] = []
        _ = try model.generate([ps[0]], options: opts) { step in rows.append(Array(step.logits)); return true }
        let full = try model.forward([ps[0] + plain[0].tokens], logits: .all)
        for (j, row) in rows.enumerated() {
            XCTAssertLessThanOrEqual(relativeError(row, Array(full.logits(sequence: 0, row: ps[0].count - 1 + j))), 1e-5, "row \(j)")
        }

        // Cancel sequence 1 after its third token: it stops there, the others are untouched.
        let cut = try model.generate(ps, options: opts) { step in !(step.sequence == 1 && step.index == 2) }
        XCTAssertEqual(cut[1].finishReason, .cancelled)
        XCTAssertEqual(cut[1].tokens, Array(plain[1].tokens.prefix(3)))
        XCTAssertEqual(cut[0].tokens, plain[0].tokens)
        XCTAssertEqual(cut[2].tokens, plain[2].tokens)

        // A stop token: reported once with .stop, excluded from tokens.
        let stopAt = plain[2].tokens[4]
        var stopSteps: [TokenStep] = []
        let stopped = try model.generate([ps[2]], options: GenerationOptions(maxNewTokens: 10, stopTokens: [stopAt])) { step in
            if step.finish == .stop { stopSteps.append(step) }
            return true
        }[0]
        let firstStop = plain[2].tokens.firstIndex(of: stopAt)!
        XCTAssertEqual(stopped.tokens, Array(plain[2].tokens.prefix(firstStop)))
        XCTAssertEqual(stopped.finishReason, .stop)
        XCTAssertEqual(stopSteps.count, 1)
        XCTAssertEqual(stopSteps.first?.token, stopAt)
        XCTAssertEqual(stopSteps.first?.index, firstStop)
    }

    /// Sequences added while others are generating (continuous batching), steered or not, give
    /// the tokens they give alone; a response capture of a late sequence equals a full forward.
    func testSequencesJoiningARunningBatch() throws {
        let model = try loadTiny("tiny-gemma2")
        let ps = try fixturePrompts("tiny-gemma2")
        var rng = SplitMix64(seed: 3)
        let v = (0..<model.hiddenSize).map { _ in Float(Double(rng.next() >> 11) * 0x1p-53 - 0.5) }
        let steer = SteeringSpec(.add(layer: 1, vector: v, coef: 4, positions: .response))
        let opts = GenerationOptions(maxNewTokens: 8, stopTokens: [])
        let capture = CaptureSpec(layers: [1], positions: .response)
        let batch = try GenerationBatch(model: model, capture: capture)
        let a = try batch.add(ps[0], options: opts)
        batch.step()
        batch.step()
        let b = try batch.add(ps[1], options: GenerationOptions(maxNewTokens: 3, stopTokens: []), steering: steer)
        XCTAssertEqual(batch.activeCount, 2)
        batch.step()
        let c = try batch.add(ps[2], options: opts)
        var finishedOrder: [Int] = []
        while !batch.isEmpty { finishedOrder += batch.step() }
        XCTAssertEqual(finishedOrder.first, b, "the short late request finishes first")
        let ra = batch.take(a)!, rb = batch.take(b)!, rc = batch.take(c)!
        XCTAssertNil(batch.take(a), "a result is taken once")
        XCTAssertEqual(ra.tokens, try model.generate([ps[0]], options: opts)[0].tokens)
        XCTAssertEqual(rb.tokens, try model.generate([ps[1]], options: GenerationOptions(maxNewTokens: 3, stopTokens: []), steering: [steer])[0].tokens)
        XCTAssertEqual(rc.tokens, try model.generate([ps[2]], options: opts)[0].tokens)
        let full = try model.forward([ps[2] + rc.tokens], capture: capture, logits: .none, promptLengths: [ps[2].count])
        XCTAssertEqual(rc.activations?.rowCount, rc.tokens.count)
        XCTAssertLessThanOrEqual(relativeError(rc.activations![1]!, full.activations[0][1]!), 1e-4)

        // Cancel between steps.
        let d = try batch.add(ps[0], options: opts)
        batch.step()
        batch.cancel(d)
        XCTAssertTrue(batch.isEmpty)
        let rd = batch.take(d)!
        XCTAssertEqual(rd.finishReason, .cancelled)
        XCTAssertEqual(rd.tokens, Array(ra.tokens.prefix(1)))
        XCTAssertThrowsError(try batch.add([], options: opts))
        XCTAssertThrowsError(try batch.add(ps[0], options: opts, steering: SteeringSpec(.add(layer: 99, vector: v, coef: 1))))
        XCTAssertTrue(batch.isEmpty, "a rejected sequence leaves nothing behind")
    }
}
