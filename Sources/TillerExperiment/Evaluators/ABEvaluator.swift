import Foundation
import TillerEval
import TillerModels
import TillerSteering

/// P(trait letter) of A/B items (teacher-forced), checked by priming.
struct ABEvaluator: ExperimentEvaluator {
    var kind: EvaluatorKind { .ab }
    var checks: [InstrumentCheck] { [InstrumentCheck(.ab, "primed_auc")] }
    var isTeacherForced: Bool { true }

    func validate(missing: Set<InstrumentCheck>, _ ctx: EvaluationContext) throws -> [InstrumentValidation] {
        guard let tf = ctx.teacherForced, !missing.isDisjoint(with: checks) else { return [] }
        return [try tf.validateAB(minAUC: ctx.runner.spec.judgeValidation.minAUC)]
    }
    func score(_ edits: [SteeringEdit?], _ tf: TeacherForcedEvaluator) throws -> [[Double]] { try tf.ab(edits) }
    func planWork(_ trait: Trait, spec: ExperimentSpec, inputs: TeacherForcedInputs) -> EvaluatorPlanWork? {
        EvaluatorPlanWork(description: "ab on \(spec.abItems == nil ? "\(inputs.references.count) built" : "the file's \(inputs.ab.count)") items",
                          items: inputs.ab.count, calibrationItems: min(inputs.ab.count, 4))
    }
}
