import Foundation
import TillerEval
import TillerModels
import TillerSteering
import TillerTokenizers

// Stages as values. Extraction, vetting, validation, variants, metrics, generation and judging
// each own, in their file here: their settings (one struct per concept, built from the
// experiment file, or from a command's flags by `tiller extract`, `tiller variants` and
// `tiller judge --validate`, so that the CLI and an experiment do the same work for the same
// settings; a flag has its file key's name, `foo_bar` is `--foo-bar`: StageFlagsTests), their cost estimate for `--plan`, their cache check and their run.
// `tiller run` chains them (`ExperimentRunner.run`); `--plan` asks each for its estimate
// (`ExperimentRunner.plannedStages`).

/// What a stage's estimate reads: the model, the trait and, when calibrated, the measured speeds.
struct StagePlanContext {
    let model: LanguageModel
    let tokenizer: Tokenizer
    let trait: Trait
    /// The extraction form the run will use for this trait.
    let form: ExtractionForm
    let extraction: ExtractionSettings
    /// Configurations the sweep evaluates (at most, for a search).
    let configurations: Int
    let calibration: PlanCalibration?

    /// Seconds of an unsteered forward over `tokens` prompt tokens.
    func prefill(_ tokens: Int) -> Double? { calibration.map { Double(tokens) / $0.prefillTokensPerSecond } }
    /// Seconds of `calls` local judge calls (nil: not calibrated, or a remote judge).
    func judge(_ calls: Int) -> Double? { calibration?.judgeSecondsPerCall.map { Double(calls) * $0 } }
}

/// A stage's share of a plan.
struct StageEstimate {
    var lines: [PlanLine] = []
    /// Part of the sweep (divided between shards), or of the work before it (`--prepare`).
    var inSweep = false
    var seconds = 0.0
    /// Work with no estimate (a remote judge).
    var unestimated: [String] = []
    /// Counts a test or a Slurm script reads (see `RunPlanSection.counts`).
    var counts: [String: Int] = [:]
    var sweepUnits = 0

    /// One line; its seconds count toward the total, or its work toward `unestimated`.
    init(_ stage: String, _ work: String, seconds: Double?, inSweep: Bool = false, unestimated: String? = nil) {
        self.inSweep = inSweep
        lines = [PlanLine(stage: stage, work: work, seconds: seconds)]
        self.seconds = seconds ?? 0
        if seconds == nil, let u = unestimated { self.unestimated = [u] }
    }
    init(heading stage: String, _ work: String) {
        lines = [PlanLine(stage: stage, work: work, seconds: nil, heading: true)]
    }
}

/// A stage `--plan` asks for its estimate on one (model, trait); nil: it has no work there.
protocol PlannedStage {
    func estimate(_ ctx: StagePlanContext) throws -> StageEstimate?
}

/// What a stage's run reports to: the log, progress bars.
public struct StageLog: Sendable {
    public var showProgress: Bool
    public var log: @Sendable (String) -> Void
    public init(showProgress: Bool = true, log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.showProgress = showProgress
        self.log = log
    }
}

extension ExperimentRunner {
    var stageLog: StageLog { StageLog(showProgress: options.showProgress, log: options.log) }

    /// The stages of one (model, trait), in the order the run chains them, as the plan counts
    /// them.
    func plannedStages() throws -> [PlannedStage] {
        var stages: [PlannedStage] = [try ExtractionStage(spec: spec)]
        if let v = VettingStage(spec: spec) { stages.append(v) }
        stages.append(VariantsStage(settings: try .init(spec: spec)))
        if let j = JudgeValidationStage(spec: spec) { stages.append(j) }
        stages.append(MetricValidationStage(kinds: evaluators.filter(\.isTeacherForced).map(\.kind)))
        stages.append(SweepStage(spec: spec, variants: variants))
        if spec.generatesAnswers { stages.append(GenerationStage(spec: spec)) }
        if spec.evaluators.contains(.judge) { stages.append(JudgingStage(spec: spec)) }
        stages.append(MetricsStage(runner: self))
        return stages
    }
}
