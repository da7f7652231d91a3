import Foundation
import TillerEval
import TillerModels
import TillerSteering

/// Repetition in generated answers, checked on fluent reference answers vs repeated and looped
/// versions of them.
struct DegenerationEvaluator: ExperimentEvaluator {
    var kind: EvaluatorKind { .degeneration }
    var checks: [InstrumentCheck] { [InstrumentCheck(.degeneration, "repetition_auc")] }

    func validate(missing: Set<InstrumentCheck>, _ ctx: EvaluationContext) throws -> [InstrumentValidation] {
        guard !missing.isDisjoint(with: checks) else { return [] }
        let fluent = ctx.trait.referenceAnswers.flatMap { [$0.pos, $0.neg] }
        return [Degeneration.validate(fluent: fluent, minAUC: ctx.runner.spec.judgeValidation.minAUC, seed: ctx.runner.spec.seed)]
    }
}
