import Foundation
import TillerEval
import TillerModels
import TillerSteering

// The sweep: the baseline and every (variant, layer, coefficient) configuration, on a grid or by
// an adaptive search of the coherence cliff. Each batch of configurations chains the metrics,
// generation and judging stages; each skips the work already stored.

struct SweepStage: PlannedStage {
    let coefficients: CoefficientPlan
    let variants: Int
    let layers: Int

    init(spec: ExperimentSpec, variants: [VariantSpec]) {
        coefficients = spec.coefficients
        self.variants = variants.count
        layers = spec.layers.layers.count
    }

    /// Configurations evaluated: the baseline and each (variant, layer) × its coefficients (at
    /// most, for a search).
    var configurations: Int {
        if let search = coefficients.search { return 1 + variants * layers * (search.maxSteps + search.refine) }
        return 1 + variants * layers * coefficients.values.count
    }

    func estimate(_ ctx: StagePlanContext) -> StageEstimate? {
        let work: String
        if let search = coefficients.search {
            work = "≤ \(configurations) configurations (1 baseline + \(variants) variants × \(layers) layers × ≤ \(search.maxSteps + search.refine) searched coefficients)"
        } else {
            work = "\(configurations) configurations (1 baseline + \(variants) variants × \(layers) layers × \(coefficients.values.count) coefficients)"
        }
        var e = StageEstimate(heading: "sweep", work)
        e.counts["configurations"] = configurations
        return e
    }
}

extension ExperimentRunner {
    func sweepStage(_ model: LanguageModel, trait: Trait, vectors: [String: SteeringVectorFile], scorer: JudgeScorer?) throws {
        let norms = try store.layerNorms(model: model.name)
        let norm: (Int) throws -> Double = { l in
            guard let n = norms[l] else { throw ExperimentError("no layer norm stored for \(model.name) L\(l)") }
            return n.excludingMassive
        }
        let ctx = SweepContext(model: model, trait: trait, vectors: vectors, scorer: spec.evaluators.contains(.judge) ? scorer : nil,
                               teacherForced: try teacherForcedEvaluator(model, trait: trait))
        let label = "\(model.name)/\(trait.name)"
        if let search = spec.coefficients.search {
            // Round r evaluates every search's r-th coefficient together (one batch across searches).
            let threshold = search.threshold ?? spec.coherenceThresholds[0]
            let keys = variants.flatMap { v in layers.map { (v.name, $0) } }
            let mine = keys.enumerated().filter { options.shard.owns($0.offset) }.map(\.element)
            var history: [String: [(coefficient: Double, coherence: Double?)]] = [:]
            let baseline = Configuration.baseline(model: model.name, trait: trait.name)
            try evaluate([baseline], ctx: ctx, label: "\(label) baseline", unitFilter: { _ in options.shard.index == 0 })
            var round = 0
            while true {
                var configs: [Configuration] = []
                for (v, l) in mine {
                    let k = "\(v)@\(l)"
                    if let c = SweepPlanner.nextCoefficient(search, threshold: threshold, history: history[k] ?? []) {
                        configs.append(try SweepPlanner.configuration(model: model.name, trait: trait.name, variant: v, layer: l,
                                                                      scale: spec.coefficients.scale, coefficient: c, norm: norm))
                    }
                }
                if configs.isEmpty { break }
                round += 1
                try evaluate(configs, ctx: ctx, label: "\(label) search round \(round)", unitFilter: { _ in true })
                let coh = try meanCoherence(configs.map(\.id))
                for c in configs { history["\(c.variant)@\(c.layer)", default: []].append((c.coefficient, coh[c.id] ?? nil)) }
            }
        } else {
            let configs = try SweepPlanner.grid(model: model.name, trait: trait.name, variants: variants.map(\.name), layers: layers,
                                                plan: spec.coefficients, norm: norm)
            try evaluate(configs, ctx: ctx, label: label, unitFilter: options.shard.owns)
        }
        try store.finishStage("sweep \(label)\(options.shard.isAll ? "" : " shard \(options.shard)")", seconds: 0,
                              detail: "\(try store.count("generations")) answers, \(try store.count("scores")) scored")
    }

    struct SweepContext {
        let model: LanguageModel
        let trait: Trait
        let vectors: [String: SteeringVectorFile]
        let scorer: JudgeScorer?
        let teacherForced: TeacherForcedEvaluator?
    }

    func meanCoherence(_ ids: [String]) throws -> [String: Double?] {
        let want = Set(ids)
        var acc: [String: [Double]] = [:]
        for s in try store.scores() where want.contains(s.configId) { if let c = s.coherence { acc[s.configId, default: []].append(c) } }
        var out: [String: Double?] = [:]
        for id in ids { out[id] = acc[id].map { $0.reduce(0, +) / Double($0.count) } }
        return out
    }

    /// The metrics of `configs` (the units the filter keeps), their missing answers, then the
    /// judge's scores of every stored answer of theirs that has none.
    func evaluate(_ configs: [Configuration], ctx: SweepContext, label: String, unitFilter: (Int) -> Bool) throws {
        var digests: [String: String] = [:]
        for c in configs where !c.isBaseline {
            digests[c.id] = digest(try vector(ctx, c))
        }
        try store.insert(configurations: configs, digests: digests)
        try MetricsStage(runner: self).run(configs, ctx: ctx, runner: self, label: label, unitFilter: unitFilter)
        guard spec.generatesAnswers else { return }
        try GenerationStage(spec: spec).run(configs, ctx: ctx, runner: self, label: label, unitFilter: unitFilter)
        if let scorer = ctx.scorer {
            let started = Date()
            try JudgingStage(spec: spec).run(configIds: Set(configs.map(\.id)), ctx: ctx, scorer: scorer, store: store, label: label, log: stageLog)
            try store.finishStage("judge \(label)", seconds: Date().timeIntervalSince(started))
        }
    }

    func vector(_ ctx: SweepContext, _ c: Configuration) throws -> [Float] {
        guard let f = ctx.vectors[c.variant] else { throw ExperimentError("no vectors for variant \(c.variant)") }
        return try f.vector(layer: c.layer, hidden: ctx.model.hiddenSize)
    }
}
