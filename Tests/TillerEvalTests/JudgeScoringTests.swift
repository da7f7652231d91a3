import Foundation
import GRDB
import NIOHTTP1
import XCTest
@testable import TillerEval
import TillerServer

/// The OpenAI judge's scoring modes against loopback endpoints written for each case: a GPT-style
/// tokenizer (one token per number: one call per prompt), a digit-splitting one on a server that
/// continues assistant messages (the digit tree, with exact expected figures), and one on a
/// server that refuses to (the 0–9 scale). The mode is detected once and kept in the cache.
final class JudgeScoringTests: XCTestCase {
    /// One request as the endpoint saw it.
    struct Request: Sendable {
        var prompt: String
        /// The trailing assistant message's content, if any.
        var prefix: String?
        var continueFinal: Bool
        var addGenerationPrompt: Bool?
    }

    /// A loopback endpoint whose answer to each request is `answer(request)`: top log-probabilities
    /// (as probabilities), or an HTTP status to refuse with.
    final class Endpoint: @unchecked Sendable {
        /// `stopped`: the reply ended at once and the server left the end token out of the logprobs.
        enum Reply { case top([(String, Double)]), refuse(Int), stopped }
        let server = HTTPServer()
        private let lock = NSLock()
        private var _requests: [Request] = []
        var requests: [Request] { lock.withLock { _requests } }
        var port = 0

        init(_ answer: @escaping @Sendable (Request) -> Reply) throws {
            port = try server.start(host: "127.0.0.1", port: 0) { [unowned self] req in
                guard let b = (try? JSONSerialization.jsonObject(with: req.body)) as? [String: Any],
                      b["max_tokens"] as? Int == 1, b["logprobs"] as? Bool == true, b["top_logprobs"] as? Int == 20,
                      let msgs = b["messages"] as? [[String: Any]], msgs.first?["role"] as? String == "user",
                      let prompt = msgs.first?["content"] as? String else {
                    return .json(.badRequest, ["error": ["message": "unexpected request"]])
                }
                let prefix = msgs.count == 2 && msgs[1]["role"] as? String == "assistant" ? msgs[1]["content"] as? String : nil
                let r = Request(prompt: prompt, prefix: prefix, continueFinal: b["continue_final_message"] as? Bool ?? false,
                                addGenerationPrompt: b["add_generation_prompt"] as? Bool)
                self.lock.withLock { self._requests.append(r) }
                switch answer(r) {
                case .refuse(let status):
                    return .full(status: HTTPResponseStatus(statusCode: status), headers: [("Content-Type", "application/json")],
                                 body: Data(#"{"error":{"message":"continuing an assistant message is not supported"}}"#.utf8))
                case .stopped:
                    return .json(.ok, ["choices": [["index": 0, "message": ["role": "assistant", "content": ""],
                                                    "logprobs": ["content": [Any]()], "finish_reason": "stop"]]])
                case .top(let top):
                    let entries = top.map { ["token": $0.0, "logprob": log($0.1)] as [String: Any] }
                    let obj: [String: Any] = ["choices": [["index": 0, "message": ["role": "assistant", "content": top[0].0],
                                                           "logprobs": ["content": [["token": top[0].0, "logprob": log(top[0].1), "top_logprobs": entries]]],
                                                           "finish_reason": "length"]]]
                    return .json(.ok, obj)
                }
            }
        }
        deinit { server.shutdown() }

        func judge(store: JudgeCache?) -> OpenAIJudge {
            OpenAIJudge(model: "stub", options: OpenAIJudgeOptions(baseURL: URL(string: "http://127.0.0.1:\(port)/v1")!, apiKey: "k",
                                                                     timeout: 10, maxRetries: 0), store: store)
        }
    }

    static let probe = OpenAIJudge.probe

    func testGPTStyleTokenizerTakesTheOneCallPath() async throws {
        let endpoint = try Endpoint { r in
            if r.prompt == Self.probe { return .top([("50", 0.9), ("5", 0.04), ("Sure", 0.03)]) }
            return .top([("85", 0.6), ("90", 0.3), ("I", 0.05)])
        }
        let cache = try JudgeCache.inMemory()
        let judge = CachedJudge(endpoint.judge(store: cache), cache: cache)
        try await judge.preflight()
        let scoring = try await judge.scoring()
        XCTAssertEqual(scoring, .firstToken)
        let before = endpoint.requests.count
        let answer = try await judge.judge("rate this")
        XCTAssertEqual(answer.score().score!, (85 * 0.6 + 90 * 0.3) / 0.9, accuracy: 1e-9)
        XCTAssertEqual(endpoint.requests.count - before, 1, "one call per prompt")
        XCTAssertTrue(endpoint.requests.allSatisfy { $0.prefix == nil }, "no continuation was ever asked for")
        XCTAssertEqual(try cache.scoring(backend: "openai", model: "stub"), .firstToken)
    }

    /// A digit-splitting tokenizer on a vLLM-style server (continues only with the flags; without
    /// them it opens a new turn, whose first digit is the first call's). Scripted so that every
    /// figure is known. An integer counts when the reply ends after it ("<|im_end|>", or "" where
    /// the server drops special tokens, or nothing at all where it leaves the end token out):
    /// "8" then "." is not 8; "2" (below the cut-off share) is not asked about and is taken to go
    /// on as the first digits kept (8, 7, 1) do. The lists are shorter than the 20 asked for, so
    /// they are the whole distribution and no unlisted digit is estimated.
    func testDigitTreeIsExactOnAScriptedServer() async throws {
        let endpoint = try Endpoint { r in
            let continued = r.prefix != nil && r.continueFinal && r.addGenerationPrompt == false
            if r.prompt == Self.probe {
                return .top(continued ? [("0", 0.95), ("<|im_end|>", 0.04)] : [("5", 0.92), ("Sure", 0.05)])
            }
            guard continued, let prefix = r.prefix else { return .top([("8", 0.5), ("7", 0.3), ("1", 0.1), ("2", 0.00001), ("I", 0.09)]) }
            switch prefix {
            case "8": return .top([("5", 0.5), ("0.", 0.3), ("<|im_end|>", 0.2)])
            case "7": return .top([("0", 0.9), (".", 0.1)])
            case "1": return .top([("0", 0.6), ("5", 0.4)])
            case "85": return .top([("<|im_end|>", 0.9), (".", 0.1)])
            case "70": return .top([("", 0.8), ("%", 0.2)])
            case "10": return .top([("0", 0.5), ("<|im_end|>", 0.5)])
            case "15": return .stopped
            case "100": return .top([("<|im_end|>", 0.7), ("5", 0.3)])
            default: return .refuse(500)
            }
        }
        let cache = try JudgeCache.inMemory()
        let judge = endpoint.judge(store: cache)
        let scoring = try await judge.scoring()
        XCTAssertEqual(scoring, .digitTree(.continueFinalMessage))
        let before = endpoint.requests.count
        let answer = try await judge.judge("rate this")
        let calls = endpoint.requests[before...]
        XCTAssertEqual(Set(calls.map { $0.prefix ?? "" }), ["", "8", "7", "1", "85", "70", "10", "15", "100"], "the branches kept, each asked once")
        XCTAssertEqual(calls.count, 9)
        // 8: .5·.2, 85: .5·.5·.9, 70: .3·.9·.8, 10: .1·.6·.5, 15: .1·.4 (ended at once), 100: .1·.6·.5·.7;
        // "2" (1e-5) goes on as 8, 7 and 1 (probability .9 together) do: ending (.1), "5" (85 and
        // 15: .265), "0" (70 and 10: .246); "00" (100) cannot follow 2.
        let r = 1e-5 / 0.9
        let expected: [Int: Double] = [8: 0.1, 85: 0.225, 70: 0.216, 10: 0.03, 15: 0.04, 100: 0.021,
                                       2: r * 0.1, 25: r * 0.265, 20: r * 0.246]
        XCTAssertEqual(Set(answer.distribution.keys), Set(expected.keys))
        for (k, v) in expected { XCTAssertEqual(answer.distribution[k]!, v, accuracy: 1e-12, "\(k)") }
        let ev = expected.reduce(0.0) { $0 + Double($1.key) * $1.value } / expected.values.reduce(0, +)
        XCTAssertEqual(answer.score().score!, ev, accuracy: 1e-9)
        // The prefix calls are cached: a second judge on the same cache asks nothing.
        let again = endpoint.judge(store: cache)
        let n = endpoint.requests.count
        let second = try await again.judge("rate this")
        XCTAssertEqual(second.score().score!, answer.score().score!, accuracy: 1e-12)
        XCTAssertEqual(endpoint.requests.count, n, "mode and prefix calls came from the cache")
    }

    /// A digit-splitting tokenizer on a server that refuses a trailing assistant message: the 0–9
    /// scale, rescaled to 0–100; the mode is stored, so a second judge on the same cache (a
    /// resumed run) does not detect again; and the report says so.
    func testServerThatRefusesContinuationGetsTheNineScale() async throws {
        let endpoint = try Endpoint { r in
            if r.prefix != nil { return .refuse(400) }
            if r.prompt == Self.probe { return .top([("5", 0.9), ("Sure", 0.05)]) }
            if r.prompt.hasSuffix(DigitTree.scaleInstruction) { return .top([("7", 0.5), ("8", 0.25), (" 9", 0.15), ("10", 0.05)]) }
            return .top([("4", 1)])
        }
        let path = NSTemporaryDirectory() + "judge-scale-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let judge = CachedJudge(endpoint.judge(store: try JudgeCache(path: path)), cache: try JudgeCache(path: path))
        try await judge.preflight()
        let s = try await judge.scoring()
        XCTAssertEqual(s, .digitScale)
        XCTAssertEqual(Set(endpoint.requests.filter { $0.prefix != nil }.map(\.continueFinal)), [true, false], "both continuation styles were tried")
        let answer = try await judge.judge("rate this")
        // 7 → 77.8, 8 → 88.9, 9 → 100 ("10" is not on the scale): expectation 100/9 · (7·.5 + 8·.25 + 9·.15)/.9.
        XCTAssertEqual(answer.mass, 0.9, accuracy: 1e-12)
        XCTAssertEqual(answer.score().score!, 100.0 / 9 * (7 * 0.5 + 8 * 0.25 + 9 * 0.15) / 0.9, accuracy: 1e-9)
        let resumed = endpoint.judge(store: try JudgeCache(path: path))
        let n = endpoint.requests.count
        let again = try await resumed.scoring()
        XCTAssertEqual(again, .digitScale)
        XCTAssertEqual(endpoint.requests.count, n, "the stored mode is used, not detected again")
        XCTAssertEqual(try JudgeCache(path: path).scoring(backend: "openai", model: "stub"), .digitScale)
    }

    /// A cached answer is keyed by how it was read: a digit tree read with another cut-off, or
    /// stored by an older version of the algorithm, is read again, never reused; the same reading
    /// is reused without a call. Scripted so that the cut-off changes the answer: "2" holds 0.17%
    /// of the first digit's integer mass, pruned (and taken to end as its sibling "8" does) at the
    /// default 0.3%, asked about (it goes on to "25") at 0.1%.
    func testCachedAnswersRecordHowTheyWereRead() async throws {
        let endpoint = try Endpoint { r in
            let continued = r.prefix != nil && r.continueFinal && r.addGenerationPrompt == false
            if r.prompt == Self.probe { return .top(continued ? [("0", 0.95), ("<|im_end|>", 0.04)] : [("5", 0.92), ("Sure", 0.05)]) }
            guard continued, let prefix = r.prefix else { return .top([("8", 0.6), ("2", 0.001), ("I", 0.399)]) }
            switch prefix {
            case "8", "25": return .top([("<|im_end|>", 1)])
            case "2": return .top([("5", 1)])
            default: return .refuse(500)
            }
        }
        func judge(_ cache: JudgeCache, cutoff: Double = DigitTree.pruneBelow) -> CachedJudge {
            CachedJudge(OpenAIJudge(model: "stub", options: OpenAIJudgeOptions(baseURL: URL(string: "http://127.0.0.1:\(endpoint.port)/v1")!, apiKey: "k",
                                                                                timeout: 10, maxRetries: 0, digitTreeCutoff: cutoff),
                                    store: cache), cache: cache)
        }
        let path = NSTemporaryDirectory() + "judge-reading-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let cache = try JudgeCache(path: path)

        let pruned = try await judge(cache).judge("rate this")
        XCTAssertEqual(pruned.distribution.keys.sorted(), [2, 8], "\(pruned)")
        let stated = try await judge(cache).reading()
        let reading = try XCTUnwrap(stated)
        XCTAssertEqual(reading.key, "digit tree v\(DigitTree.version) (continue_final_message) cutoff=\(DigitTree.pruneBelow) top_logprobs=20")
        XCTAssertEqual(try cache.lookup(backend: "openai", model: "stub", reading: reading.key, prompt: "rate this"), pruned)

        // Another cut-off: read again (the branch "2" is asked about now), stored beside the first.
        let finer = try await judge(cache, cutoff: 0.001).judge("rate this")
        XCTAssertEqual(finer.distribution.keys.sorted(), [8, 25], "\(finer)")
        XCTAssertTrue(endpoint.requests.contains { $0.prefix == "25" })
        XCTAssertEqual(try cache.count(), 2)
        // The first cut-off again: its answer, with no call.
        var n = endpoint.requests.count
        let again = try await judge(cache).judge("rate this")
        XCTAssertEqual(again, pruned)
        XCTAssertEqual(endpoint.requests.count, n, "the same reading is reused")

        // An answer stored by the previous version of the algorithm is not reused.
        var old = reading
        old.version -= 1
        XCTAssertNotEqual(old.key, reading.key)
        try cache.store(JudgeAnswer(distribution: [50: 1]), backend: "openai", model: "stub", reading: old.key, prompt: "rate that")
        n = endpoint.requests.count
        let current = try await judge(cache).judge("rate that")
        XCTAssertEqual(current, pruned, "read with the current algorithm")
        XCTAssertGreaterThan(endpoint.requests.count, n, "the old version's answer was not reused")

        // A cache written before readings were recorded: a digit tree's answers are kept but never
        // read (their algorithm and cut-off are unknown); the local judge's and a first-token
        // judge's, whose readings have not changed, are still found.
        let legacyPath = NSTemporaryDirectory() + "judge-legacy-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: legacyPath) }
        try await DatabaseQueue(path: legacyPath).write { db in
            try db.execute(sql: "CREATE TABLE judge_cache (backend TEXT NOT NULL, model TEXT NOT NULL, prompt TEXT NOT NULL, distribution TEXT NOT NULL, mass REAL NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (backend, model, prompt))")
            try db.execute(sql: JudgeCache.scoringTable)
            try db.execute(sql: "INSERT INTO judge_scoring VALUES ('openai', 'stub', 'digit tree', 'continue_final_message', 'then')")
            for (b, m) in [("openai", "stub"), ("local", "lj"), ("openai", "gpt")] {
                try db.execute(sql: "INSERT INTO judge_cache VALUES (?, ?, 'rate this', '{\"50\":1}', 1, 'then')", arguments: [b, m])
            }
        }
        let legacy = try JudgeCache(path: legacyPath)
        XCTAssertEqual(try legacy.lookup(backend: "local", model: "lj", reading: JudgeReading(.teacherForced).key, prompt: "rate this")?.distribution, [50: 1])
        XCTAssertEqual(try legacy.lookup(backend: "openai", model: "gpt", reading: JudgeReading(.firstToken, parameters: ["top_logprobs": "20"]).key,
                                         prompt: "rate this")?.distribution, [50: 1])
        n = endpoint.requests.count
        let reread = try await judge(legacy).judge("rate this")
        XCTAssertEqual(reread, pruned)
        XCTAssertGreaterThan(endpoint.requests.count, n, "the unrecorded digit-tree answer was read again")
        XCTAssertEqual(try legacy.count(), 4, "the old answers stay in the file")
    }

    /// Answers cached before modes existed were first-token scores: an old cache keeps that mode.
    func testCacheWithoutAStoredModeKeepsFirstToken() async throws {
        let cache = try JudgeCache.inMemory()
        try cache.store(JudgeAnswer(distribution: [5: 1]), backend: "openai", model: "old", reading: "", prompt: "p")
        XCTAssertEqual(try cache.scoring(backend: "openai", model: "old"), .firstToken)
        XCTAssertNil(try cache.scoring(backend: "openai", model: "new"))
        XCTAssertEqual(try cache.storeScoring(.digitScale, backend: "openai", model: "new"), .digitScale)
        XCTAssertEqual(try cache.storeScoring(.firstToken, backend: "openai", model: "new"), .digitScale, "the first stored mode holds")
    }

    func testDigitTreeSteps() {
        // Root: leading whitespace skipped; a word, "05" and "3\n" are no integer reply.
        let root = DigitTree.step(prefix: "", probability: 1, next: [(" 8", log(0.4)), ("Sure", log(0.3)), ("05", log(0.1)), ("3\n", log(0.2))])
        XCTAssertEqual(root.children, ["8": 0.4])
        XCTAssertTrue(root.ended.isEmpty)
        // After "10": "0" makes 100, "5" would make 105 (lost), the end token ends at 10, "." is lost.
        let ten = DigitTree.step(prefix: "10", probability: 0.5, next: [("0", log(0.5)), ("5", log(0.2)), ("<end_of_turn>", log(0.2)), (".", log(0.1))])
        XCTAssertEqual(ten.children.keys.sorted(), ["100"])
        XCTAssertEqual(ten.children["100"]!, 0.25, accuracy: 1e-12)
        XCTAssertEqual(ten.ended.keys.sorted(), [10])
        XCTAssertEqual(ten.ended[10]!, 0.1, accuracy: 1e-12)
        // A full list (as long as asked for) hides digits less likely than its last token: each
        // unlisted first digit gets that token's probability, at most an even share of the rest.
        let full: TopLogprobs = [("7", log(0.3)), ("The", log(0.2)), ("8", log(0.1)), ("I", log(0.04))]
        let cut = DigitTree.step(prefix: "", probability: 1, next: full, asked: 4)
        XCTAssertEqual(cut.children.keys.sorted(), (0...9).map(String.init))
        XCTAssertEqual(cut.children["7"]!, 0.3, accuracy: 1e-12)
        XCTAssertEqual(cut.children["3"]!, 0.04, accuracy: 1e-12)
        XCTAssertEqual(DigitTree.step(prefix: "", probability: 1, next: full, asked: 5).children.keys.sorted(), ["7", "8"], "a shorter list is all there is")
        let thin = DigitTree.step(prefix: "", probability: 1, next: [("7", log(0.9)), ("8", log(0.08))], asked: 2)
        XCTAssertEqual(thin.children["0"]!, 0.02 / 8, accuracy: 1e-12, "the unlisted share the mass the list leaves")
        // After "10" only "100" can follow: unlisted, it is estimated; after "85" nothing can.
        XCTAssertEqual(DigitTree.step(prefix: "10", probability: 0.5, next: [(".", log(0.5)), ("<|im_end|>", log(0.1))], asked: 2).children["100"]!,
                       0.5 * 0.1, accuracy: 1e-12)
        XCTAssertTrue(DigitTree.step(prefix: "85", probability: 0.5, next: [(".", log(0.5)), ("<|im_end|>", log(0.1))], asked: 2).children.isEmpty)
        XCTAssertTrue(DigitTree.endsReply("") && DigitTree.endsReply("<|im_end|>") && DigitTree.endsReply("</s>"))
        XCTAssertFalse(DigitTree.endsReply("<") || DigitTree.endsReply(".") || DigitTree.endsReply("\n"))
        // Pruned branches go on as the kept branches of their depth that can go on the same ways:
        // "37" as "85" (not as "10", which can become 100), "2" as "8" and "1" (not as "0").
        var dist: [Int: Double] = [8: 0.1, 85: 0.15, 10: 0.01, 100: 0.05, 0: 0.08]
        DigitTree.estimatePruned(["37": 0.002, "2": 0.01], kept: ["8": 0.5, "1": 0.3, "0": 0.1, "85": 0.2, "10": 0.2], into: &dist)
        let estimated: [Int: Double] = [37: 0.002 / 0.2 * 0.15, 2: 0.01 / 0.8 * 0.1, 25: 0.01 / 0.8 * 0.15, 20: 0.01 / 0.8 * 0.01]
        XCTAssertEqual(Set(dist.keys), Set([8, 85, 10, 100, 0] + Array(estimated.keys)))
        for (k, v) in estimated { XCTAssertEqual(dist[k]!, v, accuracy: 1e-15, "\(k)") }
        XCTAssertEqual(dist[85]!, 0.15, "kept branches are left as they are")
        var lonely: [Int: Double] = [5: 0.1]
        DigitTree.estimatePruned(["42": 0.01], kept: ["5": 0.2, "10": 0.05], into: &lonely)
        XCTAssertEqual(lonely, [5: 0.1], "no peer of its shape: the branch is dropped")
        // The 0–9 scale keeps mass and expectation exactly.
        let d = DigitTree.rescaleDigits([("5", log(0.6)), ("9", log(0.4))])
        XCTAssertEqual(d.values.reduce(0, +), 1, accuracy: 1e-12)
        XCTAssertEqual(d.reduce(0.0) { $0 + Double($1.key) * $1.value }, 100.0 / 9 * (5 * 0.6 + 9 * 0.4), accuracy: 1e-9)
    }
}
