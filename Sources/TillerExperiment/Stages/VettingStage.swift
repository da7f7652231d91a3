import Foundation
import TillerEval
import TillerModels
import TillerSteering

// Vetting: the (validated) judge keeps the extraction samples that show what their polarity
// claims. `tiller run` with `extraction.vetting: judge` and `tiller extract --vet` both run it,
// with the same settings from the file's keys or the command's flags.

public struct VettingStage: PlannedStage, Sendable {
    public struct Settings: Sendable, Equatable {
        /// Fewest surviving samples per polarity (`extraction.min_vetted`, `--min-vetted`).
        public var minVetted = 4
        /// Coherence with the relevance cap (`judge_relevance`; `--no-relevance` turns it off).
        public var relevance = JudgingStage.Settings().relevance
        /// Positive samples need trait ≥ threshold, negative ones trait < threshold.
        public var threshold = 50.0
        /// Both need coherence ≥ this.
        public var minCoherence = 50.0
        public init() {}
        public init(spec: ExperimentSpec) {
            minVetted = spec.extraction.minVetted
            relevance = spec.judgeRelevance
        }
    }

    public var settings: Settings
    public init(settings: Settings) { self.settings = settings }
    /// nil when the file does not vet (`extraction.vetting: none`).
    public init?(spec: ExperimentSpec) {
        guard spec.extraction.vetting == .judge else { return nil }
        settings = Settings(spec: spec)
    }

    /// Teacher-forced scenarios read at the prompt (the text itself carries the trait, nothing
    /// is generated) need no vetting; generated answers do.
    public static func applies(form: ExtractionForm, positions: PositionSet) -> Bool {
        !(form == .scenarios && positions == .lastPrompt)
    }

    func estimate(_ ctx: StagePlanContext) -> StageEstimate? {
        guard ctx.form != .scenarios else { return nil }
        let samples = ExtractionStage.generatedSamples(ctx.trait, ctx.extraction)
        let calls = samples * JudgingStage.callsPerAnswer(relevance: settings.relevance)
        return StageEstimate("vetting", "\(calls) judge calls (trait, coherence\(settings.relevance ? ", relevance" : ""))",
                             seconds: ctx.judge(calls), unestimated: "\(calls) vetting judge calls")
    }

    /// Vets `run` with `scorer`. `judgeChecks` are the judge's validation on this trait: a judge
    /// that failed cannot vet (an error unless `allowInvalidJudge`). Too few survivors is an
    /// error naming the trait.
    public func run(_ run: ExtractionRun, trait: Trait, scorer: JudgeScorer, judgeName: String, judgeChecks: [InstrumentValidation],
                    allowInvalidJudge: Bool, log: StageLog) throws -> ExtractionRun {
        if judgeChecks.contains(where: { !$0.passed }) && !allowInvalidJudge {
            throw ExperimentError("vetting: the judge \(judgeName) failed validation on \(trait.name) (\(judgeChecks.map { "\($0.check) \($0.value.map { String(format: "%.2f", $0) } ?? "n/a")" }.joined(separator: ", "))); it cannot vet samples. Use a better judge, no vetting, or --allow-invalid-judge")
        }
        let total = run.positiveSamples.count + run.negativeSamples.count
        let s = settings
        log.log("vet \(trait.name): judging \(total) extraction samples (trait ≥ \(Int(s.threshold)) / < \(Int(s.threshold)), coherence ≥ \(Int(s.minCoherence)))")
        let t = trait
        let r: Result<ExtractionRun, Error> = blocking {
            do {
                return .success(try await run.vetted(threshold: s.threshold, minCoherence: s.minCoherence, scorer: { q, a in
                    let ts = try await scorer.traitScore(trait: t.name, definition: t.definition, question: q, answer: a).score
                    let cs = try await scorer.coherence(question: q, answer: a, relevance: s.relevance).score
                    return (ts, cs)
                }))
            } catch { return .failure(error) }
        }
        let vetted = try r.get()
        let v = vetted.vetting!
        log.log("vet \(trait.name): \(v.summary)")
        if v.positiveKept < s.minVetted || v.negativeKept < s.minVetted {
            throw ExperimentError("trait \(trait.name): vetting kept \(v.positiveKept)/\(v.positiveTotal) positive and \(v.negativeKept)/\(v.negativeTotal) negative samples, fewer than min_vetted \(s.minVetted) per side (extraction.min_vetted, --min-vetted). The model does not show the trait under its instructions: use scenarios (extraction.form: scenarios, positions: prompt:last), more pairs, or a larger model")
        }
        return vetted
    }
}
