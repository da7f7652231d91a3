import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Settings of the OpenAI-compatible judge. The key is held only in memory: `description` and
/// errors never show it, and the cache key does not include it.
public struct OpenAIJudgeOptions: Sendable, CustomStringConvertible {
    /// e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1 (`/chat/completions` is appended).
    public var baseURL: URL
    public var apiKey: String?
    /// Requests in flight at once.
    public var maxConcurrent: Int
    /// Per-attempt limit, seconds.
    public var timeout: Double
    /// Retries after the first attempt (429, 5xx, network errors and timeouts only).
    public var maxRetries: Int
    /// Backoff before retry n (0-based) is drawn from [d/2, d] with d = min(backoffMax, backoffBase·2ⁿ);
    /// a Retry-After header, when present, is used instead (capped at backoffMax).
    public var backoffBase: Double
    public var backoffMax: Double
    public var topLogprobs: Int
    /// Digit tree: branches below this share of the first token's integer mass are not asked
    /// about; their mass is estimated from the branches kept (`DigitTree.estimatePruned`).
    public var digitTreeCutoff: Double

    public init(baseURL: URL = URL(string: "https://api.openai.com/v1")!, apiKey: String? = nil, maxConcurrent: Int = 8,
                timeout: Double = 60, maxRetries: Int = 5, backoffBase: Double = 0.5, backoffMax: Double = 30,
                topLogprobs: Int = 20, digitTreeCutoff: Double = DigitTree.pruneBelow) {
        self.digitTreeCutoff = digitTreeCutoff
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.maxConcurrent = maxConcurrent
        self.timeout = timeout
        self.maxRetries = maxRetries
        self.backoffBase = backoffBase
        self.backoffMax = backoffMax
        self.topLogprobs = topLogprobs
    }

    /// Base URL and key from the environment when not given: TILLER_JUDGE_BASE_URL or
    /// OPENAI_BASE_URL; TILLER_JUDGE_API_KEY or OPENAI_API_KEY.
    public static func fromEnvironment(baseURL: String?, apiKey: String?,
                                       environment: [String: String] = ProcessInfo.processInfo.environment) throws -> OpenAIJudgeOptions {
        let urlText = baseURL ?? environment["TILLER_JUDGE_BASE_URL"] ?? environment["OPENAI_BASE_URL"] ?? "https://api.openai.com/v1"
        guard let url = URL(string: urlText), let scheme = url.scheme, scheme == "http" || scheme == "https", url.host != nil else {
            throw JudgeError.configuration("judge base URL \"\(urlText)\" is not an http(s) URL")
        }
        let key = apiKey ?? environment["TILLER_JUDGE_API_KEY"] ?? environment["OPENAI_API_KEY"]
        return OpenAIJudgeOptions(baseURL: url, apiKey: key?.isEmpty == true ? nil : key)
    }

    public var description: String {
        "OpenAIJudgeOptions(baseURL: \(baseURL.absoluteString), apiKey: \(apiKey == nil ? "none" : "set (hidden)"), maxConcurrent: \(maxConcurrent), timeout: \(timeout)s, maxRetries: \(maxRetries))"
    }
}

/// A first token's top log-probabilities, as an endpoint returned them.
public typealias TopLogprobs = [(token: String, logprob: Double)]

/// A judge on any OpenAI-compatible chat-completions endpoint: one user message, `max_tokens` 1,
/// `temperature` 0, `logprobs` with `top_logprobs` 20. How the reply's log-probabilities become a
/// score depends on the server and its model's tokenizer (`JudgeScoringMode`), detected once per
/// judge by `scoring()` and stored in the judge cache:
/// - first-token 0–100: the tokens spelling 0…100 among the first token's top log-probabilities
///   (GPT-4-style tokenizers, one token per number);
/// - digit tree: tokenizers that spell numbers one digit a token; the first digit from the first
///   call, each further digit by continuing an assistant message that holds the digits so far
///   (`DigitTree`);
/// - 0–9 scale: such a tokenizer on a server that cannot continue an assistant message (the
///   OpenAI API itself): the question asked on 0–9 and the answer rescaled to 0–100.
public final class OpenAIJudge: Judge, @unchecked Sendable {
    public let backend = "openai"
    public let model: String
    public let options: OpenAIJudgeOptions
    private let session: URLSession
    private let limiter: ConcurrencyLimiter
    /// Where the scoring mode and the digit tree's prefix calls are kept (the judge cache).
    let store: JudgeCache?
    /// Counters for tests and reports.
    public let stats = Stats()
    private let modeLock = NSLock()
    private var mode: JudgeScoring?
    private var detecting: Task<JudgeScoring, Error>?

    public final class Stats: @unchecked Sendable {
        private let lock = NSLock()
        private var _attempts = 0, _retries = 0
        public var attempts: Int { lock.withLock { _attempts } }
        public var retries: Int { lock.withLock { _retries } }
        func attempt(retry: Bool) { lock.withLock { _attempts += 1; if retry { _retries += 1 } } }
    }

    /// `scoring`: the mode to use without detecting it (tests, or a caller that knows its server).
    public init(model: String, options: OpenAIJudgeOptions, store: JudgeCache? = nil, scoring: JudgeScoring? = nil) {
        self.model = model
        self.options = options
        self.store = store
        self.mode = scoring
        let config = URLSessionConfiguration.ephemeral
        // The precise per-attempt limit is `withDeadline`; Foundation's own timeouts on Linux round
        // sub-second values badly, so they are only a whole-second backstop here.
        let backstop = max(1, options.timeout.rounded(.up)) + 1
        config.timeoutIntervalForRequest = backstop
        config.timeoutIntervalForResource = backstop
        config.httpMaximumConnectionsPerHost = max(options.maxConcurrent, 1)
        config.urlCache = nil
        session = URLSession(configuration: config)
        limiter = ConcurrencyLimiter(max(options.maxConcurrent, 1))
    }

    deinit { session.invalidateAndCancel() }

    var endpoint: URL { options.baseURL.appendingPathComponent("chat/completions") }

    /// The request for the first token of the reply to `prompt`, or (with `prefix`) for the token
    /// after an assistant message holding `prefix`, asked to continue it in `style`.
    func requestBody(_ prompt: String, prefix: String? = nil, style: ContinuationStyle? = nil) throws -> Data {
        var messages: [[String: Any]] = [["role": "user", "content": prompt]]
        var body: [String: Any] = [
            "model": model,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": true,
            "top_logprobs": options.topLogprobs,
        ]
        if let prefix, !prefix.isEmpty {
            messages.append(["role": "assistant", "content": prefix])
            if style == .continueFinalMessage {
                body["continue_final_message"] = true
                body["add_generation_prompt"] = false
            }
        }
        body["messages"] = messages
        return try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    }

    /// One call: the top log-probabilities of the next token.
    func call(_ prompt: String, prefix: String? = nil, style: ContinuationStyle? = nil) async throws -> TopLogprobs {
        let body = try requestBody(prompt, prefix: prefix, style: style)
        return try await limiter.run { try await self.send(body) }
    }

    /// `call` through the prefix cache (prefix "" is the first call).
    func cachedCall(_ prompt: String, prefix: String, style: ContinuationStyle) async throws -> TopLogprobs {
        if let store, let hit = try? store.lookupPrefix(backend: backend, model: model, prompt: prompt, prefix: prefix) { return hit }
        let top = try await call(prompt, prefix: prefix, style: style)
        do { try store?.storePrefix(top, backend: backend, model: model, prompt: prompt, prefix: prefix) } catch {
            FileHandle.standardError.write(Data("warning: judge prefix cache write failed: \(error)\n".utf8))
        }
        return top
    }

    public func judge(_ prompt: String) async throws -> JudgeAnswer {
        guard let scoring = try await scoring() else { throw JudgeError.configuration("openai judge \(model): no scoring mode") }
        switch scoring.mode {
        case .firstToken:
            return JudgeAnswer(distribution: Self.integerMass(try await call(prompt)))
        case .digitScale:
            return JudgeAnswer(distribution: DigitTree.rescaleDigits(try await call(prompt + DigitTree.scaleInstruction)))
        case .digitTree:
            return try await digitTree(prompt, style: scoring.continuation!)
        case .teacherForced:
            throw JudgeError.configuration("openai judge \(model): teacher-forced scoring needs a local judge")
        }
    }

    /// The tokens spelling 0…100 among a first token's top log-probabilities, as probabilities.
    static func integerMass(_ top: TopLogprobs) -> [Int: Double] {
        var dist: [Int: Double] = [:]
        for (t, l) in top { if let a = Scoring.integerAnswer(t) { dist[a, default: 0] += Foundation.exp(l) } }
        return dist
    }

    /// The digit tree of `prompt`'s reply (see `DigitTree`): level by level, every prefix kept is
    /// continued, each level's calls at once; the branches below the cut-off get their mass from
    /// the kept ones (`DigitTree.estimatePruned`).
    func digitTree(_ prompt: String, style: ContinuationStyle) async throws -> JudgeAnswer {
        let asked = options.topLogprobs
        var level = DigitTree.step(prefix: "", probability: 1, next: try await cachedCall(prompt, prefix: "", style: style), asked: asked).children
        var dist: [Int: Double] = [:], kept: [String: Double] = [:], pruned: [String: Double] = [:]
        let cut = options.digitTreeCutoff * level.values.reduce(0, +)
        while !level.isEmpty {
            let now = level.filter { $0.value >= cut }.sorted { $0.key < $1.key }
            for (s, p) in level where p < cut { pruned[s] = p }
            for (s, p) in now { kept[s] = p }
            let answers = try await withThrowingTaskGroup(of: (String, Double, TopLogprobs).self) { group in
                for (s, p) in now { group.addTask { (s, p, try await self.cachedCall(prompt, prefix: s, style: style)) } }
                var out: [(String, Double, TopLogprobs)] = []
                for try await r in group { out.append(r) }
                return out
            }
            level = [:]
            // In prefix order, so the sums do not depend on which call came back first.
            for (s, p, next) in answers.sorted(by: { $0.0 < $1.0 }) {
                let r = DigitTree.step(prefix: s, probability: p, next: next, asked: asked)
                for (k, v) in r.children { level[k, default: 0] += v }
                for (k, v) in r.ended { dist[k, default: 0] += v }
            }
        }
        DigitTree.estimatePruned(pruned, kept: kept, into: &dist)
        return JudgeAnswer(distribution: dist)
    }

    // MARK: scoring mode

    /// The request that tells the modes apart: its answer is 50, one token ("50") on a tokenizer
    /// with a token per number, two ("5", "0") on one that splits digits.
    static let probe = "Reply with the number 50 and nothing else."

    /// The judge's scoring mode: given at init, stored in the judge cache, or detected now (once;
    /// concurrent callers wait for the same detection) and stored.
    public func scoring() async throws -> JudgeScoring? {
        let task: Task<JudgeScoring, Error> = modeLock.withLock {
            if let mode { return Task { mode } }
            if let detecting { return detecting }
            let t = Task { try await self.resolveScoring() }
            detecting = t
            return t
        }
        do {
            let s = try await task.value
            modeLock.withLock { mode = s }
            return s
        } catch {
            modeLock.withLock { detecting = nil }
            throw error
        }
    }

    /// The reading of the detected mode with what changes its numbers: the top-k asked for and,
    /// for the digit tree, the cut-off (the cache key: `CachedJudge`).
    public func reading() async throws -> JudgeReading? {
        guard let s = try await scoring() else { return nil }
        var p = ["top_logprobs": String(options.topLogprobs)]
        if s.mode == .digitTree { p["cutoff"] = String(options.digitTreeCutoff) }
        return JudgeReading(s, parameters: p)
    }

    /// Uses `scoring` from now on unless a mode is already set (preflight's quick probe hands its
    /// detection over so).
    func adopt(_ scoring: JudgeScoring) { modeLock.withLock { if mode == nil { mode = scoring } } }

    private func resolveScoring() async throws -> JudgeScoring {
        if let store, let s = try store.scoring(backend: backend, model: model) { return s }
        let s = try await detectScoring()
        return try store?.storeScoring(s, backend: backend, model: model) ?? s
    }

    /// First token of the probe's reply: a token spelling an integer from 10 up means one token per
    /// number (first-token); single digits only mean a digit-splitting tokenizer. Then an
    /// assistant message "5" is continued, vLLM's way and then llama-server's: the server
    /// continued it when the next token is more likely "0" (completing 50) than a 5 that starts
    /// a new reply. A server that refuses both (a 4xx) or opens a new turn gets the 0–9 scale.
    func detectScoring() async throws -> JudgeScoring {
        let first = Self.integerMass(try await call(Self.probe))
        guard first.keys.contains(where: { $0 <= 9 }), !first.keys.contains(where: { $0 >= 10 }) else { return .firstToken }
        for style in ContinuationStyle.allCases {
            let next: TopLogprobs
            do { next = try await call(Self.probe, prefix: "5", style: style) } catch let e as JudgeError {
                switch e {
                case .http(let status, _) where (400..<500).contains(status) && status != 429: continue
                case .malformed: continue
                default: throw e
                }
            }
            let p0 = next.filter { $0.token == "0" }.reduce(0.0) { $0 + Foundation.exp($1.logprob) }
            let p5 = next.filter { Scoring.integerAnswer($0.token) == 5 }.reduce(0.0) { $0 + Foundation.exp($1.logprob) }
            if p0 > p5 { return .digitTree(style) }
        }
        return .digitScale
    }

    private enum Attempt {
        case done(Data)
        case retryable(JudgeError, retryAfter: Double?)
        case fatal(JudgeError)
    }

    private func send(_ body: Data) async throws -> TopLogprobs {
        var last = JudgeError.network("no attempt made")
        var retryAfter: Double?
        let attempts = max(options.maxRetries, 0) + 1
        for attempt in 0..<attempts {
            if attempt > 0 {
                try await Task.sleep(nanoseconds: UInt64(backoff(attempt - 1, retryAfter: retryAfter) * 1e9))
            }
            stats.attempt(retry: attempt > 0)
            switch await once(body) {
            case .done(let data): return try Self.parseTop(data)
            case .fatal(let e): throw e
            case .retryable(let e, let after):
                last = e
                retryAfter = after
            }
        }
        switch last {
        case .http(let s, let m): throw JudgeError.http(status: s, message: m + " (gave up after \(attempts) attempts)")
        case .network(let m): throw JudgeError.network(m + " (gave up after \(attempts) attempts)")
        default: throw last
        }
    }

    func backoff(_ n: Int, retryAfter: Double?) -> Double {
        if let r = retryAfter, r >= 0, r.isFinite { return min(r, options.backoffMax) }
        let d = min(options.backoffMax, options.backoffBase * pow(2, Double(n)))
        return Double.random(in: (d / 2)...max(d, d / 2 + 1e-9))
    }

    private func once(_ body: Data) async -> Attempt {
        var req = URLRequest(url: endpoint)
        req.httpMethod = "POST"
        req.httpBody = body
        req.timeoutInterval = max(1, options.timeout.rounded(.up)) + 1
        req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let key = options.apiKey { req.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        let data: Data, response: URLResponse
        do {
            let request = req
            (data, response) = try await withDeadline(options.timeout) { try await self.session.data(for: request) }
        } catch is DeadlineExceeded {
            return .retryable(.network("no answer within \(options.timeout)s"), retryAfter: nil)
        } catch let e as URLError {
            return .retryable(.network(e.code == .timedOut ? "no answer within \(options.timeout)s" : "URL error \(e.code.rawValue): \(e.localizedDescription)"), retryAfter: nil)
        } catch is CancellationError {
            return .fatal(.network("cancelled"))
        } catch {
            return .retryable(.network(String(describing: error)), retryAfter: nil)
        }
        guard let http = response as? HTTPURLResponse else { return .retryable(.network("not an HTTP response"), retryAfter: nil) }
        let status = http.statusCode
        if status == 200 { return .done(data) }
        let message = Self.errorMessage(data)
        if status == 429 || (500...599).contains(status) {
            let after = (http.value(forHTTPHeaderField: "Retry-After")).flatMap(Double.init)
            return .retryable(.http(status: status, message: message), retryAfter: after)
        }
        // 4xx other than 429 (bad key, unknown model, bad request): retrying cannot help.
        return .fatal(.http(status: status, message: message))
    }

    /// The `error.message` of an OpenAI-style error body, or the start of the body.
    static func errorMessage(_ data: Data) -> String {
        if let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let err = obj["error"] as? [String: Any], let m = err["message"] as? String { return m }
        let text = String(decoding: data.prefix(200), as: UTF8.self)
        return text.isEmpty ? "(empty body)" : text
    }

    /// Reads choices[0].logprobs.content[0].top_logprobs of a chat completion.
    static func parseTop(_ data: Data) throws -> TopLogprobs {
        guard let obj = try? JSONSerialization.jsonObject(with: data) else {
            throw JudgeError.malformed("body is not JSON: \(String(decoding: data.prefix(80), as: UTF8.self))")
        }
        guard let root = obj as? [String: Any], let choices = root["choices"] as? [Any] else {
            throw JudgeError.malformed("no \"choices\" array")
        }
        guard let first = choices.first as? [String: Any] else { throw JudgeError.malformed("\"choices\" is empty") }
        guard let lp = first["logprobs"] as? [String: Any], let content = lp["content"] as? [Any] else {
            throw JudgeError.malformed("no logprobs in the answer (does the endpoint support \"logprobs\"?)")
        }
        guard let tok = content.first as? [String: Any] else {
            // The reply ended at once, and the server leaves the token that ended it out of the
            // log-probabilities (as the OpenAI API does): that token, the most likely one, ends
            // the reply; nothing is known of the others.
            if first["finish_reason"] as? String == "stop" { return [("", 0)] }
            throw JudgeError.malformed("logprobs.content is empty")
        }
        guard let top = tok["top_logprobs"] as? [Any], !top.isEmpty else {
            throw JudgeError.malformed("no top_logprobs for the first token")
        }
        var entries: TopLogprobs = []
        for e in top {
            guard let d = e as? [String: Any], let t = d["token"] as? String,
                  let l = (d["logprob"] as? NSNumber)?.doubleValue else {
                throw JudgeError.malformed("a top_logprobs entry lacks token/logprob")
            }
            guard l.isFinite || l == -.infinity, l <= 1e-6 else { throw JudgeError.malformed("logprob \(l) for \"\(t)\" is not a log-probability") }
            entries.append((t, l))
        }
        let total = entries.reduce(0.0) { $0 + Foundation.exp($1.logprob) }
        guard total <= 1.0001 else { throw JudgeError.malformed("top_logprobs sum to probability \(total) > 1") }
        return entries
    }
}

/// At most n bodies run at once; the rest wait in FIFO order.
actor ConcurrencyLimiter {
    private var free: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []
    init(_ n: Int) { free = n }

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }
    private func acquire() async {
        if free > 0 { free -= 1; return }
        await withCheckedContinuation { waiters.append($0) }
    }
    private func release() {
        if waiters.isEmpty { free += 1 } else { waiters.removeFirst().resume() }
    }
}

struct DeadlineExceeded: Error {}

/// Runs `body`, throwing DeadlineExceeded after `seconds` (the body's task is cancelled).
func withDeadline<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            throw DeadlineExceeded()
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}
