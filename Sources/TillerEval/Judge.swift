import Foundation

/// Something that answers a 0–100 question (one user message) with a probability-weighted score.
/// Implementations: `OpenAIJudge` (any OpenAI-compatible endpoint) and `LocalJudge` (Tiller's engine).
public protocol Judge: Sendable {
    /// "openai" or "local": part of the cache key.
    var backend: String { get }
    /// The judge model's name: part of the cache key.
    var model: String { get }
    /// The answer distribution for one prompt. Throws `JudgeError` for this item only.
    func judge(_ prompt: String) async throws -> JudgeAnswer
    /// Checks, with one small request, that the judge can answer at all: called before any long
    /// work so that a missing key or an unreachable endpoint fails in seconds, not after every
    /// answer has been generated. Judges that need no setup pass (the default).
    func preflight() async throws
    /// `judge(prompt.text)`, told that the first `prompt.head` characters are shared by many
    /// prompts: a judge may reuse its work on them (the local judge does), answering as for the
    /// text alone up to fp32 rounding, and with the same bits whatever the order of the calls.
    /// The default ignores the hint.
    func judge(_ prompt: JudgePrompt) async throws -> JudgeAnswer
    /// How the judge scores (`JudgeScoringMode`); a remote judge detects it on its first call and
    /// keeps it. nil: the judge does not say (the default).
    func scoring() async throws -> JudgeScoring?
    /// How the judge reads its answers: the scoring mode with its algorithm's version and
    /// parameters, part of the cache key (`CachedJudge`). The default: the scoring mode with no
    /// parameters (nil when the judge states no mode).
    func reading() async throws -> JudgeReading?
}

extension Judge {
    public func preflight() async throws {}
    public func scoring() async throws -> JudgeScoring? { nil }
    public func reading() async throws -> JudgeReading? { try await scoring().map { JudgeReading($0) } }
    public func judge(_ prompt: JudgePrompt) async throws -> JudgeAnswer { try await judge(prompt.text) }
}

/// What a judge answered: probabilities of the integer answers 0…100 (only those with mass) and
/// their total. The score follows from it and a minimum mass (`score(minMass:)`), so a cached
/// answer stays valid when the threshold changes.
public struct JudgeAnswer: Sendable, Equatable, Codable {
    public var distribution: [Int: Double]
    public var mass: Double
    public init(distribution: [Int: Double]) {
        self.distribution = distribution.filter { (0...100).contains($0.key) && $0.value > 0 && $0.value.isFinite }
        self.mass = self.distribution.values.reduce(0, +)
    }
    public func score(minMass: Double = Scoring.defaultMinMass) -> JudgeScore {
        Scoring.weighted(distribution.map { ($0.key, $0.value) }, minMass: minMass)
    }
}

public enum JudgeError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The endpoint answered with an HTTP error status (after retries, where retried).
    case http(status: Int, message: String)
    /// The answer could not be read as a chat completion with log-probabilities.
    case malformed(String)
    /// Connection failures and timeouts (after retries).
    case network(String)
    /// Bad settings: unknown backend, missing key, unreadable prompt files.
    case configuration(String)
    /// The local model failed.
    case model(String)

    public var description: String {
        switch self {
        case .http(let s, let m): return "judge endpoint answered HTTP \(s): \(m)"
        case .malformed(let m): return "judge answer is malformed: \(m)"
        case .network(let m): return "judge endpoint unreachable: \(m)"
        case .configuration(let m): return m
        case .model(let m): return "local judge failed: \(m)"
        }
    }
}

/// `--judge openai:MODEL` or `--judge local:MODEL`.
public struct JudgeSpec: Sendable, Equatable, CustomStringConvertible {
    public enum Backend: String, Sendable { case openai, local }
    public var backend: Backend
    public var model: String

    public init(backend: Backend, model: String) {
        self.backend = backend
        self.model = model
    }
    public init(parsing text: String) throws {
        guard let colon = text.firstIndex(of: ":") else {
            throw JudgeError.configuration("judge \"\(text)\" must be openai:MODEL or local:MODEL")
        }
        let b = String(text[..<colon]), m = String(text[text.index(after: colon)...])
        guard let backend = Backend(rawValue: b) else {
            throw JudgeError.configuration("judge backend \"\(b)\" is unknown: use openai:MODEL or local:MODEL")
        }
        guard !m.isEmpty else { throw JudgeError.configuration("judge \"\(text)\" names no model") }
        self.init(backend: backend, model: m)
    }
    public var description: String { "\(backend.rawValue):\(model)" }
}

/// A judge behind the cache: answers found in the cache are not asked again; only successful
/// answers are stored (an error stores nothing). Answers are keyed by the judge's reading too
/// (`JudgeReading`): one read another way (another digit-tree cut-off or algorithm version) is
/// asked again, never reused.
public struct CachedJudge: Judge {
    public let inner: any Judge
    public let cache: JudgeCache
    public init(_ inner: any Judge, cache: JudgeCache) {
        self.inner = inner
        self.cache = cache
    }
    public var backend: String { inner.backend }
    public var model: String { inner.model }
    public func preflight() async throws { try await inner.preflight() }
    public func scoring() async throws -> JudgeScoring? { try await inner.scoring() }
    public func reading() async throws -> JudgeReading? { try await inner.reading() }

    public func judge(_ prompt: String) async throws -> JudgeAnswer { try await judge(JudgePrompt(text: prompt)) }

    public func judge(_ prompt: JudgePrompt) async throws -> JudgeAnswer {
        let reading = try await inner.reading()?.key ?? ""
        if let hit = try? cache.lookup(backend: backend, model: model, reading: reading, prompt: prompt.text) { return hit }
        let answer = try await inner.judge(prompt)
        do { try cache.store(answer, backend: backend, model: model, reading: reading, prompt: prompt.text) } catch {
            // The answer is still good; a cache write failing only costs a re-ask later.
            FileHandle.standardError.write(Data("warning: judge cache write failed: \(error)\n".utf8))
        }
        return answer
    }
}
