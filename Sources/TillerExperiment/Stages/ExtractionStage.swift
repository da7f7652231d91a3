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

    /// Where a vetted run's samples before vetting are kept, beside it (`directory/unvetted`):
    /// other vetting settings vet them again without generating them again.
    public static func unvettedDirectory(_ directory: String) -> String { (directory as NSString).appendingPathComponent("unvetted") }

    /// What `directory` holds toward a request: this model, trait, form and settings, vetted with
    /// `vettingKey` (`VettingStage.key`), or not vetted when it is nil.
    public enum Stored {
        /// A run that answers the request as it stands.
        case ready(ExtractionRun)
        /// Samples from these settings that the request still has to vet (or, with no vetting,
        /// to store as the run); `note` says why a vetted run there was not used.
        case samples(ExtractionRun, note: String?)
        /// Nothing usable: the samples are generated.
        case none(note: String?)
    }

    /// The cache check. Samples are reused whenever their extraction settings match; only a
    /// vetting made with other settings (or before they were recorded) is redone, from the run
    /// itself when it was never vetted, else from its `unvetted/` copy.
    public func stored(directory: String, model: LanguageModel, trait: Trait, vettingKey: [String: String]?) throws -> Stored {
        let form = try form(for: trait, model: model)
        func load(_ dir: String) -> ExtractionRun? {
            guard let run = try? ExtractionRun.load(directory: dir), run.matches(model: model.name, trait: trait, form: form, settings: settings) else { return nil }
            return run
        }
        let here = load(directory)
        // The samples kept before a vetting (read only when needed).
        func kept() -> ExtractionRun? { load(Self.unvettedDirectory(directory)).flatMap { $0.vetting == nil ? $0 : nil } }
        guard let vettingKey else {
            if let here, here.vetting == nil { return .ready(here) }
            if let kept = kept() { return .samples(kept, note: "\(directory) holds vetted samples: the samples before vetting are used") }
            return .none(note: nil)
        }
        var note: String?
        if let here, let v = here.vetting {
            if v.settings == vettingKey { return .ready(here) }
            note = "the samples in \(directory) were vetted with other settings (\(VettingStage.difference(v.settings, vettingKey)))"
        }
        if let here, here.vetting == nil { return .samples(here, note: nil) }
        if let kept = kept() { return .samples(kept, note: note.map { $0 + ": vetting the stored samples again" }) }
        return .none(note: note.map { $0 + ", and the samples before vetting are not stored: generating again" })
    }

    /// Does what `stored` left to do: collects the samples (`.none`), then vets them with `vet`
    /// (keeping them in `unvetted/` first) or, with no vetting, takes them as the run; the run is
    /// saved in `directory`.
    public func complete(_ stored: Stored, directory: String, model: LanguageModel, trait: Trait,
                         vet: ((ExtractionRun) throws -> ExtractionRun)?, log: StageLog) throws -> ExtractionRun {
        let samples: ExtractionRun
        switch stored {
        case .ready(let run): return run
        case .samples(let run, let note):
            if let note { log.log("extract \(model.name)/\(trait.name): \(note)") }
            samples = run
        case .none(let note):
            if let note { log.log("extract \(model.name)/\(trait.name): \(note)") }
            samples = try run(model: model, trait: trait, log: log)
        }
        guard let vet else {
            try samples.save(directory: directory)
            return samples
        }
        try samples.save(directory: Self.unvettedDirectory(directory))
        let vetted = try vet(samples)
        try vetted.save(directory: directory)
        return vetted
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
        let judgeName = spec.judge ?? ""
        let vettingKey = try vetting.flatMap { v in try scorer.map { try v.key(scorer: $0, judgeName: judgeName, trait: trait) } }
        let found = try extraction.stored(directory: dir, model: model, trait: trait, vettingKey: vettingKey)
        if case .ready(let run) = found {
            options.log("extract \(model.name)/\(trait.name): cached (\(dir))")
            if let v = run.vetting {
                options.log("extract \(model.name)/\(trait.name): \(v.summary)")
                try vetting?.checkSurvivors(v, trait: trait)
            }
            try recordExtraction(run, model: model, trait: trait)
            return run
        }
        return try stage("extract \(model.name)/\(trait.name)") {
            var vet: ((ExtractionRun) throws -> ExtractionRun)?
            if let vetting, let scorer, vettingKey != nil {
                vet = { run in
                    let judgeChecks = try self.store.validations().filter { $0.trait == trait.name && $0.validation.instrument == "judge" }.map(\.validation)
                    return try vetting.run(run, trait: trait, scorer: scorer, judgeName: judgeName, judgeChecks: judgeChecks,
                                           allowInvalidJudge: self.options.allowInvalidJudge, log: self.stageLog)
                }
            }
            let run = try extraction.complete(found, directory: dir, model: model, trait: trait, vet: vet, log: stageLog)
            // Vectors built from other samples are stale: the variants stage builds them again.
            try? FileManager.default.removeItem(atPath: (dir as NSString).appendingPathComponent("vectors"))
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
