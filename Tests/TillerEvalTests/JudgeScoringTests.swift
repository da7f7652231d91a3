import Foundation
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
        enum Reply { case top([(String, Double)]), refuse(Int) }
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
    /// figure is known: after "8": "5" 0.5, "0." 0.3, end 0.2; after "7": "0" 0.9, "." 0.1;
    /// "2" (below the cut-off share) is dropped; "10" continues to "100" or ends.
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
            case "10": return .top([("0", 0.5), ("<|im_end|>", 0.5)])
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
        XCTAssertEqual(Set(calls.map { $0.prefix ?? "" }), ["", "8", "7", "1", "10"], "the branches kept, each asked once")
        XCTAssertEqual(calls.count, 5)
        // 85: .5·.5, 80: .5·.3 ("0." ends the number), 8: .5·.2, 70: .3·.9, 7: .3·.1,
        // 15: .1·.4, 100: .1·.6·.5, 10: .1·.6·.5.
        let expected: [Int: Double] = [85: 0.25, 80: 0.15, 8: 0.1, 70: 0.27, 7: 0.03, 15: 0.04, 100: 0.03, 10: 0.03]
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

    /// Answers cached before modes existed were first-token scores: an old cache keeps that mode.
    func testCacheWithoutAStoredModeKeepsFirstToken() async throws {
        let cache = try JudgeCache.inMemory()
        try cache.store(JudgeAnswer(distribution: [5: 1]), backend: "openai", model: "old", prompt: "p")
        XCTAssertEqual(try cache.scoring(backend: "openai", model: "old"), .firstToken)
        XCTAssertNil(try cache.scoring(backend: "openai", model: "new"))
        XCTAssertEqual(try cache.storeScoring(.digitScale, backend: "openai", model: "new"), .digitScale)
        XCTAssertEqual(try cache.storeScoring(.firstToken, backend: "openai", model: "new"), .digitScale, "the first stored mode holds")
    }

    func testDigitTreeSteps() {
        // Root: leading whitespace skipped; a word is no integer; "05" is no integer.
        let root = DigitTree.step(prefix: "", probability: 1, next: [(" 8", log(0.4)), ("Sure", log(0.3)), ("05", log(0.1)), ("3\n", log(0.2))])
        XCTAssertEqual(root.children, ["8": 0.4])
        XCTAssertEqual(root.ended.keys.sorted(), [3])
        XCTAssertEqual(root.ended[3]!, 0.2, accuracy: 1e-12)
        // After "10": "0" makes 100, "5" would make 105 (lost), the rest ends at 10.
        let ten = DigitTree.step(prefix: "10", probability: 0.5, next: [("0", log(0.5)), ("5", log(0.2))])
        XCTAssertEqual(ten.children["100"]!, 0.25, accuracy: 1e-12)
        XCTAssertEqual(ten.ended[10]!, 0.15, accuracy: 1e-12)
        XCTAssertEqual(ten.ended.count, 1)
        XCTAssertTrue(DigitTree.expands("9") && DigitTree.expands("10"))
        XCTAssertFalse(DigitTree.expands("0") || DigitTree.expands("11") || DigitTree.expands("100"))
        // The 0–9 scale keeps mass and expectation exactly.
        let d = DigitTree.rescaleDigits([("5", log(0.6)), ("9", log(0.4))])
        XCTAssertEqual(d.values.reduce(0, +), 1, accuracy: 1e-12)
        XCTAssertEqual(d.reduce(0.0) { $0 + Double($1.key) * $1.value }, 100.0 / 9 * (5 * 0.6 + 9 * 0.4), accuracy: 1e-9)
    }
}
