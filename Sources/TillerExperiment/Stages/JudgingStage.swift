import Foundation
import TillerEval
import TillerModels
import TillerSteering

// Judging: trait, coherence (and relevance) scores of the stored answers. Identical answers to
// the same question are judged once; each answer's scores are stored as they arrive, so a kill
// loses at most the answers in flight, and a rerun asks only for the unscored ones.

public struct JudgingStage: PlannedStage, Sendable {
    public struct Settings: Sendable, Equatable {
        /// Cap the coherence of off-topic answers with a third call (`judge_relevance`).
        public var relevance = true
        /// Judge requests in flight at once.
        public var concurrency = 32
        public init() {}
        public init(spec: ExperimentSpec) { relevance = spec.judgeRelevance }
    }

    public var settings: Settings
    /// The judge (`judge`), and the answers each configuration gets (questions × samples).
    let judge: String
    let answersPerConfiguration: Int
    init(spec: ExperimentSpec) {
        settings = Settings(spec: spec)
        judge = spec.judge ?? ""
        answersPerConfiguration = spec.questionsPerTrait * spec.samplesPerQuestion
    }

    /// Judge calls per scored answer: trait, coherence, and relevance when it is on (vetting
    /// scores its samples the same way).
    static func callsPerAnswer(relevance: Bool) -> Int { 2 + (relevance ? 1 : 0) }

    func estimate(_ ctx: StagePlanContext) -> StageEstimate? {
        let calls = ctx.configurations * answersPerConfiguration * Self.callsPerAnswer(relevance: settings.relevance)
        var e = StageEstimate("  judge", "\(calls.grouped) calls (trait, coherence\(settings.relevance ? ", relevance" : ""))",
                              seconds: ctx.judge(calls), inSweep: true, unestimated: "\(calls.grouped) sweep judge calls to \(judge)")
        e.counts = ["sweep_judge_calls": calls]
        return e
    }

    /// Scores every unscored answer of `configIds`. Judge errors store nothing: the next run asks again.
    func run(configIds: Set<String>, ctx: ExperimentRunner.SweepContext, scorer: JudgeScorer, store: ResultsStore, label: String, log: StageLog) throws {
        let todo = try store.unscoredGenerations().filter { configIds.contains($0.configId) }
        guard !todo.isEmpty else { return }
        let items = todo.map { JudgeItem(trait: ctx.trait.name, definition: ctx.trait.definition, question: $0.prompt, answer: $0.response) }
        let relevance = settings.relevance
        log.log("judge \(label): \(todo.count) answers, \(JudgeScorer.distinctGroups(items).count) distinct (trait, coherence\(relevance ? ", relevance" : ""))")
        let bar = ProgressBar("judge \(label)", total: todo.count, unit: "answers", enabled: log.showProgress)
        let failures = FailureLog()
        _ = blocking {
            await scorer.scoreDistinct(items, coherence: true, relevance: relevance, concurrency: settings.concurrency) { indices, r in
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
