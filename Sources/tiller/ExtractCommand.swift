import ArgumentParser
import Foundation
import TillerModels
import TillerSteering
import TillerEval
import TillerExperiment

struct Extract: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Contrastive extraction: generate answers for both polarities of a trait and extract mean_diff and probe vectors.",
        discussion: """
        Generates answers under the trait's positive and negative instructions (or completes its \
        positive and negative scenario prefixes), captures resid_post at every layer at the position set, \
        and keeps one row per answer (the mean over the selected positions). Writes to --out: \
        activations.safetensors (pos.L / neg.L, [samples, hidden], with the answers in its metadata), \
        samples.jsonl (the answers), one vector file per method (probe.safetensors, mean_diff.safetensors: \
        F32 layer.L tensors, unit norm) and extract.md (probe accuracy per layer). Rerunning with the same \
        model, trait and settings reuses the stored activations; `tiller variants DIR --scan scan.json` \
        then builds the cleaned variants. A trait is a shipped name (\(Trait.shippedNames.joined(separator: ", "))), \
        a trait JSON file (Tiller's or persona_vectors' form) or a trait folder.
        """)

    @OptionGroup var deviceOption: DeviceOption
    @Option(name: .shortAndLong, help: modelHelp)
    var model: String
    @Option(name: .shortAndLong, help: "Trait: shipped name, trait JSON file or folder.")
    var trait: String
    // Every setting an experiment file states for these stages has the file's name: a top-level
    // key `foo_bar` and an `extraction:` key `foo_bar` are `--foo-bar`, a key of another section
    // `--section-foo-bar` (`judge_validation.min_auc` is `--judge-validation-min-auc`);
    // StageFlagsTests holds the table. Defaults are the file's (the stages' Settings).
    @Option(help: "Positions read per answer: response:K (mean of the first K response tokens), response (mean of all), prompt:last (the file's positions).")
    var positions = ExtractionSettings().positions.description
    @Option(help: "Extraction data: instructions or scenarios (default: instructions on a chat model, else scenarios; extraction.form).")
    var form: String?
    @Option(name: .customLong("max-new-tokens"), help: "New tokens per answer (extraction.max_new_tokens).")
    var maxNewTokens = ExtractionSettings().maxNewTokens
    @Option(help: "Sampling temperature, 0 = greedy (extraction.temperature).")
    var temperature = ExtractionSettings().temperature
    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (extraction.top_p).")
    var topP = ExtractionSettings().topP
    @Option(help: "Sampling seed, and the judge validation's (the file's seed).")
    var seed: UInt64 = ExtractionSettings().seed
    @Option(name: .customLong("batch-size"), help: "Answers generated together (extraction.batch_size).")
    var batchSize = ExtractionSettings().batchSize
    @Option(name: .customLong("max-pairs"), help: "Use only the first N instruction or scenario pairs (extraction.max_pairs).")
    var maxPairs: Int?
    @Option(name: .customLong("max-questions"), help: "Use only the first N questions, instructions form (extraction.max_questions).")
    var maxQuestions: Int?
    @Option(help: "Methods, comma-separated: probe, mean_diff (the file's methods).")
    var methods = "probe,mean_diff"
    @Flag(help: "Generate again even when matching activations are stored.")
    var regenerate = false
    // Vetting: the same stages and defaults as an experiment file's `extraction: {vetting: judge}`
    // with its `judge*` keys (the judge is validated first, as `tiller run` does).
    @Option(help: "none, or judge: keep only the samples the --judge scores as showing their polarity (positive: trait ≥ 50, negative: trait < 50, both coherence ≥ 50); the judge is validated on the trait's reference answers first, as `tiller run` does (extraction.vetting; default none).")
    var vetting: String?
    @Option(help: "The vetting judge: local:MODEL or openai:MODEL (the file's judge).")
    var judge: String?
    @Option(name: .customLong("vet"), help: ArgumentHelp("Deprecated: --judge J --vetting judge.", visibility: .hidden))
    var deprecatedVet: String?
    @Option(name: .customLong("min-vetted"), help: "With --vetting judge: fewest surviving samples per polarity (extraction.min_vetted).")
    var minVetted = VettingStage.Settings().minVetted
    @Flag(name: .customLong("judge-relevance"), inversion: .prefixedNo,
          help: "With --vetting judge: coherence with the relevance cap (a third judge call), in validation and vetting (judge_relevance).")
    var judgeRelevance = VettingStage.Settings().relevance
    @Option(name: .customLong("judge-validation-items"), help: "With --vetting judge: reference answer pairs the judge is validated on (judge_validation.items).")
    var judgeValidationItems = JudgeValidationStage.Settings().items
    @Option(name: .customLong("judge-validation-min-auc"), help: "With --vetting judge: least trait and coherence AUC for the judge to pass (judge_validation.min_auc).")
    var judgeValidationMinAUC = JudgeValidationStage.Settings().minAUC
    @Option(name: .customLong("judge-min-mass"), help: "With --vetting judge: least probability on integer answers for a judge score to count (judge_min_mass).")
    var judgeMinMass = Scoring.defaultMinMass
    @Option(name: .customLong("judge-prompts"), help: "With --vetting judge: folder overriding trait.txt / coherence.txt / relevance.txt (judge_prompts).")
    var judgePrompts: String?
    @Flag(name: .customLong("allow-invalid-judge"), help: "With --vetting judge: vet even with a judge that failed validation.")
    var allowInvalidJudge = false
    @Option(name: .shortAndLong, help: "Output directory.")
    var out: String

    func validate() throws {
        guard maxNewTokens >= 1 else { throw ValidationError("--max-new-tokens must be at least 1") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        if let p = maxPairs, p < 1 { throw ValidationError("--max-pairs must be at least 1") }
        if let q = maxQuestions, q < 1 { throw ValidationError("--max-questions must be at least 1") }
        guard minVetted >= 1 else { throw ValidationError("--min-vetted must be at least 1") }
        guard judgeValidationItems >= 4 else { throw ValidationError("--judge-validation-items must be at least 4") }
        guard judgeValidationMinAUC > 0.5, judgeValidationMinAUC <= 1 else { throw ValidationError("--judge-validation-min-auc must be in (0.5, 1]") }
        guard judgeMinMass > 0, judgeMinMass <= 1 else { throw ValidationError("--judge-min-mass must be in (0, 1]") }
        if let f = form, ExtractionForm(rawValue: f) == nil { throw ValidationError("--form must be instructions or scenarios") }
        if let v = vetting, ExtractionPlan.VettingMode(rawValue: v) == nil { throw ValidationError("--vetting must be none or judge") }
        let mode = vettingMode
        if let v = deprecatedVet {
            if let judge, judge != v { throw ValidationError("--vet \(v) and --judge \(judge) name different judges (--vet J is --judge J --vetting judge)") }
            if vetting == ExtractionPlan.VettingMode.none.rawValue { throw ValidationError("--vet J vets (it is --judge J --vetting judge): it cannot go with --vetting none") }
        } else if mode == .judge && judge == nil {
            throw ValidationError("--vetting judge needs --judge (local:MODEL or openai:MODEL), as the file's extraction.vetting: judge needs its judge")
        } else if mode == .none && judge != nil {
            throw ValidationError("--judge is used only for vetting: add --vetting judge")
        }
        do { _ = try PositionSet(positions) } catch { throw ValidationError("\(error)") }
        _ = try parsedMethods()
    }

    /// --vetting (none when absent; judge with the deprecated --vet J).
    var vettingMode: ExtractionPlan.VettingMode {
        deprecatedVet != nil ? .judge : vetting.flatMap(ExtractionPlan.VettingMode.init(rawValue:)) ?? .none
    }
    /// The vetting judge: --judge with --vetting judge (or the deprecated --vet J); nil: no vetting.
    var vettingJudge: String? { vettingMode == .judge ? judge ?? deprecatedVet : nil }

    func parsedMethods() throws -> [ExtractionMethod] {
        try methods.split(separator: ",").map { s in
            guard let m = ExtractionMethod(rawValue: s.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("unknown method '\(s)' in --methods (use probe, mean_diff)")
            }
            return m
        }
    }

    /// The extraction stage's settings from the flags (defaults: an experiment file's).
    func extractionStage() throws -> ExtractionStage {
        var settings = ExtractionSettings()
        settings.form = form.flatMap(ExtractionForm.init(rawValue:))
        settings.positions = try PositionSet(positions)
        settings.maxNewTokens = maxNewTokens
        settings.temperature = temperature
        settings.topP = topP
        settings.seed = seed
        settings.batchSize = batchSize
        settings.maxPairs = maxPairs
        settings.maxQuestions = maxQuestions
        return ExtractionStage(settings: settings)
    }

    /// Judge validation and vetting settings from the flags, as an experiment file with the same
    /// keys gives them (its `seed` seeds both the samples and the validation).
    func vettingStages() -> (validation: JudgeValidationStage, vetting: VettingStage) {
        var v = JudgeValidationStage.Settings()
        v.items = judgeValidationItems
        v.minAUC = judgeValidationMinAUC
        v.relevance = judgeRelevance
        v.seed = seed
        var s = VettingStage.Settings()
        s.minVetted = minVetted
        s.relevance = judgeRelevance
        return (JudgeValidationStage(settings: v), VettingStage(settings: s))
    }

    func run() throws {
        let trait = try Trait.resolve(self.trait)
        let stage = try extractionStage()
        let lm = try LanguageModel.load(model, backend: try deviceOption.backend())
        let form = try stage.form(for: trait, model: lm)
        if deprecatedVet != nil { note("--vet J is deprecated: it is --judge J --vetting judge (the file's judge and extraction.vetting)") }
        let vet = vettingJudge
        // Vetting applies to generated answers only (as in `tiller run`).
        let vetting = vet != nil && VettingStage.applies(form: form, positions: stage.settings.positions)
        if vet != nil && !vetting { note("--vetting judge: scenarios read at prompt:last are teacher-forced text, not generated answers: nothing to vet") }

        let log = StageLog(showProgress: true, log: { note($0) })
        // The judge is built first when vetting: the vetting a stored run records must match its
        // settings (`VettingStage.key`), or the stored samples are vetted again.
        var scorer: JudgeScorer?
        var vettingKey: [String: String]?
        if let vet, vetting {
            let s = try makeScorer(judge: vet, model: lm)
            scorer = s
            vettingKey = try vettingStages().vetting.key(scorer: s, judgeName: vet, trait: trait)
        }
        let found: ExtractionStage.Stored = regenerate ? .none(note: nil) : try stage.stored(directory: out, model: lm, trait: trait, vettingKey: vettingKey)
        // A stored vetting is checked against the current --min-vetted.
        if case .ready(let r) = found, let v = r.vetting { try vettingStages().vetting.checkSurvivors(v, trait: trait) }
        switch found {
        case .ready(let r), .samples(let r, _):
            note("reusing stored activations in \(out) (\(r.positiveSamples.count) positive, \(r.negativeSamples.count) negative samples); --regenerate to generate again")
        case .none:
            if !regenerate && FileManager.default.fileExists(atPath: (out as NSString).appendingPathComponent(ExtractionRun.fileName)) {
                note("stored activations in \(out) are for other settings: generating again")
            }
        }
        let started = Date()
        let vetStage: ((ExtractionRun) throws -> ExtractionRun)? = scorer.map { s in { try self.vetSamples($0, trait: trait, judge: vet!, scorer: s, log: log) } }
        let run = try stage.complete(found, directory: out, model: lm, trait: trait, vet: vetStage, log: log)
        if case .none = found {
            let answers = run.vetting.map { $0.positiveTotal + $0.negativeTotal } ?? (run.positiveSamples.count + run.negativeSamples.count)
            note(String(format: "extracted %d answers in %.1fs (%d dropped: nothing captured)", answers, Date().timeIntervalSince(started), run.dropped))
        }
        let specs = try parsedMethods().map { VariantSpec($0) }
        let vectors = try VariantExtractor().run(run.activations, specs: specs) { _, _ in [] }
        for ev in vectors {
            let path = (out as NSString).appendingPathComponent(ev.spec.name + ".safetensors")
            try VariantsStage.file(ev, from: run, tillerVersion: Tiller.version).write(to: path)
        }
        let report = extractReport(run: run, vectors: vectors)
        try report.write(toFile: (out as NSString).appendingPathComponent("extract.md"), atomically: true, encoding: .utf8)
        print(report)
        note("wrote \(vectors.map { $0.spec.name + ".safetensors" }.joined(separator: ", ")), extract.md, samples.jsonl to \(out)")
    }

    /// The vetting judge (a local one runs where the model runs, --device), answered its first
    /// request.
    func makeScorer(judge: String, model: LanguageModel) throws -> JudgeScorer {
        let factory = try JudgeFactory(spec: try JudgeSpec(parsing: judge), prompts: try judgePrompts.map { try JudgePrompts.load(directory: $0) },
                                       minMass: judgeMinMass)
        let scorer = try factory.makeScorer { name in name == model.name ? model : try LanguageModel.load(name, backend: model.backend) }
        let preflight: Result<Void, Error> = blocking {
            do { try await scorer.judge.preflight(); return .success(()) } catch { return .failure(error) }
        }
        try preflight.get()
        return scorer
    }

    /// The judge validation and vetting stages of `tiller run`, with the flags' settings.
    func vetSamples(_ run: ExtractionRun, trait: Trait, judge: String, scorer: JudgeScorer, log: StageLog) throws -> ExtractionRun {
        let (validation, vetting) = vettingStages()
        let checks = try validation.run(scorer: scorer, trait: trait, judgeName: judge, log: log)
        for c in checks { note("judge \(judge) \(c.check): \(c.value.map { String(format: "%.3f", $0) } ?? "n/a") (n=\(c.n), pass ≥ \(c.threshold)) \(c.passed ? "passed" : "FAILED")") }
        return try vetting.run(run, trait: trait, scorer: scorer, judgeName: judge, judgeChecks: checks, allowInvalidJudge: allowInvalidJudge, log: log)
    }
}

/// extract.md: the run, probe accuracy and projection separation per layer, a few answers.
func extractReport(run: ExtractionRun, vectors: [ExtractedVector]) -> String {
    var s = "# Extraction: \(run.trait) on \(run.model)\n\n"
    s += "Form \(run.form.rawValue), positions \(run.positions), site resid_post; \(run.positiveSamples.count) positive and \(run.negativeSamples.count) negative samples"
    s += run.dropped > 0 ? " (\(run.dropped) dropped: nothing captured).\n" : ".\n"
    if let v = run.vetting { s += "\n\(v.summary)\n" }
    let settings = run.settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
    s += "Settings: \(settings).\n\n"
    let table = VariantTable(model: run.model, trait: run.trait, vectors: vectors, activations: run.activations) { _ in [] }
    let probe = vectors.first { $0.spec == VariantSpec(.probe) }
    let md = vectors.first { $0.spec == VariantSpec(.meanDiff) }
    s += "| layer |" + (probe != nil ? " probe train acc | probe held-out acc | probe d |" : "") + (md != nil ? " mean_diff d |" : "")
    s += (probe != nil && md != nil ? " cos(probe, mean_diff) |" : "") + "\n|---|"
    s += String(repeating: "---|", count: (probe != nil ? 3 : 0) + (md != nil ? 1 : 0) + (probe != nil && md != nil ? 1 : 0)) + "\n"
    for l in run.activations.layers {
        s += "| L\(l) |"
        if let p = probe, let st = p.probeStats[l] {
            s += String(format: " %.3f | %@ | %.2f |", st.trainAccuracy, st.heldoutAccuracy.map { String(format: "%.3f", $0) } ?? "–",
                        table.cells["probe"]?[String(l)]?.separation ?? .nan)
        }
        if md != nil { s += String(format: " %.2f |", table.cells["mean_diff"]?[String(l)]?.separation ?? .nan) }
        if let p = probe?.vectors[l], let m = md?.vectors[l] { s += String(format: " %.3f |", cosineSimilarity(p, m)) }
        s += "\n"
    }
    s += "\nd: Cohen's d of the positive vs negative projections onto the vector.\n\n## Sample answers\n\n"
    for (label, samples) in [("positive", run.positiveSamples), ("negative", run.negativeSamples)] {
        for x in samples.prefix(3) {
            let prompt = x.prompt.replacingOccurrences(of: "\n", with: " ")
            s += "- \(label) (pair \(x.pair)): «\(prompt)» → «\(x.response.replacingOccurrences(of: "\n", with: " "))»\n"
        }
    }
    return s
}
