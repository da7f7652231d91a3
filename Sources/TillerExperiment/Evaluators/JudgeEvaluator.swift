import Foundation
import TillerEval
import TillerModels
import TillerSteering

/// The judge: trait and coherence scores (0–100) of generated answers. Checked on reference
/// answers (trait AUC) and on fluent vs degenerate answers (coherence AUC).
struct JudgeEvaluator: ExperimentEvaluator {
    var kind: EvaluatorKind { .judge }
    var checks: [InstrumentCheck] { [InstrumentCheck(.judge, "trait_auc"), InstrumentCheck(.judge, "coherence_auc")] }

    /// Scores per validation item: 2 trait scores (pos, neg reference answer), then 5 coherence
    /// scores (a fluent answer and four degenerate versions).
    static let validationScoresPerItem = 7
    /// Judge calls behind them: each coherence score also asks for relevance when the run does.
    static func validationCalls(items: Int, relevance: Bool) -> Int { items * 2 + items * 5 * (relevance ? 2 : 1) }

    func validate(missing: Set<InstrumentCheck>, _ ctx: EvaluationContext) throws -> [InstrumentValidation] {
        guard let scorer = ctx.scorer, !missing.isDisjoint(with: checks) else { return [] }
        let runner = ctx.runner, spec = runner.spec, options = runner.options
        let n = min(spec.judgeValidation.items, ctx.trait.referenceAnswers.count)
        let total = n * Self.validationScoresPerItem
        options.log("validate judge \(spec.judge ?? "") on \(ctx.trait.name): \(total) scores of known cases")
        let bar = ProgressBar("validate judge", total: total, unit: "scores", enabled: options.showProgress)
        let t = ctx.trait, relevance = spec.judgeRelevance, plan = spec.judgeValidation, seed = spec.seed
        let r: Result<[InstrumentValidation], Error> = blocking {
            do {
                return .success(try await JudgeValidation.run(scorer: scorer, trait: t.name, definition: t.definition,
                                                              references: t.referenceAnswers, items: plan.items, minAUC: plan.minAUC,
                                                              relevance: relevance, seed: seed, progress: { _ in bar.advance(by: 1) }))
            } catch { return .failure(error) }
        }
        bar.finish()
        return try r.get()
    }

    func summary(_ spec: ExperimentSpec) -> String {
        "judge (\(spec.judge ?? "none")): \(kind.unit), gated by its coherence ≥ \(spec.coherenceThresholds.map { String($0) }.joined(separator: ", "))"
    }
}
