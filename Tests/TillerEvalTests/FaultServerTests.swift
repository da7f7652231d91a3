import Foundation
import NIOHTTP1
import XCTest
@testable import TillerEval
import TillerServer

/// The OpenAI judge against a real loopback HTTP server that misbehaves on purpose: 429, 500,
/// timeouts, garbage. Every scenario is bounded (a few attempts, sub-second backoffs).
final class FaultServerTests: XCTestCase {
    /// Per prompt, the responses the server gives in turn (the last one repeats).
    final class Script: @unchecked Sendable {
        enum Step { case status(Int, retryAfter: String?), hang(Double), garbage, noLogprobs, ok([String: Double]) }
        private let lock = NSLock()
        private var steps: [String: [Step]] = [:]
        private(set) var hits: [String: Int] = [:]
        private(set) var authorization: Set<String> = []
        func set(_ prompt: String, _ s: [Step]) { lock.withLock { steps[prompt] = s } }
        func next(_ prompt: String, auth: String?) -> Step {
            lock.withLock {
                if let auth { authorization.insert(auth) }
                let n = hits[prompt, default: 0]
                hits[prompt] = n + 1
                let s = steps[prompt] ?? [.status(404, retryAfter: nil)]
                return s[min(n, s.count - 1)]
            }
        }
        func count(_ prompt: String) -> Int { lock.withLock { hits[prompt, default: 0] } }
    }

    static func completion(_ top: [String: Double]) -> Data {
        let entries = top.map { ["token": $0.key, "logprob": log($0.value)] as [String: Any] }
        let obj: [String: Any] = ["id": "x", "object": "chat.completion",
                                  "choices": [["index": 0, "message": ["role": "assistant", "content": top.first!.key],
                                               "logprobs": ["content": [["token": top.first!.key, "logprob": -0.1, "top_logprobs": entries]]],
                                               "finish_reason": "length"]]]
        return try! JSONSerialization.data(withJSONObject: obj)
    }

    var server: HTTPServer!
    var script: Script!
    var port = 0

    override func setUpWithError() throws {
        script = Script()
        server = HTTPServer()
        let script = self.script!
        port = try server.start(host: "127.0.0.1", port: 0) { req in
            let body = (try? JSONSerialization.jsonObject(with: req.body)) as? [String: Any]
            // The judge's request must be what the issue asks for.
            guard let b = body, b["max_tokens"] as? Int == 1, b["temperature"] as? Int == 0, b["logprobs"] as? Bool == true,
                  b["top_logprobs"] as? Int == 20, let msgs = b["messages"] as? [[String: Any]], let prompt = msgs.first?["content"] as? String else {
                return .json(.badRequest, ["error": ["message": "unexpected request"]])
            }
            switch script.next(prompt, auth: req.headers.first(name: "Authorization")) {
            case .status(let s, let after):
                var h = [("Content-Type", "application/json")]
                if let after { h.append(("Retry-After", after)) }
                return .full(status: HTTPResponseStatus(statusCode: s), headers: h, body: Data(#"{"error":{"message":"scripted \#(s)"}}"#.utf8))
            case .hang(let seconds):
                try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                return .json(.ok, ["late": true])
            case .garbage:
                return .full(status: .ok, headers: [("Content-Type", "application/json")], body: Data("}{ not json at all".utf8))
            case .noLogprobs:
                return .json(.ok, ["choices": [["index": 0, "message": ["role": "assistant", "content": "7"]]]])
            case .ok(let top):
                return .full(status: .ok, headers: [("Content-Type", "application/json")], body: Self.completion(top))
            }
        }
    }

    override func tearDown() { server.shutdown() }

    /// The transport under test: the scoring mode is given (first-token), so no detection request
    /// mixes with the scripted ones (JudgeScoringTests covers detection).
    func judge(retries: Int = 3, timeout: Double = 0.5) -> OpenAIJudge {
        OpenAIJudge(model: "fault-model", options: OpenAIJudgeOptions(
            baseURL: URL(string: "http://127.0.0.1:\(port)/v1")!, apiKey: "sk-test-secret-123", maxConcurrent: 4,
            timeout: timeout, maxRetries: retries, backoffBase: 0.02, backoffMax: 0.2), scoring: .firstToken)
    }

    func testRetriesOn429And500ThenSucceeds() async throws {
        script.set("a", [.status(429, retryAfter: "0"), .status(500, retryAfter: nil), .status(503, retryAfter: nil), .ok(["80": 0.5, "90": 0.5])])
        let j = judge()
        let ans = try await j.judge("a")
        XCTAssertEqual(ans.score().score!, 85, accuracy: 1e-9)
        XCTAssertEqual(script.count("a"), 4)
        XCTAssertEqual(j.stats.retries, 3)
        XCTAssertEqual(script.authorization, ["Bearer sk-test-secret-123"], "the key is sent, as a bearer token")
    }

    func testTimeoutIsRetried() async throws {
        script.set("t", [.hang(2.0), .ok(["10": 1.0])])
        let start = Date()
        let ans = try await judge(timeout: 0.4).judge("t")
        XCTAssertEqual(ans.score().score!, 10, accuracy: 1e-9)
        XCTAssertEqual(script.count("t"), 2)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.0, "the hung attempt was abandoned at the timeout")
    }

    func testGiveUpAfterRetriesAndStoreNothing() async throws {
        script.set("down", [.status(503, retryAfter: nil)])
        let cache = try JudgeCache.inMemory()
        let j = CachedJudge(judge(retries: 2), cache: cache)
        do {
            _ = try await j.judge("down")
            XCTFail("should fail")
        } catch let e as JudgeError {
            guard case .http(503, let m) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("3 attempts"), m)
            XCTAssertFalse(e.description.contains("sk-test-secret"), "the key never appears in errors")
        }
        XCTAssertEqual(script.count("down"), 3)
        XCTAssertEqual(try cache.count(), 0)
    }

    func testGarbageIsAnItemErrorNotRetriedNotStored() async throws {
        script.set("g", [.garbage, .ok(["50": 1])])
        script.set("n", [.noLogprobs])
        let cache = try JudgeCache.inMemory()
        let j = CachedJudge(judge(), cache: cache)
        for p in ["g", "n"] {
            do {
                _ = try await j.judge(p)
                XCTFail("should fail")
            } catch let e as JudgeError {
                guard case .malformed = e else { return XCTFail("\(e)") }
            }
            XCTAssertEqual(script.count(p), 1, "a malformed answer is not retried")
        }
        XCTAssertEqual(try cache.count(), 0, "nothing wrong is stored")
    }

    func testClientErrorsAreNotRetried() async throws {
        script.set("bad", [.status(401, retryAfter: nil), .ok(["1": 1])])
        do { _ = try await judge().judge("bad"); XCTFail("should fail") } catch let e as JudgeError {
            guard case .http(401, _) = e else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(script.count("bad"), 1)
    }

    func testCacheAvoidsSecondCallAndScorerIsolatesFailures() async throws {
        let prompts = try JudgePrompts(trait: "T {{trait}} {{definition}} {{question}} {{answer}}",
                                       coherence: "C {{question}} {{answer}}", relevance: "R {{question}} {{answer}}")
        // Item 1: fine and on topic. Item 2: off topic (relevance 10) so coherence is capped at 50.
        // Item 3: the trait judge answers garbage. Item 4: the trait judge answers with words only.
        script.set("T x d q1 a1", [.ok(["70": 1])])
        script.set("C q1 a1", [.ok(["90": 1])])
        script.set("R q1 a1", [.ok(["95": 1])])
        script.set("T x d q2 a2", [.ok(["20": 1])])
        script.set("C q2 a2", [.ok(["90": 0.5, "80": 0.5])])
        script.set("R q2 a2", [.ok(["10": 1])])
        script.set("T x d q3 a3", [.garbage])
        script.set("C q3 a3", [.ok(["60": 1])])
        script.set("R q3 a3", [.ok(["60": 1])])
        script.set("T x d q4 a4", [.ok(["I": 0.9, "5": 0.05])])
        script.set("C q4 a4", [.ok(["60": 1])])
        script.set("R q4 a4", [.ok(["60": 1])])
        let cache = try JudgeCache.inMemory()
        let scorer = JudgeScorer(judge: CachedJudge(judge(), cache: cache), prompts: prompts)
        let items = (1...4).map { JudgeItem(trait: "x", definition: "d", question: "q\($0)", answer: "a\($0)") }
        let r = await scorer.score(items)
        XCTAssertEqual(try r[0].trait.get().score!, 70, accuracy: 1e-9)
        XCTAssertEqual(try r[0].coherence!.get().score!, 90, accuracy: 1e-9)
        XCTAssertFalse(try r[0].coherence!.get().offTopic)
        XCTAssertEqual(try r[1].coherence!.get().raw.score!, 85, accuracy: 1e-9)
        XCTAssertEqual(try r[1].coherence!.get().score!, 50, accuracy: 1e-9, "off-topic coherence is capped at 50")
        XCTAssertThrowsError(try r[2].trait.get())
        XCTAssertEqual(try r[2].coherence!.get().score!, 60, accuracy: 1e-9, "one failure does not take the item's other scores")
        XCTAssertNil(try r[3].trait.get().score, "mass 0.05 on integers: missing, never 0")
        let stored = try cache.count()
        XCTAssertEqual(stored, 11, "every answer but the garbage one is cached")
        let before = script.count("T x d q1 a1")
        _ = await scorer.score(items)
        XCTAssertEqual(script.count("T x d q1 a1"), before, "a re-run is served from the cache")
        XCTAssertEqual(script.count("T x d q3 a3"), 2, "the failed item is asked again")
    }
}
