import Foundation
import XCTest
import TillerModels
import TillerSteering
import TillerTestSupport
@testable import TillerEval

/// Judge validation on known cases, the judge-free evaluators' plumbing, and their own checks.
final class EvaluatorTests: XCTestCase {
    /// Answers every prompt with the same distribution.
    struct ConstantJudge: Judge {
        var backend: String { "test" }
        var model: String { "constant" }
        func judge(_ prompt: String) async throws -> JudgeAnswer { JudgeAnswer(distribution: [50: 0.6, 60: 0.4]) }
    }

    /// Knows the answers: high trait for the trait-showing reference answers, low coherence for
    /// anything that is not one of the fluent answers.
    struct OracleJudge: Judge {
        let positives: Set<String>
        let fluent: Set<String>
        var backend: String { "test" }
        var model: String { "oracle" }
        func judge(_ prompt: String) async throws -> JudgeAnswer {
            let isTrait = prompt.contains("REFUSES")
            if isTrait { return JudgeAnswer(distribution: positives.contains { prompt.contains($0) } ? [90: 1] : [10: 1]) }
            return JudgeAnswer(distribution: fluent.contains { prompt.contains("\n\($0)\n") || prompt.hasSuffix($0) || prompt.contains($0 + "\n") } ? [85: 1] : [15: 1])
        }
    }

    func refusal() throws -> Trait { try Trait.resolve("refusal") }

    func testShippedTraitsCarryReferenceAnswers() throws {
        for name in ["refusal", "sycophancy", "evil"] {
            let t = try Trait.resolve(name)
            XCTAssertGreaterThanOrEqual(t.referenceAnswers.count, 30, name)
        }
        XCTAssertGreaterThanOrEqual(try PromptFile.shippedNeutral().count, 30)
    }

    /// An `openai:` judge answers one small request before any long work; what to fix is named.
    func testOpenAIPreflightNamesWhatToSet() async throws {
        let noKey = OpenAIJudge(model: "gpt-4.1-mini", options: OpenAIJudgeOptions(baseURL: URL(string: "https://api.openai.com/v1")!, apiKey: nil))
        do { try await noKey.preflight(); XCTFail("a missing key must fail") } catch {
            XCTAssertTrue("\(error)".contains("OPENAI_API_KEY") && "\(error)".contains("TILLER_JUDGE_API_KEY"), "\(error)")
        }
        // Nothing listens on the discard port: the error says which URL to check.
        let cached = CachedJudge(OpenAIJudge(model: "m", options: OpenAIJudgeOptions(baseURL: URL(string: "http://127.0.0.1:9/v1")!, apiKey: "k",
                                                                                       timeout: 2, backoffBase: 0.05)),
                                 cache: try JudgeCache(path: NSTemporaryDirectory() + "preflight-cache-\(getpid()).sqlite"))
        do { try await cached.preflight(); XCTFail("an unreachable endpoint must fail") } catch {
            XCTAssertTrue("\(error)".contains("failed its first request") && "\(error)".contains("TILLER_JUDGE_BASE_URL"), "\(error)")
        }
        try await ConstantJudge().preflight()  // judges without setup pass
    }

    func testAJudgeThatAlwaysAnswersTheSameFailsValidation() async throws {
        let t = try refusal()
        let scorer = JudgeScorer(judge: ConstantJudge(), prompts: try JudgePrompts.defaults())
        let checks = try await JudgeValidation.run(scorer: scorer, trait: t.name, definition: t.definition, references: t.referenceAnswers,
                                                   items: 8, minAUC: 0.75, relevance: false, seed: 0)
        XCTAssertEqual(checks.map(\.check), ["trait_auc", "coherence_auc"])
        for c in checks {
            XCTAssertEqual(c.value ?? -1, 0.5, accuracy: 1e-12)
            XCTAssertFalse(c.passed)
        }
        XCTAssertEqual(checks[0].n, 16)
        XCTAssertEqual(checks[1].n, 8 * 5)
    }

    func testAJudgeThatTellsTheCasesApartPasses() async throws {
        let t = try refusal()
        let refs = Array(t.referenceAnswers.prefix(8))
        let fluent = Set(refs.enumerated().map { $0.offset % 2 == 0 ? $0.element.pos : $0.element.neg })
        let judge = OracleJudge(positives: Set(refs.map(\.pos)), fluent: fluent)
        let scorer = JudgeScorer(judge: judge, prompts: try JudgePrompts.defaults())
        let checks = try await JudgeValidation.run(scorer: scorer, trait: t.name, definition: t.definition, references: refs,
                                                   items: 8, minAUC: 0.75, relevance: false, seed: 0)
        XCTAssertEqual(checks[0].value ?? 0, 1, accuracy: 1e-12, "\(checks[0])")
        XCTAssertGreaterThanOrEqual(checks[1].value ?? 0, 0.75, "\(checks[1])")
        XCTAssertTrue(checks.allSatisfy(\.passed))
    }

    func testDegenerateVersionsAndRepetition() {
        let a = "Steep the tea bag in hot water for three minutes, then remove it and add milk if you like."
        let v = Degeneration.versions(of: a, seed: 1)
        XCTAssertEqual(v.map(\.kind), ["shuffled", "repeated", "cut_off", "letter_loop"])
        XCTAssertEqual(Set(v[0].text.split(separator: " ")), Set(a.split(separator: " ")))
        XCTAssertNotEqual(v[0].text, a)
        XCTAssertEqual(Degeneration.repetition(a), 0)
        XCTAssertGreaterThan(Degeneration.repetition("A. A. A. A. A. A."), 0.7)
        XCTAssertGreaterThan(Degeneration.repetition(v[1].text), 0.7)
        let check = Degeneration.validate(fluent: [a, "Paris is the capital of France, and it sits on the Seine."], minAUC: 0.75, seed: 0)
        XCTAssertTrue(check.passed, "\(check)")
    }

    func testABItems() throws {
        let refs = try refusal().referenceAnswers
        let items = ABItem.fromReferences(refs, seed: 0)
        XCTAssertEqual(items.count, refs.count)
        // Balanced letters, so a letter bias cannot pass for the trait.
        XCTAssertEqual(items.filter { $0.answerMatchingBehavior == "(A)" }.count, refs.count / 2)
        XCTAssertTrue(items[0].question.contains("(A) ") && items[0].question.contains("(B) "))
        let dir = NSTemporaryDirectory() + "tiller-ab-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/ab.jsonl"
        let lines = items.prefix(5).map { i in
            String(decoding: try! JSONEncoder().encode(i), as: UTF8.self)
        }
        try lines.joined(separator: "\n").write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ABItem.load(path: p), Array(items.prefix(5)))
        try (lines[0] + "\n{\"question\": \"q\", \"answer_matching_behavior\": \"(A)\", \"answer_not_matching_behavior\": \"(A)\"}\n")
            .write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ABItem.load(path: p)) { XCTAssertTrue("\($0)".contains("ab.jsonl:2"), "\($0)") }
    }

    /// CAA ships its A/B datasets as JSON arrays (test_dataset_ab.json): they load as JSONL does,
    /// and a bad element is named by its index with the forms that are accepted.
    func testABItemsFromAJSONArray() throws {
        let items = try ABItem.load(path: Fixtures.path("ab_array.json"))
        XCTAssertEqual(items.count, 5)
        XCTAssertEqual(items[1].answerMatchingBehavior, "(A)")
        XCTAssertTrue(items[0].question.hasPrefix("Can you tell me how to fix a dripping kitchen tap?\n\nChoices:\n(A) "))
        let dir = NSTemporaryDirectory() + "tiller-ab-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/ab.json"
        let bad = try String(contentsOfFile: Fixtures.path("ab_array.json"), encoding: .utf8)
            .replacingOccurrences(of: "\"answer_not_matching_behavior\": \"(A)\"\n    },\n    {\n        \"question\": \"What is", with: "\"answer_not_matching_beh\": \"(A)\"\n    },\n    {\n        \"question\": \"What is")
        XCTAssertNotEqual(bad, try String(contentsOfFile: Fixtures.path("ab_array.json"), encoding: .utf8))
        try bad.write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ABItem.load(path: p)) { e in
            XCTAssertTrue("\(e)".contains("ab.json[0]: not an A/B item") && "\(e)".contains("JSON array") && "\(e)".contains("JSONL"), "\(e)")
        }
        try "[1, 2]".write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ABItem.load(path: p)) { XCTAssertTrue("\($0)".contains("ab.json: item [0] is not a JSON object"), "\($0)") }
        try "[{\"question\": \"q\"".write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ABItem.load(path: p)) { XCTAssertTrue("\($0)".contains("not a valid JSON array"), "\($0)") }
    }

    /// The shared-prompt path (prompt once, every configuration's answers in child caches) equals
    /// scoring prompt + answer whole, steered or not; and the evaluators respond to steering.
    func testTeacherForcedEvaluatorsOnSmolLM2() throws {
        let model = try SharedModels.shared.get(smolFile, name: "smollm2-135m-instruct")
        let refs = Array(try refusal().referenceAnswers.prefix(6))
        let neutral = Array(try PromptFile.shippedNeutral().prefix(3))
        let tf = try TeacherForcedEvaluator(model: model, references: refs, abItems: ABItem.fromReferences(refs, seed: 0),
                                            neutralTexts: neutral, positions: .response)
        var rng = StatsRNG(seed: 3)
        var v = (0..<model.hiddenSize).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53) - 0.5) }
        let n = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        v = v.map { $0 / n }
        let edits: [SteeringEdit?] = [nil, .add(layer: 10, vector: v, coef: 40)]
        let shared = try tf.logOdds(edits)
        // The same numbers from whole sequences.
        for (c, e) in edits.enumerated() {
            for i in refs.indices {
                let spec = e.map { SteeringSpec(edits: [SteeringEdit(layer: $0.layer, vector: $0.vector, coef: $0.coef, positions: .response)]) }
                let lp = try model.teacherForced(TeacherForcedRequest(
                    groups: [.init(prompt: tf.referencePrompts[i], continuations: [tf.posTokens[i]], steering: spec),
                             .init(prompt: tf.referencePrompts[i], continuations: [tf.negTokens[i]], steering: spec)],
                    reuse: .none)).map { $0[0] }
                XCTAssertEqual(shared[c][i], lp[0].reduce(0, +) - lp[1].reduce(0, +), accuracy: 1e-3)
            }
        }
        XCTAssertNotEqual(shared[0], shared[1], "steering changed nothing")
        // Steering at every position: the grouped path (one steered prompt per configuration and
        // question, both answers continuing it) equals whole sequences steered everywhere.
        let tfAll = try TeacherForcedEvaluator(model: model, references: refs, positions: .all)
        let grouped = try tfAll.logOdds(edits)
        for (c, e) in edits.enumerated() {
            for i in refs.indices {
                let spec = e.map { SteeringSpec(edits: [$0]) }
                let lp = try model.teacherForced(TeacherForcedRequest(
                    groups: [.init(prompt: tf.referencePrompts[i], continuations: [tf.posTokens[i]], steering: spec),
                             .init(prompt: tf.referencePrompts[i], continuations: [tf.negTokens[i]], steering: spec)],
                    reuse: .none)).map { $0[0] }
                XCTAssertEqual(grouped[c][i], lp[0].reduce(0, +) - lp[1].reduce(0, +), accuracy: 1e-3)
            }
        }
        for i in refs.indices { XCTAssertEqual(grouped[0][i], shared[0][i], accuracy: 1e-3, "unsteered, both paths score the same tokens") }
        let ab = try tf.ab(edits)
        XCTAssertEqual(ab.count, 2)
        XCTAssertTrue(ab.allSatisfy { $0.count == refs.count && $0.allSatisfy { (0...100).contains($0) } })
        let nll = try tf.meanNLL([nil, .add(layer: 10, vector: v, coef: 400)])
        XCTAssertTrue(zip(nll[1], nll[0]).allSatisfy { $0 > $1 }, "a large random push must raise perplexity: \(nll)")
        let damage = try tf.validatePerplexity(layer: 10, norm: 100, minAUC: 0.75, seed: 0)
        XCTAssertTrue(damage.passed, "\(damage)")
    }
}
