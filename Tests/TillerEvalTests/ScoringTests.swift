import Foundation
import XCTest
@testable import TillerEval

final class ScoringTests: XCTestCase {
    func testIntegerAnswers() {
        XCTAssertEqual(Scoring.integerAnswer("42"), 42)
        XCTAssertEqual(Scoring.integerAnswer(" 7"), 7)
        XCTAssertEqual(Scoring.integerAnswer("Ġ100"), 100)
        XCTAssertEqual(Scoring.integerAnswer("▁0"), 0)
        XCTAssertNil(Scoring.integerAnswer("101"))
        XCTAssertNil(Scoring.integerAnswer("07"))
        XCTAssertNil(Scoring.integerAnswer("4.5"))
        XCTAssertNil(Scoring.integerAnswer("-3"))
        XCTAssertNil(Scoring.integerAnswer("The"))
        XCTAssertNil(Scoring.integerAnswer(""))
        XCTAssertNil(Scoring.integerAnswer("٣"))  // a digit, but not an ASCII one
    }

    func testWeightedScoreIsTheExpectationOverIntegers() {
        let s = Scoring.weighted([(0, 0.2), (50, 0.2), (100, 0.4)])
        XCTAssertEqual(s.mass, 0.8, accuracy: 1e-12)
        XCTAssertEqual(s.score!, (50 * 0.2 + 100 * 0.4) / 0.8, accuracy: 1e-12)
        XCTAssertEqual(s.mode, 100)
    }

    func testLowMassGivesNoScoreNotZero() {
        let s = Scoring.weighted([(0, 0.1), (10, 0.1)])
        XCTAssertNil(s.score)
        XCTAssertEqual(s.mass, 0.2, accuracy: 1e-12)
        XCTAssertEqual(Scoring.weighted([(0, 0.1), (10, 0.1)], minMass: 0.15).score!, 5, accuracy: 1e-12)
        XCTAssertNil(Scoring.weighted([]).score)
    }

    func testTopLogprobsMergeSpellingsAndIgnoreWords() {
        let top: [(token: String, logprob: Double)] = [("5", log(0.3)), (" 5", log(0.1)), ("80", log(0.2)), ("I", log(0.3)), ("0", log(0.05))]
        let s = Scoring.fromTopLogprobs(top)
        XCTAssertEqual(s.distribution[5]!, 0.4, accuracy: 1e-12)
        XCTAssertEqual(s.mass, 0.65, accuracy: 1e-12)
        XCTAssertEqual(s.score!, (5 * 0.4 + 80 * 0.2) / 0.65, accuracy: 1e-9)
    }

    func testPromptFillingIsOnePass() throws {
        let p = try JudgePrompts.defaults()
        let text = p.traitPrompt(trait: "refusal", definition: "declines {{question}}", question: "Q?", answer: "A {{answer}}")
        XCTAssertTrue(text.contains("declines {{question}}"), "a value is never re-scanned")
        XCTAssertTrue(text.contains("A {{answer}}"))
        XCTAssertTrue(text.contains("Q?"))
        XCTAssertFalse(text.hasPrefix("\n"))
        let c = p.coherencePrompt(question: "Q?", answer: "A.")
        XCTAssertTrue(c.contains("offensive answer can still be perfectly coherent"))
    }

    func testPromptOverridesAndValidation() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tiller-prompts-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "Is {{answer}} coherent given {{question}}? 0-100".write(toFile: dir + "/coherence.txt", atomically: true, encoding: .utf8)
        let p = try JudgePrompts.load(directory: dir)
        XCTAssertEqual(p.coherencePrompt(question: "q", answer: "a"), "Is a coherent given q? 0-100")
        XCTAssertEqual(p.trait, try JudgePrompts.defaults().trait, "files not overridden come from the defaults")

        try "Rate {{answer}}".write(toFile: dir + "/relevance.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try JudgePrompts.load(directory: dir)) { e in
            XCTAssertTrue("\(e)".contains("{{question}}"), "\(e)")
        }
        try "Rate {{answer}} for {{question}} by {{judge}}".write(toFile: dir + "/relevance.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try JudgePrompts.load(directory: dir)) { e in XCTAssertTrue("\(e)".contains("{{judge}}"), "\(e)") }
        XCTAssertThrowsError(try JudgePrompts.load(directory: dir + "/nope"))
    }

    func testJudgeSpecParsing() throws {
        XCTAssertEqual(try JudgeSpec(parsing: "openai:gpt-4.1-mini"), JudgeSpec(backend: .openai, model: "gpt-4.1-mini"))
        XCTAssertEqual(try JudgeSpec(parsing: "local:smollm2-135m-instruct").backend, .local)
        XCTAssertThrowsError(try JudgeSpec(parsing: "gpt-4"))
        XCTAssertThrowsError(try JudgeSpec(parsing: "remote:x"))
        XCTAssertThrowsError(try JudgeSpec(parsing: "openai:"))
    }

    func testCacheStoresDistributionAndRecomputesScore() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("judge-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let cache = try JudgeCache(path: path)
        let a = JudgeAnswer(distribution: [10: 0.1, 90: 0.1])
        XCTAssertNil(try cache.lookup(backend: "openai", model: "m", reading: "r", prompt: "p"))
        try cache.store(a, backend: "openai", model: "m", reading: "r", prompt: "p")
        let b = try XCTUnwrap(try JudgeCache(path: path).lookup(backend: "openai", model: "m", reading: "r", prompt: "p"))
        XCTAssertEqual(b, a)
        XCTAssertNil(b.score().score, "mass 0.2 < 0.25: missing, not 0")
        XCTAssertEqual(b.score(minMass: 0.1).score!, 50, accuracy: 1e-9)
        XCTAssertNil(try cache.lookup(backend: "local", model: "m", reading: "r", prompt: "p"), "backend is part of the key")
        XCTAssertNil(try cache.lookup(backend: "openai", model: "m2", reading: "r", prompt: "p"), "model is part of the key")
        XCTAssertNil(try cache.lookup(backend: "openai", model: "m", reading: "r2", prompt: "p"), "the reading is part of the key")
    }

    func testOpenAIParsing() throws {
        let ok = #"{"choices":[{"logprobs":{"content":[{"token":"7","logprob":-0.1,"top_logprobs":[{"token":"7","logprob":-0.1},{"token":"x","logprob":-3}]}]}}]}"#
        let a = OpenAIJudge.integerMass(try OpenAIJudge.parseTop(Data(ok.utf8)))
        XCTAssertEqual(a[7]!, exp(-0.1), accuracy: 1e-12)
        for bad in ["garbage", "{}", #"{"choices":[]}"#, #"{"choices":[{"message":{"content":"7"}}]}"#,
                    #"{"choices":[{"logprobs":{"content":[{"token":"7","top_logprobs":[{"token":"7"}]}]}}]}"#,
                    #"{"choices":[{"logprobs":{"content":[{"token":"7","top_logprobs":[{"token":"7","logprob":2.0}]}]}}]}"#] {
            XCTAssertThrowsError(try OpenAIJudge.parseTop(Data(bad.utf8))) { e in
                guard case JudgeError.malformed = e else { return XCTFail("\(bad): \(e)") }
            }
        }
    }

    func testOptionsNeverShowTheKey() throws {
        let o = try OpenAIJudgeOptions.fromEnvironment(baseURL: nil, apiKey: nil,
                                                       environment: ["OPENAI_API_KEY": "sk-very-secret", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"])
        XCTAssertEqual(o.apiKey, "sk-very-secret")
        XCTAssertEqual(o.baseURL.absoluteString, "http://127.0.0.1:9/v1")
        XCTAssertFalse(o.description.contains("secret"))
        XCTAssertFalse(String(reflecting: OpenAIJudge(model: "m", options: o).options).contains("secret"))
        XCTAssertThrowsError(try OpenAIJudgeOptions.fromEnvironment(baseURL: "ftp://x", apiKey: nil, environment: [:]))
    }
}
