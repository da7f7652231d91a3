import Foundation
import TillerEval
import TillerModels
import TillerSteering

/// Mean NLL on neutral texts (teacher-forced; selection reads it as a perplexity ratio to the
/// unsteered model), checked on a random direction that must do damage.
struct PerplexityEvaluator: ExperimentEvaluator {
    var kind: EvaluatorKind { .perplexity }
    var checks: [InstrumentCheck] { [InstrumentCheck(.perplexity, "damage_auc")] }
    var isTeacherForced: Bool { true }

    func validate(missing: Set<InstrumentCheck>, _ ctx: EvaluationContext) throws -> [InstrumentValidation] {
        guard let tf = ctx.teacherForced, !missing.isDisjoint(with: checks) else { return [] }
        let runner = ctx.runner
        let l = runner.layers[runner.layers.count / 2]
        let norm = try runner.store.layerNorms(model: ctx.model.name)[l]?.excludingMassive ?? 1
        return [try tf.validatePerplexity(layer: l, norm: norm, minAUC: runner.spec.judgeValidation.minAUC, seed: runner.spec.seed)]
    }
    func score(_ edits: [SteeringEdit?], _ tf: TeacherForcedEvaluator) throws -> [[Double]] { try tf.meanNLL(edits) }
    func planWork(_ trait: Trait, spec: ExperimentSpec, inputs: TeacherForcedInputs) -> EvaluatorPlanWork? {
        EvaluatorPlanWork(description: "perplexity on \(inputs.neutral.count) neutral texts", items: inputs.neutral.count,
                          calibrationItems: min(inputs.neutral.count, 2))
    }
    func summary(_ spec: ExperimentSpec) -> String {
        "perplexity: \(kind.unit), gate ≤ \(spec.maxPerplexityRatio.map { String($0) }.joined(separator: ", "))"
    }
}
