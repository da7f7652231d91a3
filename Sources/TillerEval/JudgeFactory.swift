import Foundation
import TillerModels

/// How a judge is built from its spec, in one place for `tiller judge`, `tiller extract --vetting judge`
/// and `tiller run`: the backend (an OpenAI-compatible endpoint or Tiller's engine), the answer
/// cache, the prompts and the scorer.
public struct JudgeFactory {
    public var spec: JudgeSpec
    /// Endpoint settings of an `openai:` judge (default: from the environment).
    public var openAI: OpenAIJudgeOptions?
    public var cache: JudgeCache?
    public var prompts: JudgePrompts
    public var minMass: Double

    public init(spec: JudgeSpec, openAI: OpenAIJudgeOptions? = nil, cache: JudgeCache? = nil, prompts: JudgePrompts? = nil,
                minMass: Double = Scoring.defaultMinMass) throws {
        self.spec = spec
        self.openAI = openAI
        self.cache = cache
        self.prompts = try prompts ?? JudgePrompts.defaults()
        self.minMass = minMass
    }

    /// The judge behind the cache. `localModel` gives the model of a `local:` judge by name (so a
    /// caller can reuse a model it has loaded already).
    public func makeJudge(localModel: (String) throws -> LanguageModel = { try LanguageModel.load($0) }) throws -> any Judge {
        var judge: any Judge
        switch spec.backend {
        case .openai:
            judge = OpenAIJudge(model: spec.model, options: try openAI ?? OpenAIJudgeOptions.fromEnvironment(baseURL: nil, apiKey: nil), store: cache)
        case .local:
            judge = try LocalJudge(model: localModel(spec.model), name: spec.model)
        }
        if let cache { judge = CachedJudge(judge, cache: cache) }
        return judge
    }

    public func makeScorer(localModel: (String) throws -> LanguageModel = { try LanguageModel.load($0) }) throws -> JudgeScorer {
        JudgeScorer(judge: try makeJudge(localModel: localModel), prompts: prompts, minMass: minMass)
    }
}

extension OpenAIJudge {
    /// Where the key comes from, for error messages.
    static let keyHelp = "set OPENAI_API_KEY or TILLER_JUDGE_API_KEY (or pass --api-key to `tiller judge`)"

    /// One small request, then the scoring mode (detected with the same quick settings, or read
    /// from the judge cache); a missing key or a failing endpoint is a configuration error that
    /// says what to set.
    public func preflight() async throws {
        // OpenAI's own endpoint always needs a key; a self-hosted one (vLLM, `tiller serve`) may not.
        if options.apiKey == nil && options.baseURL.host == "api.openai.com" {
            throw JudgeError.configuration("openai judge \(model): no API key for \(options.baseURL.absoluteString): \(Self.keyHelp)")
        }
        var quick = options
        quick.maxRetries = 1
        quick.timeout = min(options.timeout, 30)
        let probe = OpenAIJudge(model: model, options: quick, store: store)
        do {
            _ = try await probe.call(Self.probe)
            try await adopt(probe.scoring()!)
        } catch let e as JudgeError {
            var hint = ""
            if case .http(let s, _) = e, s == 401 || s == 403 { hint = ": the key was refused; \(Self.keyHelp)" }
            if case .http(let s, _) = e, s == 404 { hint = ": check the model name and the base URL (TILLER_JUDGE_BASE_URL / OPENAI_BASE_URL)" }
            if case .network = e { hint = ": check the base URL (TILLER_JUDGE_BASE_URL / OPENAI_BASE_URL) and the network" }
            throw JudgeError.configuration("openai judge \(model) at \(options.baseURL.absoluteString) failed its first request (\(e))\(hint)")
        }
    }
}
