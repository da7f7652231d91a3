import Foundation
import TillerEval
import TillerModels
import TillerSteering
import TillerTensor

// Vetting: the (validated) judge keeps the extraction samples that show what their polarity
// claims. `tiller run` with `extraction.vetting: judge` and `tiller extract --vetting judge` both run it,
// with the same settings from the file's keys or the command's flags.

public struct VettingStage: PlannedStage, Sendable {
    public struct Settings: Sendable, Equatable {
        /// Fewest surviving samples per polarity (`extraction.min_vetted`, `--min-vetted`).
        public var minVetted = 4
        /// Coherence with the relevance cap (`judge_relevance`; `--no-judge-relevance` turns it off).
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

    /// What decides which samples vetting keeps, beside the samples: these settings, the judge
    /// (its name, how it reads its answers, its least mass, its prompts and off-topic cap) and the
    /// trait's definition (the trait prompt quotes it). A vetted run records it
    /// (`VettingReport.settings`); a stored run vetted otherwise is vetted again. `min_vetted`
    /// is not in it: it keeps no other sample, and a stored run's counts are checked against it.
    public func key(scorer: JudgeScorer, judgeName: String, trait: Trait) throws -> [String: String] {
        let reading: Result<JudgeReading?, Error> = blocking {
            do { return .success(try await scorer.judge.reading()) } catch { return .failure(error) }
        }
        var prompts = Fingerprint(), definition = Fingerprint()
        for t in [scorer.prompts.trait, scorer.prompts.coherence, scorer.prompts.relevance] { prompts.add(bytes: t.utf8); prompts.add(bytes: [0xFF]) }
        definition.add(bytes: trait.definition.utf8)
        return ["threshold": String(settings.threshold), "min_coherence": String(settings.minCoherence),
                "judge_relevance": String(settings.relevance), "judge": judgeName, "judge_reading": try reading.get()?.key ?? "none",
                "judge_min_mass": String(scorer.minMass), "judge_prompts": prompts.hex,
                "off_topic": "below \(scorer.offTopicBelow) capped at \(scorer.offTopicCap)", "trait_definition": definition.hex]
    }

    /// What differs between a stored run's vetting record and `key`, for the log: "judge_relevance
    /// true → false", or that the run recorded none.
    static func difference(_ stored: [String: String]?, _ key: [String: String]) -> String {
        guard let stored else { return "its vetting settings were not recorded" }
        return Set(stored.keys).union(key.keys).sorted().filter { stored[$0] != key[$0] }
            .map { "\($0) \(stored[$0] ?? "unset") → \(key[$0] ?? "unset")" }.joined(separator: ", ")
    }

    /// Too few survivors per side is an error naming the trait (a fresh vetting, or a stored one
    /// read under a larger `min_vetted`).
    public func checkSurvivors(_ v: VettingReport, trait: Trait) throws {
        let s = settings
        if v.positiveKept < s.minVetted || v.negativeKept < s.minVetted {
            throw ExperimentError("trait \(trait.name): vetting kept \(v.positiveKept)/\(v.positiveTotal) positive and \(v.negativeKept)/\(v.negativeTotal) negative samples, fewer than min_vetted \(s.minVetted) per side (extraction.min_vetted, --min-vetted). The model does not show the trait under its instructions: use scenarios (extraction.form: scenarios, positions: prompt:last), more pairs, or a larger model")
        }
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
        var vetted = try r.get()
        vetted.vetting!.settings = try key(scorer: scorer, judgeName: judgeName, trait: trait)
        log.log("vet \(trait.name): \(vetted.vetting!.summary)")
        try checkSurvivors(vetted.vetting!, trait: trait)
        return vetted
    }
}
