import Foundation
import TillerEval
import TillerModels
import TillerSteering
import TillerTokenizers

// `tiller run FILE --plan`: what a run will do (configurations, answers, tokens, judge calls,
// teacher-forced metrics) and how long it should take on this machine, from a short calibration
// of the same operations the run performs, so that a run or a Slurm array can be sized before it
// starts. Nothing is written to the run's output folder.

/// One line of a plan: a stage, how much work it is, and its estimated seconds (nil: not
/// estimated, e.g. a remote judge).
public struct PlanLine: Sendable {
    public var stage: String
    public var work: String
    public var seconds: Double?
    /// A heading for the lines below it (no estimate of its own).
    public var heading = false
}

/// The measured speeds a plan's estimates come from.
public struct PlanCalibration: Sendable {
    /// Prompt tokens per second of an unsteered batched forward.
    public var prefillTokensPerSecond: Double
    /// Seconds of one decode step of `batch` steered sequences.
    public var stepSeconds: Double
    public var batch: Int
    /// Seconds of the teacher-forced metrics (all configured kinds): a fixed part per unit (the
    /// shared prompts) and a part per configuration in it.
    public var metricsSecondsPerUnit: Double?
    public var metricsSecondsPerConfig: Double?
    /// Seconds per judge call (local judge only).
    public var judgeSecondsPerCall: Double?
    public var calibrationSeconds: Double
}

public struct RunPlanSection: Sendable {
    public var model: String
    public var trait: String?
    public var calibration: PlanCalibration?
    public var lines: [PlanLine]
    /// The counts behind the lines: configurations, answers, max_new_tokens_total,
    /// sweep_judge_calls, metric_configurations, sweep_units.
    public var counts: [String: Int] = [:]
}

public struct RunPlan: Sendable {
    public var sections: [RunPlanSection]
    /// Units of sweep work a `--shard i/n` run divides between machines.
    public var sweepUnits: Int
    /// Estimated seconds of the work before the sweep (scan, extraction, variants, validation),
    /// which `--prepare` runs once, and of the sweep itself.
    public var prepareSeconds: Double
    public var sweepSeconds: Double
    /// Stages with work but no estimate (a remote judge).
    public var unestimated: [String]

    public var totalSeconds: Double { prepareSeconds + sweepSeconds }

    /// The plan as text for the terminal.
    public func render() -> String {
        var out = ""
        for s in sections {
            out += s.trait.map { "\n\(s.model) / \($0)\n" } ?? "\n\(s.model)\n"
            if let c = s.calibration {
                var parts = [String(format: "prefill %.0f tok/s", c.prefillTokensPerSecond),
                             String(format: "steered decode %.3f s/step for %d sequences (%.0f tok/s)", c.stepSeconds, c.batch, Double(c.batch) / c.stepSeconds)]
                if let u = c.metricsSecondsPerUnit, let m = c.metricsSecondsPerConfig {
                    parts.append(String(format: "metrics %.2f s/unit + %.2f s/configuration", u, m))
                }
                if let j = c.judgeSecondsPerCall { parts.append(String(format: "local judge %.2f s/call", j)) }
                out += "  calibration (\(String(format: "%.1f", c.calibrationSeconds)) s): " + parts.joined(separator: ", ") + "\n"
            }
            let w0 = max(s.lines.map(\.stage.count).max() ?? 0, 5)
            for l in s.lines {
                let est = l.heading ? "" : "  [" + (l.seconds.map { "≈ " + formatDuration($0) } ?? "not estimated") + "]"
                out += "  " + l.stage.padding(toLength: w0, withPad: " ", startingAt: 0) + "  " + l.work + est + "\n"
            }
        }
        out += "\nEstimated wall time on this machine: ≈ \(formatDuration(totalSeconds))"
        out += " (before the sweep ≈ \(formatDuration(prepareSeconds)), sweep ≈ \(formatDuration(sweepSeconds)))\n"
        if !unestimated.isEmpty { out += "Not included: \(unestimated.joined(separator: "; ")).\n" }
        out += "Generation is estimated at max_new_tokens for every answer (answers that stop early take less); stored work is skipped when a run resumes.\n"
        if sweepUnits > 1 {
            let n = min(sweepUnits, 8)
            out += "Sharding: the sweep has \(sweepUnits) units. Run `tiller run FILE --prepare` once, then `--shard i/n` per machine"
            out += " (i = 0 … n−1): with n = \(n), ≈ \(formatDuration(sweepSeconds / Double(n))) per shard after ≈ \(formatDuration(prepareSeconds)) of preparation, then `tiller merge`.\n"
        }
        return out
    }
}

func formatDuration(_ s: Double) -> String {
    if s < 60 { return String(format: "%.0f s", s.rounded(.up)) }
    if s < 3600 { return String(format: "%d min %02d s", Int(s) / 60, Int(s) % 60) }
    return String(format: "%d h %02d min", Int(s) / 3600, (Int(s) % 3600) / 60)
}

extension ExperimentRunner {
    /// The plan of this run. With `calibrate`, each model is loaded and the run's operations are
    /// timed briefly (a forward, a few steered decode steps, the metrics of one configuration, two
    /// local judge calls); without, only the counts are given. Build the runner on a scratch output
    /// folder: calibration writes the judge cache there.
    public func plan(calibrate: Bool = true) throws -> RunPlan {
        let traits = try spec.traits.map { try resolveTrait($0) }
        var sections: [RunPlanSection] = []
        var prepare = 0.0, sweep = 0.0
        var sweepUnits = 0
        var unestimated: [String] = []
        let judgeSpec = try spec.judge.map { try JudgeSpec(parsing: $0) }
        for modelArg in spec.models {
            let model = try LanguageModel.load(Self.resolveModel(modelArg, in: baseDirectory), backend: options.backend)
            try checkLayers(count: model.layerCount, model: modelArg)
            guard let tokenizer = model.tokenizer else { throw ExperimentError("\(modelArg): the model has no tokenizer") }
            var calibration: PlanCalibration?
            if calibrate {
                calibration = try calibrateModel(model, trait: traits[0], tokenizer: tokenizer, judge: judgeSpec)
            }
            let c = calibration
            func prefill(_ tokens: Int) -> Double? { c.map { Double(tokens) / $0.prefillTokensPerSecond } }

            // Once per model: the scan and the layer norms.
            var texts = try spec.scan.texts.map { try PromptFile.load(path: Self.resolve($0, in: baseDirectory)) } ?? PromptFile.shippedCalibration()
            if let n = spec.scan.maxTexts { texts = Array(texts.prefix(n)) }
            let scanTokens = texts.reduce(0) { $0 + tokenizer.encode($1, addSpecialTokens: true).count }
            let scanSeconds = prefill(scanTokens)
            prepare += scanSeconds ?? 0
            sections.append(RunPlanSection(model: model.name, trait: nil, calibration: calibration, lines: [
                PlanLine(stage: "scan", work: "\(texts.count) texts, \(scanTokens.grouped) tokens, all \(model.layerCount) layers captured", seconds: scanSeconds),
            ]))

            for trait in traits {
                var lines: [PlanLine] = []
                var counts: [String: Int] = [:]
                // Each stage estimates its own work, in the order the run chains them.
                let extraction = try ExtractionStage(spec: spec)
                let ctx = StagePlanContext(model: model, tokenizer: tokenizer, trait: trait,
                                           form: try extraction.form(for: trait, model: model), extraction: extraction.settings,
                                           configurations: SweepStage(spec: spec, variants: variants).configurations, calibration: c)
                for stage in try plannedStages() {
                    guard let e = try stage.estimate(ctx) else { continue }
                    lines += e.lines
                    counts.merge(e.counts) { a, _ in a }
                    if e.inSweep { sweep += e.seconds } else { prepare += e.seconds }
                    sweepUnits += e.sweepUnits
                    unestimated += e.unestimated
                }
                sections.append(RunPlanSection(model: model.name, trait: trait.name, calibration: nil, lines: lines, counts: counts))
            }
        }
        return RunPlan(sections: sections, sweepUnits: sweepUnits, prepareSeconds: prepare, sweepSeconds: sweep, unestimated: unestimated)
    }

    /// Times, on `model`, the operations the run repeats.
    private func calibrateModel(_ model: LanguageModel, trait: Trait, tokenizer: Tokenizer, judge: JudgeSpec?) throws -> PlanCalibration {
        let t0 = Date()
        let batch = max(1, min(spec.batchSize, 64))
        let questions = trait.steeringQuestions.isEmpty ? ["Hello."] : trait.steeringQuestions
        let prompts = try (0..<batch).map { try PromptFormat.prompt(tokenizer, user: questions[$0 % questions.count]) }
        // Prefill: the batch's prompts, unsteered, with a warm-up pass first.
        _ = try model.forward(Array(prompts.prefix(2)), logits: .last)
        var t = Date()
        _ = try model.forward(prompts, logits: .last)
        let prefillSeconds = max(Date().timeIntervalSince(t), 1e-6)
        let prefillRate = Double(prompts.reduce(0) { $0 + $1.count }) / prefillSeconds
        // Decode: a few steered steps of the whole batch (the steering add costs what a real vector does).
        var v = [Float](repeating: 0, count: model.hiddenSize)
        v[0] = 1
        let edit = SteeringEdit.add(layer: layers[0], vector: v, coef: 1e-3, positions: spec.steerPositions)
        let steps = 8
        t = Date()
        _ = try model.generate(prompts, options: GenerationOptions(maxNewTokens: steps, temperature: 0, stopTokens: []),
                               steering: Array(repeating: SteeringSpec(edits: [edit]), count: batch))
        let stepSeconds = max((Date().timeIntervalSince(t) - prefillSeconds) / Double(steps), 1e-6)
        // Teacher-forced metrics on a slice of the items (each item costs about the same), for
        // one configuration and for a whole unit: a unit's prompts are shared by its
        // configurations, so the difference gives the cost per configuration, the rest the cost
        // per unit; both scale up to the full item counts (the baseline's cost: steering is one add).
        var perUnit: Double?, perConfig: Double?
        let kinds = evaluators.filter(\.isTeacherForced)
        if !kinds.isEmpty {
            let full = try teacherForcedInputs(trait)
            let work = kinds.map { $0.planWork(trait, spec: spec, inputs: full)! }
            let slice = TeacherForcedInputs(references: Array(full.references.prefix(4)), ab: Array(full.ab.prefix(4)), neutral: Array(full.neutral.prefix(2)))
            let tf = try TeacherForcedEvaluator(model: model, references: slice.references, abItems: slice.ab, neutralTexts: slice.neutral,
                                                positions: spec.steerPositions)
            func ratio(_ a: Int, _ b: Int) -> Double { b == 0 ? 0 : Double(a) / Double(b) }
            // The unit's configurations steer at the sweep's layers in turn (a tiny vector), so
            // that a shared layer prefix is timed as the sweep will use it.
            var v = [Float](repeating: 0, count: model.hiddenSize)
            v[0] = 1
            func time(_ n: Int) throws -> Double {
                let edits: [SteeringEdit?] = (0..<n).map { $0 == 0 ? nil : .add(layer: layers[$0 % layers.count], vector: v, coef: 1e-3) }
                var total = 0.0
                for (e, w) in zip(kinds, work) {
                    let t = Date(); _ = try e.score(edits, tf); total += Date().timeIntervalSince(t) * ratio(w.items, w.calibrationItems)
                }
                return total
            }
            let one = try time(1), unit = try time(MetricsStage.unit)
            perConfig = max((unit - one) / Double(MetricsStage.unit - 1), 0)
            perUnit = max(one - perConfig!, 0)
        }
        // A local judge: two real calls (a trait score and a coherence score) on a reference answer.
        var judgeCall: Double?
        if let judge, judge.backend == .local, let ref = trait.referenceAnswers.first {
            let scorer = try makeScorer(for: model)
            t = Date()
            let r: Result<Void, Error> = blocking {
                do {
                    _ = try await scorer.traitScore(trait: trait.name, definition: trait.definition, question: ref.question, answer: ref.neg)
                    _ = try await scorer.coherenceOnly(question: ref.question, answer: ref.neg)
                    return .success(())
                } catch { return .failure(error) }
            }
            try r.get()
            judgeCall = Date().timeIntervalSince(t) / 2
        }
        return PlanCalibration(prefillTokensPerSecond: prefillRate, stepSeconds: stepSeconds, batch: batch,
                               metricsSecondsPerUnit: perUnit, metricsSecondsPerConfig: perConfig, judgeSecondsPerCall: judgeCall,
                               calibrationSeconds: Date().timeIntervalSince(t0))
    }
}

extension Int {
    /// 12,345: counts in plans read at a glance.
    var grouped: String {
        let digits = String(Swift.abs(self))
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return self < 0 ? "-" + out : out
    }
}
