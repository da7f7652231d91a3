import Foundation
import TillerEval
import TillerModels
import TillerSteering
import TillerTokenizers

// The stages that make a run's numbers trustworthy: instrument validation before anything is
// scored, vetting of contrastive samples, and the judge-free metrics of every configuration.

extension ExperimentRunner {
    /// The instruments' evidence for (model, trait), stored once (reruns read it back):
    /// - the judge, when one is configured: trait AUC on reference answers and coherence AUC on
    ///   fluent vs degenerate answers;
    /// - logodds / ab: priming AUC; perplexity: damage AUC; degeneration: repetition AUC.
    func validationStage(_ model: LanguageModel, trait: Trait, scorer: JudgeScorer?) throws {
        let have = Set(try store.validations().filter { $0.model == model.name && $0.trait == trait.name }.map { InstrumentCheck($0.validation) })
        let missing = Set(instruments.flatMap(\.checks)).subtracting(have)
        guard !missing.isEmpty else { return }
        try stage("validate \(model.name)/\(trait.name)") {
            let ctx = EvaluationContext(runner: self, model: model, trait: trait, scorer: scorer,
                                        teacherForced: try teacherForcedEvaluator(model, trait: trait))
            var results: [InstrumentValidation] = []
            for e in instruments { results += try e.validate(missing: missing, ctx) }
            for v in results {
                try store.record(validation: v, model: model.name, trait: trait.name)
                options.log("validate \(v.instrument) \(v.check) on \(model.name)/\(trait.name): \(v.value.map { String(format: "%.3f", $0) } ?? "n/a") (n=\(v.n), pass ≥ \(v.threshold)) \(v.passed ? "passed" : "FAILED")")
            }
        }
    }

    /// Vetting by the judge. A judge that failed validation cannot vet: that is an error unless
    /// the run allows an invalid judge. Too few survivors is an error naming the trait.
    func vetStage(_ run: ExtractionRun, trait: Trait, scorer: JudgeScorer) throws -> ExtractionRun {
        let judgeChecks = try store.validations().filter { $0.trait == trait.name && $0.validation.instrument == "judge" }
        if judgeChecks.contains(where: { !$0.validation.passed }) && !options.allowInvalidJudge {
            throw ExperimentError("extraction.vetting: the judge \(spec.judge ?? "") failed validation on \(trait.name) (\(judgeChecks.map { "\($0.validation.check) \($0.validation.value.map { String(format: "%.2f", $0) } ?? "n/a")" }.joined(separator: ", "))); it cannot vet samples. Use a better judge, vetting: none, or --allow-invalid-judge")
        }
        let total = run.positiveSamples.count + run.negativeSamples.count
        options.log("vet \(trait.name): judging \(total) extraction samples (trait ≥ 50 / < 50, coherence ≥ 50)")
        let relevance = spec.judgeRelevance, t = trait
        let r: Result<ExtractionRun, Error> = blocking {
            do {
                return .success(try await run.vetted(scorer: { q, a in
                    let ts = try await scorer.traitScore(trait: t.name, definition: t.definition, question: q, answer: a).score
                    let cs = try await scorer.coherence(question: q, answer: a, relevance: relevance).score
                    return (ts, cs)
                }))
            } catch { return .failure(error) }
        }
        let vetted = try r.get()
        let v = vetted.vetting!
        options.log("vet \(trait.name): \(v.summary)")
        let need = spec.extraction.minVetted
        if v.positiveKept < need || v.negativeKept < need {
            throw ExperimentError("trait \(trait.name): vetting kept \(v.positiveKept)/\(v.positiveTotal) positive and \(v.negativeKept)/\(v.negativeTotal) negative samples, fewer than extraction.min_vetted \(need) per side. The model does not show the trait under its instructions: use scenarios (extraction.form: scenarios, positions: prompt:last), more pairs, or a larger model")
        }
        return vetted
    }

    /// The judge-free evaluators of (model, trait), or nil when none is configured.
    func teacherForcedEvaluator(_ model: LanguageModel, trait: Trait) throws -> TeacherForcedEvaluator? {
        guard evaluators.contains(where: \.isTeacherForced) else { return nil }
        let key = "\(model.name)\u{1}\(trait.name)"
        if let e = teacherForcedCache[key] { return e }
        let inputs = try teacherForcedInputs(trait)
        let e = try TeacherForcedEvaluator(model: model, references: inputs.references, abItems: inputs.ab,
                                           neutralTexts: inputs.neutral, positions: spec.steerPositions)
        teacherForcedCache[key] = e
        return e
    }

    /// What the judge-free evaluators of a trait score: its first `reference_items` reference
    /// pairs, the A/B items (the file's, or built from those pairs), the first `perplexity_texts`
    /// neutral texts; empty for evaluators that are not configured.
    func teacherForcedInputs(_ trait: Trait) throws -> TeacherForcedInputs {
        let refs = Array(trait.referenceAnswers.prefix(spec.referenceItems ?? .max))
        var ab: [ABItem] = []
        if spec.evaluators.contains(.ab) {
            ab = try spec.abItems.map { try ABItem.load(path: Self.resolve($0, in: baseDirectory)) } ?? ABItem.fromReferences(refs, seed: spec.seed)
        }
        let neutral = spec.evaluators.contains(.perplexity) ? Array(try PromptFile.shippedNeutral().prefix(spec.perplexityTexts)) : []
        return TeacherForcedInputs(references: refs, ab: ab, neutral: neutral)
    }

    /// The judge-free metrics of every configuration that lacks them, in fixed units of
    /// `metricsUnit` configurations (the plan's order; shards take whole units). A unit is always
    /// computed whole and stored in one transaction, so a resumed or sharded run batches exactly
    /// as an uninterrupted one and stores bit-identical values.
    func metricsStage(_ configs: [Configuration], ctx: SweepContext, label: String, unitFilter: (Int) -> Bool) throws {
        guard let tf = ctx.teacherForced else { return }
        let kinds = evaluators.filter(\.isTeacherForced)
        var have: [EvaluatorKind: Set<String>] = [:]
        for e in kinds { have[e.kind] = Set(try store.metrics(evaluator: e.kind.rawValue).keys) }
        var units: [(index: Int, configs: [Configuration])] = []
        for (u, start) in stride(from: 0, to: configs.count, by: Self.metricsUnit).enumerated() {
            units.append((u, Array(configs[start..<min(start + Self.metricsUnit, configs.count)])))
        }
        let todo = units.filter { u in
            unitFilter(u.index) && u.configs.contains { c in kinds.contains { !(have[$0.kind]?.contains(c.id) ?? false) } }
        }
        guard !todo.isEmpty else { return }
        let total = todo.reduce(0) { $0 + $1.configs.count }
        options.log("metrics \(label): \(kinds.map(\.kind.rawValue).joined(separator: ", ")) for \(total) configurations (\(todo.count) units)")
        let bar = ProgressBar("metrics \(label)", total: total, unit: "configs", enabled: options.showProgress)
        let started = Date()
        for u in todo {
            let edits: [SteeringEdit?] = try u.configs.map { c in
                c.isBaseline ? nil : .add(layer: c.layer, vector: try vector(ctx, c), coef: Float(c.absoluteCoefficient))
            }
            var rows: [ResultsStore.MetricRow] = []
            for e in kinds {
                let values = try e.score(edits, tf)
                for (c, v) in zip(u.configs, values) { rows.append(.init(evaluator: e.kind.rawValue, configId: c.id, values: v.map { stable($0)! })) }
            }
            try store.insert(metrics: rows)
            bar.advance(by: u.configs.count)
        }
        bar.finish()
        try store.finishStage("metrics \(label)", seconds: Date().timeIntervalSince(started),
                              detail: "\(total) configurations, shared layers \(tf.sharedLayers ? "on" : "off")")
    }

    /// Configurations per metrics unit.
    static let metricsUnit = 8
}
