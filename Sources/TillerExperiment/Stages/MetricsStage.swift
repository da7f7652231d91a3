import Foundation
import TillerEval
import TillerModels
import TillerSteering

// Metrics: the judge-free, teacher-forced evaluators (logodds, ab, perplexity) of every
// configuration, in fixed units of `unit` configurations (the plan's order; shards take whole
// units). A unit is always computed whole and stored in one transaction, so a resumed or
// sharded run batches exactly as an uninterrupted one and stores bit-identical values.

struct MetricsStage: PlannedStage {
    /// Configurations per metrics unit.
    static let unit = 8

    /// The listed teacher-forced evaluators, in the file's order.
    let kinds: [ExperimentEvaluator]
    let spec: ExperimentSpec
    let layers: [Int]
    /// The items each evaluator scores for a trait (`ExperimentRunner.teacherForcedInputs`).
    let inputs: (Trait) throws -> TeacherForcedInputs

    init(runner: ExperimentRunner) {
        kinds = runner.evaluators.filter(\.isTeacherForced)
        spec = runner.spec
        layers = runner.layers
        inputs = { [unowned runner] in try runner.teacherForcedInputs($0) }
    }

    func estimate(_ ctx: StagePlanContext) throws -> StageEstimate? {
        guard !kinds.isEmpty else { return nil }
        let configs = ctx.configurations
        let units = (configs + Self.unit - 1) / Self.unit
        let inputs = try inputs(ctx.trait)
        let what = kinds.compactMap { $0.planWork(ctx.trait, spec: spec, inputs: inputs)?.description }
        let s = ctx.calibration.flatMap { c in c.metricsSecondsPerUnit.map { Double(units) * $0 + Double(configs) * c.metricsSecondsPerConfig! } }
        // With the shared prefix a configuration at layer L runs blocks L+1… only (blocks 0…L
        // run once per unit), and its prompts' common head once; the calibration times it that way.
        let shared = TeacherForcedEvaluator.sharedPrefixDefault
            ? String(format: "; shared prefix: blocks 0…L (%.0f%% of a configuration's blocks) run once per unit and item batch, the prompts' common head once per configuration", 100 * Double(layers.map { $0 + 1 }.reduce(0, +)) / Double(layers.count * ctx.model.layerCount))
            : "; shared prefix off"
        var e = StageEstimate("  metrics", what.joined(separator: ", ") + " for \(configs) configurations in \(units) units" + shared,
                              seconds: s, inSweep: true)
        e.counts["metric_configurations"] = configs
        // Without generated answers the metrics units are the sweep's units.
        if !spec.generatesAnswers { e.sweepUnits = units; e.counts["sweep_units"] = units }
        return e
    }

    /// Computes the units `unitFilter` keeps in which a configuration lacks a value of some
    /// evaluator (the cache check), each stored whole.
    func run(_ configs: [Configuration], ctx: ExperimentRunner.SweepContext, runner: ExperimentRunner, label: String, unitFilter: (Int) -> Bool) throws {
        guard let tf = ctx.teacherForced else { return }
        let store = runner.store, options = runner.options
        var have: [EvaluatorKind: Set<String>] = [:]
        for e in kinds { have[e.kind] = Set(try store.metrics(evaluator: e.kind.rawValue).keys) }
        var units: [(index: Int, configs: [Configuration])] = []
        for (u, start) in stride(from: 0, to: configs.count, by: Self.unit).enumerated() {
            units.append((u, Array(configs[start..<min(start + Self.unit, configs.count)])))
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
                c.isBaseline ? nil : .add(layer: c.layer, vector: try runner.vector(ctx, c), coef: Float(c.absoluteCoefficient))
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
                              detail: "\(total) configurations, shared prefix \(tf.sharedPrefix ? "on" : "off")")
    }
}
