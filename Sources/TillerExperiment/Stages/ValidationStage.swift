import Foundation
import TillerEval
import TillerModels
import TillerSteering

// Validation: the instruments prove themselves on known cases before anything they score is
// used. The judge's checks run here and from `tiller judge --validate` and `tiller extract --vetting judge`
// with the same settings; the judge-free evaluators' checks are theirs (Evaluators/).

/// Judge validation on a trait's reference answers (TillerEval's JudgeValidation).
public struct JudgeValidationStage: PlannedStage, Sendable {
    public struct Settings: Sendable, Equatable {
        /// Reference answer pairs scored (the file's `judge_validation.items`, `--judge-validation-items`).
        public var items = 12
        /// Least trait and coherence AUC to pass (`judge_validation.min_auc`, `--judge-validation-min-auc`).
        public var minAUC = 0.75
        /// Coherence with the relevance cap (`judge_relevance`; `--no-judge-relevance` turns it off).
        public var relevance = JudgingStage.Settings().relevance
        /// Seed of the degenerate versions (the file's `seed`, `--seed`).
        public var seed: UInt64 = 0
        public init() {}
        public init(spec: ExperimentSpec) {
            items = spec.judgeValidation.items
            minAUC = spec.judgeValidation.minAUC
            relevance = spec.judgeRelevance
            seed = spec.seed
        }
    }

    public var settings: Settings
    public init(settings: Settings) { self.settings = settings }
    /// nil when the file configures no judge.
    public init?(spec: ExperimentSpec) {
        guard spec.judge != nil else { return nil }
        settings = Settings(spec: spec)
    }

    /// Items scored for `trait` (its reference answers may be fewer than `items`).
    func items(_ trait: Trait) -> Int { min(settings.items, trait.referenceAnswers.count) }

    func estimate(_ ctx: StagePlanContext) -> StageEstimate? {
        let n = items(ctx.trait)
        let calls = JudgeValidation.calls(items: n, relevance: settings.relevance)
        return StageEstimate("judge validation", "\(calls) judge calls on \(n) reference items", seconds: ctx.judge(calls),
                             unestimated: "\(calls) judge validation calls")
    }

    /// The trait AUC and coherence AUC checks of `scorer` on `trait`.
    public func run(scorer: JudgeScorer, trait: Trait, judgeName: String, concurrency: Int = 8, log: StageLog) throws -> [InstrumentValidation] {
        let total = items(trait) * JudgeValidation.scoresPerItem
        log.log("validate judge \(judgeName) on \(trait.name): \(total) scores of known cases")
        let bar = ProgressBar("validate judge", total: total, unit: "scores", enabled: log.showProgress)
        let s = settings
        let r: Result<[InstrumentValidation], Error> = blocking {
            do {
                return .success(try await JudgeValidation.run(scorer: scorer, trait: trait.name, definition: trait.definition,
                                                              references: trait.referenceAnswers, items: s.items, minAUC: s.minAUC,
                                                              relevance: s.relevance, seed: s.seed, concurrency: concurrency,
                                                              progress: { _ in bar.advance(by: 1) }))
            } catch { return .failure(error) }
        }
        bar.finish()
        return try r.get()
    }
}

/// The judge-free evaluators' checks on known cases (priming AUC, damage AUC, …): their own,
/// run by the validation stage; estimated here.
struct MetricValidationStage: PlannedStage {
    let kinds: [EvaluatorKind]

    func estimate(_ ctx: StagePlanContext) -> StageEstimate? {
        guard !kinds.isEmpty else { return nil }
        // Priming checks score the references twice; the perplexity check a few steered configurations.
        let s = ctx.calibration.flatMap { c in c.metricsSecondsPerUnit.map { 3 * $0 + 4 * c.metricsSecondsPerConfig! } }
        return StageEstimate("metric validation", kinds.map(\.rawValue).joined(separator: ", ") + " checks on known cases", seconds: s)
    }
}

extension ExperimentRunner {
    /// The instruments' evidence for (model, trait), stored once (reruns read it back):
    /// - the judge, when one is configured: trait AUC on reference answers and coherence AUC on
    ///   fluent vs degenerate answers;
    /// - logodds / ab: priming AUC; perplexity: damage AUC; degeneration: repetition AUC.
    func validationStage(_ model: LanguageModel, trait: Trait, scorer: JudgeScorer?) throws {
        let have = Set(try store.validations().filter { $0.model == model.name && $0.trait == trait.name }.map { InstrumentCheck($0.validation) })
        let missing = Set(instruments.flatMap(\.checks)).subtracting(have)
        guard !missing.isEmpty else { return }
        try stage("validate \(model.name)/\(trait.name)") {
            let ctx = EvaluationContext(runner: self, model: model, trait: trait, scorer: scorer,
                                        teacherForced: try teacherForcedEvaluator(model, trait: trait))
            var results: [InstrumentValidation] = []
            for e in instruments { results += try e.validate(missing: missing, ctx) }
            for v in results {
                try store.record(validation: v, model: model.name, trait: trait.name)
                options.log("validate \(v.instrument) \(v.check) on \(model.name)/\(trait.name): \(v.value.map { String(format: "%.3f", $0) } ?? "n/a") (n=\(v.n), pass ≥ \(v.threshold)) \(v.passed ? "passed" : "FAILED")")
            }
        }
    }
}
