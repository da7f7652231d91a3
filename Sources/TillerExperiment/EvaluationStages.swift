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
        let have = Set(try store.validations().filter { $0.model == model.name && $0.trait == trait.name }
            .map { "\($0.validation.instrument)/\($0.validation.check)" })
        let minAUC = spec.judgeValidation.minAUC
        var wanted: [String] = []
        if spec.judge != nil { wanted += ["judge/trait_auc", "judge/coherence_auc"] }
        for e in spec.evaluators {
            switch e {
            case .judge: break
            case .logodds: wanted.append("logodds/primed_auc")
            case .ab: wanted.append("ab/primed_auc")
            case .perplexity: wanted.append("perplexity/damage_auc")
            case .degeneration: wanted.append("degeneration/repetition_auc")
            }
        }
        guard !Set(wanted).isSubset(of: have) else { return }
        try stage("validate \(model.name)/\(trait.name)") {
            var results: [InstrumentValidation] = []
            if let scorer, !have.contains("judge/trait_auc") || !have.contains("judge/coherence_auc") {
                let n = min(spec.judgeValidation.items, trait.referenceAnswers.count)
                let total = n * 7
                options.log("validate judge \(spec.judge ?? "") on \(trait.name): \(total) scores of known cases")
                let bar = ProgressBar("validate judge", total: total, unit: "scores", enabled: options.showProgress)
                let t = trait, relevance = spec.judgeRelevance, plan = spec.judgeValidation, seed = spec.seed
                let r: Result<[InstrumentValidation], Error> = blocking {
                    do {
                        return .success(try await JudgeValidation.run(scorer: scorer, trait: t.name, definition: t.definition,
                                                                      references: t.referenceAnswers, items: plan.items, minAUC: plan.minAUC,
                                                                      relevance: relevance, seed: seed, progress: { _ in bar.advance(by: 1) }))
                    } catch { return .failure(error) }
                }
                bar.finish()
                results += try r.get()
            }
            if let tf = try teacherForcedEvaluator(model, trait: trait) {
                if spec.evaluators.contains(.logodds) && !have.contains("logodds/primed_auc") { results.append(try tf.validateLogOdds(minAUC: minAUC)) }
                if spec.evaluators.contains(.ab) && !have.contains("ab/primed_auc") { results.append(try tf.validateAB(minAUC: minAUC)) }
                if spec.evaluators.contains(.perplexity) && !have.contains("perplexity/damage_auc") {
                    let l = layers[layers.count / 2]
                    let norm = try store.layerNorms(model: model.name)[l]?.excludingMassive ?? 1
                    results.append(try tf.validatePerplexity(layer: l, norm: norm, minAUC: minAUC, seed: spec.seed))
                }
            }
            if spec.evaluators.contains(.degeneration) && !have.contains("degeneration/repetition_auc") {
                let fluent = trait.referenceAnswers.flatMap { [$0.pos, $0.neg] }
                results.append(Degeneration.validate(fluent: fluent, minAUC: minAUC, seed: spec.seed))
            }
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
        let wants = spec.evaluators.contains(.logodds) || spec.evaluators.contains(.ab) || spec.evaluators.contains(.perplexity)
        guard wants else { return nil }
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
    func teacherForcedInputs(_ trait: Trait) throws -> (references: [ReferenceAnswer], ab: [ABItem], neutral: [String]) {
        let refs = Array(trait.referenceAnswers.prefix(spec.referenceItems ?? .max))
        var ab: [ABItem] = []
        if spec.evaluators.contains(.ab) {
            ab = try spec.abItems.map { try ABItem.load(path: Self.resolve($0, in: baseDirectory)) } ?? ABItem.fromReferences(refs, seed: spec.seed)
        }
        let neutral = spec.evaluators.contains(.perplexity) ? Array(try PromptFile.shippedNeutral().prefix(spec.perplexityTexts)) : []
        return (refs, ab, neutral)
    }

    /// The judge-free metrics of every configuration that lacks them, in fixed units of
    /// `metricsUnit` configurations (the plan's order; shards take whole units). A unit is always
    /// computed whole and stored in one transaction, so a resumed or sharded run batches exactly
    /// as an uninterrupted one and stores bit-identical values.
    func metricsStage(_ configs: [Configuration], ctx: SweepContext, label: String, unitFilter: (Int) -> Bool) throws {
        guard let tf = ctx.teacherForced else { return }
        let kinds = [EvaluatorKind.logodds, .ab, .perplexity].filter { spec.evaluators.contains($0) }
        var have: [EvaluatorKind: Set<String>] = [:]
        for k in kinds { have[k] = Set(try store.metrics(evaluator: k.rawValue).keys) }
        var units: [(index: Int, configs: [Configuration])] = []
        for (u, start) in stride(from: 0, to: configs.count, by: Self.metricsUnit).enumerated() {
            units.append((u, Array(configs[start..<min(start + Self.metricsUnit, configs.count)])))
        }
        let todo = units.filter { u in
            unitFilter(u.index) && u.configs.contains { c in kinds.contains { !(have[$0]?.contains(c.id) ?? false) } }
        }
        guard !todo.isEmpty else { return }
        let total = todo.reduce(0) { $0 + $1.configs.count }
        options.log("metrics \(label): \(kinds.map(\.rawValue).joined(separator: ", ")) for \(total) configurations (\(todo.count) units)")
        let bar = ProgressBar("metrics \(label)", total: total, unit: "configs", enabled: options.showProgress)
        let started = Date()
        for u in todo {
            let edits: [SteeringEdit?] = try u.configs.map { c in
                c.isBaseline ? nil : .add(layer: c.layer, vector: try vector(ctx, c), coef: Float(c.absoluteCoefficient))
            }
            var rows: [ResultsStore.MetricRow] = []
            for k in kinds {
                let values: [[Double]]
                switch k {
                case .logodds: values = try tf.logOdds(edits)
                case .ab: values = try tf.ab(edits)
                case .perplexity: values = try tf.meanNLL(edits)
                default: continue
                }
                for (c, v) in zip(u.configs, values) { rows.append(.init(evaluator: k.rawValue, configId: c.id, values: v.map { stable($0)! })) }
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
