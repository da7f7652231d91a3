import Foundation
import TillerEval
import TillerModels
import TillerSteering

// Evaluators as values. Each evaluator an experiment lists is one instance, built once from the
// experiment file (`ExperimentEvaluators.build`); the validation stage, the metrics stage, the
// plan and selection loop over the instances instead of switching on the kind. Adding an
// evaluator: a case in `EvaluatorKind` (its name and unit), a file here implementing
// `ExperimentEvaluator`, and its line in `ExperimentEvaluators.registry`.

/// The name a check on known cases is stored under: `logodds` / `primed_auc`.
public struct InstrumentCheck: Hashable, Sendable, CustomStringConvertible {
    public let instrument: String
    public let check: String
    public init(_ kind: EvaluatorKind, _ check: String) {
        instrument = kind.rawValue
        self.check = check
    }
    public init(_ v: InstrumentValidation) {
        instrument = v.instrument
        check = v.check
    }
    public var description: String { "\(instrument)/\(check)" }
}

/// What an evaluator reads while it validates or scores one (model, trait).
struct EvaluationContext {
    let runner: ExperimentRunner
    let model: LanguageModel
    let trait: Trait
    /// The judge, when one is configured.
    let scorer: JudgeScorer?
    /// The teacher-forced items of (model, trait), when a teacher-forced evaluator is listed.
    let teacherForced: TeacherForcedEvaluator?
}

/// How one evaluator's metric work counts in `--plan`.
struct EvaluatorPlanWork {
    /// "logodds on 12 reference pairs".
    var description: String
    /// Items in the run, and in the calibration slice that is timed.
    var items: Int
    var calibrationItems: Int
}

protocol ExperimentEvaluator {
    var kind: EvaluatorKind { get }
    /// The checks on known cases its numbers rest on (validated before anything is scored).
    var checks: [InstrumentCheck] { get }
    /// Runs those of its checks that are `missing` from the store.
    func validate(missing: Set<InstrumentCheck>, _ ctx: EvaluationContext) throws -> [InstrumentValidation]
    /// Whether it scores configurations teacher-forced (the metrics stage) rather than reading
    /// generated answers.
    var isTeacherForced: Bool { get }
    /// Teacher-forced evaluators: per configuration (nil: unsteered), per item.
    func score(_ edits: [SteeringEdit?], _ tf: TeacherForcedEvaluator) throws -> [[Double]]
    /// `--plan`: its metric work on a trait (teacher-forced evaluators only).
    func planWork(_ trait: Trait, spec: ExperimentSpec, inputs: TeacherForcedInputs) -> EvaluatorPlanWork?
    /// One line for a report or a plan: what it measures, in which unit, gated how.
    func summary(_ spec: ExperimentSpec) -> String
}

extension ExperimentEvaluator {
    var isTeacherForced: Bool { false }
    func score(_ edits: [SteeringEdit?], _ tf: TeacherForcedEvaluator) throws -> [[Double]] {
        throw ExperimentError("\(kind.rawValue) reads generated answers; it has no teacher-forced score")
    }
    func planWork(_ trait: Trait, spec: ExperimentSpec, inputs: TeacherForcedInputs) -> EvaluatorPlanWork? { nil }
    func summary(_ spec: ExperimentSpec) -> String { "\(kind.rawValue): \(kind.unit)" }
}

/// What the teacher-forced evaluators of a trait score (see `ExperimentRunner.teacherForcedInputs`).
struct TeacherForcedInputs {
    var references: [ReferenceAnswer]
    var ab: [ABItem]
    var neutral: [String]
}

enum ExperimentEvaluators {
    /// One constructor per kind: the one registration of an evaluator.
    static let registry: [EvaluatorKind: (ExperimentSpec) -> ExperimentEvaluator] = [
        .judge: { _ in JudgeEvaluator() },
        .logodds: { _ in LogOddsEvaluator() },
        .ab: { _ in ABEvaluator() },
        .perplexity: { _ in PerplexityEvaluator() },
        .degeneration: { _ in DegenerationEvaluator() },
    ]

    /// The file's evaluators in its order. A judge that is configured but not listed (it vets
    /// samples) is validated all the same: it comes last, as an instrument only.
    static func build(_ spec: ExperimentSpec) -> (listed: [ExperimentEvaluator], instruments: [ExperimentEvaluator]) {
        let listed = spec.evaluators.map { registry[$0]!(spec) }
        var instruments = listed
        if spec.judge != nil && !spec.evaluators.contains(.judge) { instruments.append(JudgeEvaluator()) }
        return (listed, instruments)
    }
}
