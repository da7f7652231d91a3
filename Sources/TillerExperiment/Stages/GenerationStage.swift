import Foundation
import TillerEval
import TillerModels
import TillerSteering
import TillerTokenizers

// Generation: the answers of every configuration to the trait's steering questions, steered,
// batched in fixed units (a resumed or sharded run batches exactly as an uninterrupted one).

public struct GenerationStage: PlannedStage, Sendable {
    public struct Settings: Sendable, Equatable {
        public var questionsPerTrait = 10
        public var samplesPerQuestion = 1
        public var maxNewTokens = 64
        public var temperature = 0.0
        /// Sample s of every answer uses seed + s.
        public var seed: UInt64 = 0
        /// Sequences generated together (one steering spec each).
        public var batchSize = 32
        /// Where steering acts (`steer_positions`).
        public var positions: SteeringPositions = .response
        public init() {}
        public init(spec: ExperimentSpec) {
            questionsPerTrait = spec.questionsPerTrait
            samplesPerQuestion = spec.samplesPerQuestion
            maxNewTokens = spec.maxNewTokens
            temperature = spec.temperature
            seed = spec.seed
            batchSize = spec.batchSize
            positions = spec.steerPositions
        }
    }

    public var settings: Settings
    public init(settings: Settings) { self.settings = settings }
    public init(spec: ExperimentSpec) { settings = Settings(spec: spec) }

    /// The units of `configs`' answers (the plan's order; shards take whole units).
    func units(_ configs: [Configuration]) -> [WorkUnit] {
        SweepPlanner.units(configs: configs, questions: settings.questionsPerTrait, samples: settings.samplesPerQuestion,
                           batchSize: settings.batchSize)
    }

    func estimate(_ ctx: StagePlanContext) throws -> StageEstimate? {
        let s = settings, configs = ctx.configurations
        let answers = configs * s.questionsPerTrait * s.samplesPerQuestion
        let units = (answers + s.batchSize - 1) / s.batchSize
        let promptTokens = try (0..<s.questionsPerTrait).reduce(0) {
            $0 + (try PromptFormat.prompt(ctx.tokenizer, user: ctx.trait.steeringQuestions[$1]).count)
        } * configs * s.samplesPerQuestion
        let seconds = ctx.calibration.map { Double(promptTokens) / $0.prefillTokensPerSecond + Double(units * s.maxNewTokens) * $0.stepSeconds * Double(min(s.batchSize, answers)) / Double($0.batch) }
        var e = StageEstimate("  answers", "\(answers.grouped) (\(configs) × \(s.questionsPerTrait) questions × \(s.samplesPerQuestion) sample\(s.samplesPerQuestion == 1 ? "" : "s")) in \(units) units of ≤ \(s.batchSize); \(promptTokens.grouped) prompt + ≤ \((answers * s.maxNewTokens).grouped) new tokens",
                              seconds: seconds, inSweep: true)
        e.sweepUnits = units
        e.counts = ["answers": answers, "max_new_tokens_total": answers * s.maxNewTokens, "sweep_units": units]
        return e
    }

    /// Generates the answers of the units `unitFilter` keeps that are not all stored (the
    /// cache check: a unit whose answers are all stored is skipped), each unit stored whole.
    func run(_ configs: [Configuration], ctx: ExperimentRunner.SweepContext, runner: ExperimentRunner, label: String, unitFilter: (Int) -> Bool) throws {
        let s = settings, model = ctx.model, store = runner.store, options = runner.options
        let units = self.units(configs).filter { unitFilter($0.index) }
        let done = try store.generationKeys()
        let todo = units.filter { u in !u.items.allSatisfy { done.contains($0.key) } }
        guard !todo.isEmpty else { return }
        guard let tok = model.tokenizer else { throw ExperimentError("model \(model.name) has no tokenizer") }
        let prompts = try (0..<s.questionsPerTrait).map { try PromptFormat.prompt(tok, user: ctx.trait.steeringQuestions[$0]) }
        let total = todo.reduce(0) { $0 + $1.items.count }
        options.log("generate \(label): \(total) answers in \(todo.count) batches (\(units.count - todo.count) batches stored)")
        let bar = ProgressBar("generate \(label)", total: total, unit: "answers", enabled: options.showProgress)
        let started = Date()
        for u in todo {
            let t = Date()
            var rows: [GenerationRow] = []
            // One call per sample index: the seed is per call, so sample s of every item uses seed + s.
            for sample in Set(u.items.map(\.sample)).sorted() {
                let items = u.items.filter { $0.sample == sample }
                let steering: [SteeringSpec?] = try items.map { it in
                    guard !it.config.isBaseline else { return nil }
                    return SteeringSpec(.add(layer: it.config.layer, vector: try runner.vector(ctx, it.config),
                                             coef: Float(it.config.absoluteCoefficient), positions: s.positions))
                }
                let opts = GenerationOptions(maxNewTokens: s.maxNewTokens, temperature: s.temperature, seed: s.seed &+ UInt64(sample))
                let results = try model.generate(items.map { prompts[$0.question] }, options: opts, steering: steering)
                for (it, r) in zip(items, results) {
                    rows.append(GenerationRow(configId: it.config.id, question: it.question, sample: it.sample,
                                              prompt: ctx.trait.steeringQuestions[it.question],
                                              response: r.text ?? tok.decode(r.tokens, skipSpecialTokens: true),
                                              tokens: r.tokens.count, seconds: 0, finish: r.finishReason.rawValue))
                }
            }
            let per = Date().timeIntervalSince(t) / Double(max(rows.count, 1))
            for i in rows.indices { rows[i].seconds = per }
            try store.insert(generations: rows)
            bar.advance(by: rows.count)
        }
        bar.finish()
        try store.finishStage("generate \(label)", seconds: Date().timeIntervalSince(started), detail: "\(total) answers")
    }
}
