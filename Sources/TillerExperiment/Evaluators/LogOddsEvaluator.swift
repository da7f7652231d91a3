import Foundation
import TillerEval
import TillerModels
import TillerSteering

/// Log-odds of the trait's reference answers (teacher-forced), checked by priming.
struct LogOddsEvaluator: ExperimentEvaluator {
    var kind: EvaluatorKind { .logodds }
    var checks: [InstrumentCheck] { [InstrumentCheck(.logodds, "primed_auc")] }
    var isTeacherForced: Bool { true }

    func validate(missing: Set<InstrumentCheck>, _ ctx: EvaluationContext) throws -> [InstrumentValidation] {
        guard let tf = ctx.teacherForced, !missing.isDisjoint(with: checks) else { return [] }
        return [try tf.validateLogOdds(minAUC: ctx.runner.spec.judgeValidation.minAUC)]
    }
    func score(_ edits: [SteeringEdit?], _ tf: TeacherForcedEvaluator) throws -> [[Double]] { try tf.logOdds(edits) }
    func planWork(_ trait: Trait, spec: ExperimentSpec, inputs: TeacherForcedInputs) -> EvaluatorPlanWork? {
        EvaluatorPlanWork(description: "logodds on \(inputs.references.count) reference pairs", items: inputs.references.count,
                          calibrationItems: min(inputs.references.count, 4))
    }
}
