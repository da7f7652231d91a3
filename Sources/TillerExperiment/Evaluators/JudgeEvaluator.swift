import Foundation
import TillerEval
import TillerModels
import TillerSteering

/// The judge: trait and coherence scores (0–100) of generated answers. Checked on reference
/// answers (trait AUC) and on fluent vs degenerate answers (coherence AUC).
struct JudgeEvaluator: ExperimentEvaluator {
    var kind: EvaluatorKind { .judge }
    var checks: [InstrumentCheck] { [InstrumentCheck(.judge, "trait_auc"), InstrumentCheck(.judge, "coherence_auc")] }

    func validate(missing: Set<InstrumentCheck>, _ ctx: EvaluationContext) throws -> [InstrumentValidation] {
        guard let scorer = ctx.scorer, let stage = JudgeValidationStage(spec: ctx.runner.spec), !missing.isDisjoint(with: checks) else { return [] }
        return try stage.run(scorer: scorer, trait: ctx.trait, judgeName: ctx.runner.spec.judge ?? "", log: ctx.runner.stageLog)
    }

    func summary(_ spec: ExperimentSpec) -> String {
        "judge (\(spec.judge ?? "none")): \(kind.unit), gated by its coherence ≥ \(spec.coherenceThresholds.map { String($0) }.joined(separator: ", "))"
    }
}
