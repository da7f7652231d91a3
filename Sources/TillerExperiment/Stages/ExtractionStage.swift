import Foundation
import TillerEval
import TillerModels
import TillerSteering

// Extraction: contrastive samples of a trait (generated under its instructions, or its
// scenarios read teacher-forced) with resid_post at every layer. `tiller run` and
// `tiller extract` build the same `ExtractionSettings` (TillerSteering's: form, positions,
// tokens, temperature, top_p, seed, batch size, pairs, questions), from the file's
// `extraction:` keys or from the command's flags, so they collect the same samples.

public struct ExtractionStage: PlannedStage, Sendable {
    public var settings: ExtractionSettings
    public init(settings: ExtractionSettings) { self.settings = settings }
    /// The file's `extraction:` keys, its `positions` and `seed`.
    public init(spec: ExperimentSpec) throws {
        var s = ExtractionSettings()
        s.form = spec.extraction.form
        s.positions = try PositionSet(spec.positions)
        s.maxNewTokens = spec.extraction.maxNewTokens
        s.temperature = spec.extraction.temperature
        s.topP = spec.extraction.topP
        s.seed = spec.seed
        s.batchSize = spec.extraction.batchSize
        s.maxPairs = spec.extraction.maxPairs
        s.maxQuestions = spec.extraction.maxQuestions
        settings = s
    }

    public func form(for trait: Trait, model: LanguageModel) throws -> ExtractionForm {
        try ContrastiveExtraction.form(for: trait, model: model, requested: settings.form)
    }

    /// The stored run in `directory` when it answers this request: same model, trait, form and
    /// settings, and vetted exactly when `vetted`.
    public func cached(directory: String, model: LanguageModel, trait: Trait, vetted: Bool) throws -> ExtractionRun? {
        guard let run = try? ExtractionRun.load(directory: directory),
              run.matches(model: model.name, trait: trait, form: try form(for: trait, model: model), settings: settings),
              (run.vetting != nil) == vetted else { return nil }
        return run
    }

    /// Collects the samples (not saved: the caller saves the run, vetted or not).
    public func run(model: LanguageModel, trait: Trait, log: StageLog) throws -> ExtractionRun {
        try ContrastiveExtraction.collect(model: model, trait: trait, settings: settings, showProgress: log.showProgress)
    }

    /// Samples generated in the instructions form: pairs × questions × 2 polarities.
    static func generatedSamples(_ trait: Trait, _ s: ExtractionSettings) -> Int {
        2 * min(trait.instructions.count, s.maxPairs ?? .max) * min(trait.questions.count, s.maxQuestions ?? .max)
    }

    func estimate(_ ctx: StagePlanContext) -> StageEstimate? {
        let trait = ctx.trait, tokenizer = ctx.tokenizer, s = settings
        if ctx.form == .scenarios {
            let n = trait.scenarios.count
            let tokens = trait.scenarios.reduce(0) { $0 + tokenizer.encode($1.pos, addSpecialTokens: true).count + tokenizer.encode($1.neg, addSpecialTokens: true).count }
            return StageEstimate("extraction", "scenarios: \(2 * n) teacher-forced samples, \(tokens.grouped) tokens", seconds: ctx.prefill(tokens))
        }
        let pairs = min(trait.instructions.count, s.maxPairs ?? .max)
        let questions = min(trait.questions.count, s.maxQuestions ?? .max)
        let samples = Self.generatedSamples(trait, s)
        let units = (samples + s.batchSize - 1) / max(s.batchSize, 1)
        let seconds = ctx.calibration.map { Double(units) * Double(s.maxNewTokens) * $0.stepSeconds * min(1, Double(s.batchSize) / Double($0.batch)) }
        return StageEstimate("extraction", "instructions: \(samples) generated samples (\(pairs) pairs × \(questions) questions × 2), ≤ \((samples * s.maxNewTokens).grouped) new tokens",
                             seconds: seconds)
    }
}

extension ExperimentRunner {
    func extractionStage(_ model: LanguageModel, trait: Trait, scorer: JudgeScorer?) throws -> ExtractionRun {
        let dir = traitDirectory(model, trait)
        let extraction = try ExtractionStage(spec: spec)
        let form = try extraction.form(for: trait, model: model)
        let vetting = VettingStage(spec: spec).flatMap { VettingStage.applies(form: form, positions: extraction.settings.positions) ? $0 : nil }
        if let run = try extraction.cached(directory: dir, model: model, trait: trait, vetted: vetting != nil) {
            options.log("extract \(model.name)/\(trait.name): cached (\(dir))")
            if let v = run.vetting { options.log("extract \(model.name)/\(trait.name): \(v.summary)") }
            try recordExtraction(run, model: model, trait: trait)
            return run
        }
        return try stage("extract \(model.name)/\(trait.name)") {
            var run = try extraction.run(model: model, trait: trait, log: stageLog)
            if let vetting, let scorer {
                let judgeChecks = try store.validations().filter { $0.trait == trait.name && $0.validation.instrument == "judge" }.map(\.validation)
                run = try vetting.run(run, trait: trait, scorer: scorer, judgeName: spec.judge ?? "", judgeChecks: judgeChecks,
                                      allowInvalidJudge: options.allowInvalidJudge, log: stageLog)
            }
            try run.save(directory: dir)
            try recordExtraction(run, model: model, trait: trait)
            return run
        }
    }

    /// What the vectors were extracted from (form, sample counts, vetting survivors), for the report.
    func recordExtraction(_ run: ExtractionRun, model: LanguageModel, trait: Trait) throws {
        let record = ExtractionRecord(form: run.form.rawValue, positions: try ExtractionStage(spec: spec).settings.positions.description,
                                      positive: run.positiveSamples.count, negative: run.negativeSamples.count, vetting: run.vetting)
        try store.setArtifact(model: model.name, trait: trait.name, kind: ExtractionRecord.kind,
                              content: String(decoding: try JSONEncoder().encode(record), as: UTF8.self))
    }
}
