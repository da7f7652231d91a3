import Foundation
import TillerFormats
import TillerModels
import TillerTokenizers
import XCTest
@testable import TillerSteering
import TillerTestSupport

/// Extraction on the real SmolLM2-135M-Instruct (small: 2 instruction pairs × 3 questions).
final class ExtractionModelTests: XCTestCase {
    static func smolLM() throws -> LanguageModel {
        try SharedModels.shared.get(smolFile, name: "smollm2-135m-instruct")
    }

    func testRefusalExtractionOnSmolLM2() throws {
        let lm = try Self.smolLM()
        let trait = try Trait.resolve("refusal")
        var settings = ExtractionSettings()
        settings.maxPairs = 2
        settings.maxQuestions = 3
        settings.maxNewTokens = 6
        settings.temperature = 0
        settings.batchSize = 5
        let run = try ContrastiveExtraction.collect(model: lm, trait: trait, settings: settings, showProgress: false)
        XCTAssertEqual(run.form, .instructions, "a chat model with instruction data uses the instructions form")
        XCTAssertEqual(run.positiveSamples.count + run.negativeSamples.count + run.dropped, 12, "2 pairs × 3 questions × 2 polarities")
        XCTAssertGreaterThan(run.negativeSamples.count, 0)
        XCTAssertEqual(run.activations.layers, Array(0..<30))
        XCTAssertEqual(run.activations.hidden, 576)
        XCTAssertEqual(run.activations.positive[12]?.rows, run.positiveSamples.count)
        XCTAssertEqual(run.positiveSamples.first?.prompt, trait.questions[0])

        // A stored row is the mean of resid_post over the first 5 response tokens: recompute it with
        // an independent forward pass over prompt + generated tokens.
        let tokenizer = try XCTUnwrap(lm.tokenizer)
        let first = run.negativeSamples[0]
        let prompt = try ContrastiveExtraction.encodeInstruction(tokenizer, system: trait.instructions[first.pair].neg,
                                                                 question: trait.questions[first.question!])
        var options = GenerationOptions(maxNewTokens: 6)
        options.temperature = 0
        let gen = try lm.generate([prompt], options: options)[0]
        XCTAssertEqual(gen.text, first.response)
        let fwd = try lm.forward([prompt + gen.tokens], capture: CaptureSpec(layers: [3, 20], positions: .firstResponse(5)),
                                 logits: .none, promptLengths: [prompt.count]).activations[0]
        XCTAssertEqual(fwd.rowCount, min(5, gen.tokens.count))
        for l in [3, 20] {
            let rows = fwd[l]!
            var mean = [Float](repeating: 0, count: 576)
            for r in 0..<fwd.rowCount { for d in 0..<576 { mean[d] += rows[r * 576 + d] / Float(fwd.rowCount) } }
            let stored = Array(run.activations.negative[l]!.row(0))
            XCTAssertGreaterThan(cosineSimilarity(stored, mean), 0.9999, "L\(l)")
            let err = zip(stored, mean).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(err, 1e-2 * max(1, mean.map(abs).max()!), "L\(l)")
        }

        // Stored and reloaded; reuse only for the same settings and trait data.
        let dir = NSTemporaryDirectory() + "extract-\(UUID().uuidString)"
        try run.save(directory: dir)
        let back = try ExtractionRun.load(directory: dir)
        XCTAssertEqual(back.activations.positive[7], run.activations.positive[7])
        XCTAssertEqual(back.negativeSamples, run.negativeSamples)
        XCTAssertTrue(back.matches(model: lm.name, trait: trait, form: .instructions, settings: settings))
        var other = settings
        other.seed = 1
        XCTAssertFalse(back.matches(model: lm.name, trait: trait, form: .instructions, settings: other))
        var edited = trait
        edited.questions[0] += " Please."
        XCTAssertFalse(back.matches(model: lm.name, trait: edited, form: .instructions, settings: settings))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/samples.jsonl"))

        // Both methods run on the real activations and give unit vectors at every layer.
        let vectors = try VariantExtractor().run(back.activations, specs: [VariantSpec(.probe), VariantSpec(.meanDiff)]) { _, _ in [] }
        for ev in vectors {
            XCTAssertEqual(ev.vectors.count, 30)
            for v in ev.vectors.values { XCTAssertEqual(v.reduce(0) { $0 + Double($1) * Double($1) }, 1, accuracy: 1e-4) }
        }
    }

    /// Judge vetting keeps positives scoring ≥ 50 and negatives < 50, and drops unscored samples.
    func testVettingFiltersByScore() async throws {
        let hidden = 2
        let acts = ContrastiveActivations(hidden: hidden,
                                          positive: [0: ActivationMatrix(cols: hidden, rows: [[1, 0], [2, 0], [3, 0]])],
                                          negative: [0: ActivationMatrix(cols: hidden, rows: [[-1, 0], [-2, 0], [-3, 0]])])
        func sample(_ p: String, _ i: Int, _ answer: String) -> ExtractionSample {
            ExtractionSample(polarity: p, pair: 0, question: i, prompt: "q\(i)", response: answer, responseTokens: 1, score: nil)
        }
        let run = ExtractionRun(model: "m", architecture: "llama", trait: "t", form: .instructions, settings: [:], activations: acts,
                                positiveSamples: [sample("pos", 0, "80"), sample("pos", 1, "20"), sample("pos", 2, "none")],
                                negativeSamples: [sample("neg", 0, "10"), sample("neg", 1, "50"), sample("neg", 2, "0")],
                                dropped: 0, vetting: nil)
        // The scorer here reads the score from the answer text: a stand-in for the judge's closure.
        let vetted = try await run.vetted { _, answer in (Double(answer), 60) }
        XCTAssertEqual(vetted.positiveSamples.map(\.response), ["80"])
        XCTAssertEqual(vetted.negativeSamples.map(\.response), ["10", "0"])
        XCTAssertEqual(vetted.activations.positive[0]?.values, [1, 0])
        XCTAssertEqual(vetted.activations.negative[0]?.values, [-1, 0, -3, 0])
        XCTAssertEqual(vetted.vetting, VettingReport(threshold: 50, positiveKept: 1, positiveTotal: 3, negativeKept: 2, negativeTotal: 3, unscored: 1))
        XCTAssertEqual(vetted.positiveSamples[0].score, 80)
        // Incoherent answers go too, whatever their trait score (persona_vectors' coherence ≥ 50).
        let strict = try await run.vetted { _, answer in (Double(answer), answer == "10" ? 30 : 60) }
        XCTAssertEqual(strict.negativeSamples.map(\.response), ["0"])
        XCTAssertEqual(strict.positiveSamples.map(\.response), ["80"])
    }

    func testPositionSets() throws {
        XCTAssertEqual(try PositionSet("response:5"), .firstResponse(5))
        XCTAssertEqual(try PositionSet("response"), .responseMean)
        XCTAssertEqual(try PositionSet("prompt:last"), .lastPrompt)
        XCTAssertEqual(PositionSet.firstResponse(3).capture, .firstResponse(3))
        for bad in ["response:0", "first", "response:x"] { XCTAssertThrowsError(try PositionSet(bad), bad) }
    }
}
