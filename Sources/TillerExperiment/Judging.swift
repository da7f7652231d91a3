import Foundation
import TillerEval
import TillerModels
import TillerSteering

// The run's judge: built from the experiment file (backend, prompts, the cache in the results
// database), checked before any model work (the judging stage, Stages/JudgingStage.swift, scores with it).

extension ExperimentRunner {
    func judgeFactory() throws -> JudgeFactory {
        guard let text = self.spec.judge else { throw ExperimentError("no judge is configured") }
        let prompts = try self.spec.judgePrompts.map { try JudgePrompts.load(directory: Self.resolve($0, in: baseDirectory)) }
        // The judge cache lives in the results database.
        return try JudgeFactory(spec: try JudgeSpec(parsing: text), cache: try JudgeCache(writer: store.db), prompts: prompts,
                                minMass: self.spec.judgeMinMass)
    }

    func makeScorer(for model: LanguageModel) throws -> JudgeScorer {
        try judgeFactory().makeScorer { name in
            if let m = judgeModels[name] { return m }
            let m = name == model.name || Self.resolveModel(name, in: baseDirectory) == model.name
                ? model : try LanguageModel.load(Self.resolveModel(name, in: baseDirectory), backend: options.backend)
            judgeModels[name] = m
            return m
        }
    }

    /// An `openai:` judge answers one small request before any model work (a missing key or a
    /// wrong URL fails now, not after the sweep has been generated).
    func preflightJudge() throws {
        guard let text = spec.judge, try JudgeSpec(parsing: text).backend == .openai else { return }
        let judge = try judgeFactory().makeJudge()
        let r: Result<Void, Error> = blocking {
            do { try await judge.preflight(); return .success(()) } catch { return .failure(error) }
        }
        try r.get()
        let scoring: JudgeScoring? = blocking { try? await judge.scoring() }
        options.log("judge \(text): answered its first request; scoring mode \(scoring.map(String.init(describing:)) ?? "unknown")")
    }
}

/// Errors gathered from concurrent callbacks: how many, and the first.
final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var count = 0
    private(set) var first: String?
    func add(_ e: String) { lock.lock(); count += 1; if first == nil { first = e }; lock.unlock() }
}
