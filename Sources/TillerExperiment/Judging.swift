import Foundation
import TillerEval
import TillerModels
import TillerSteering

// The run's judge: built from the experiment file (backend, prompts, the cache in the results
// database), checked before any model work, and used to score the sweep's answers.

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

    /// Scores every unscored answer of `configIds` (trait, coherence, and relevance when
    /// configured). Identical answers to the same question (common: weak steering leaves the
    /// greedy answer unchanged) are judged once and every copy gets the scores; each answer's
    /// scores are stored as soon as they arrive, so a kill loses at most the answers in flight.
    /// Judge errors store nothing: the next run asks again.
    func judgeStage(configIds: Set<String>, ctx: SweepContext, scorer: JudgeScorer, label: String) throws {
        let todo = try store.unscoredGenerations().filter { configIds.contains($0.configId) }
        guard !todo.isEmpty else { return }
        let items = todo.map { JudgeItem(trait: ctx.trait.name, definition: ctx.trait.definition, question: $0.prompt, answer: $0.response) }
        let relevance = spec.judgeRelevance
        options.log("judge \(label): \(todo.count) answers, \(JudgeScorer.distinctGroups(items).count) distinct (trait, coherence\(relevance ? ", relevance" : ""))")
        let bar = ProgressBar("judge \(label)", total: todo.count, unit: "answers", enabled: options.showProgress)
        let store = self.store
        let failures = FailureLog()
        _ = blocking {
            await scorer.scoreDistinct(items, coherence: true, relevance: relevance, concurrency: 32) { indices, r in
                do {
                    let t = try r.trait.get()
                    guard let c = try r.coherence?.get() else { return }
                    let rel = relevance ? c.relevance.score : nil
                    let rows = indices.map { i in
                        ScoreRow(configId: todo[i].configId, question: todo[i].question, sample: todo[i].sample, trait: stable(t.score),
                                 coherence: stable(c.score), relevance: stable(rel), offTopic: c.offTopic, error: nil)
                    }
                    do { try store.insert(scores: rows) } catch { failures.add("storing scores: \(error)") }
                } catch {
                    failures.add(String(describing: error))
                }
                bar.advance(by: indices.count)
            }
        }
        bar.finish()
        if failures.count > 0 {
            throw ExperimentError("judge: \(failures.count) answers could not be scored (first error: \(failures.first ?? "?")); run again to retry them")
        }
    }
}

/// Errors gathered from concurrent callbacks: how many, and the first.
final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var count = 0
    private(set) var first: String?
    func add(_ e: String) { lock.lock(); count += 1; if first == nil { first = e }; lock.unlock() }
}
