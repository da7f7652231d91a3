import Foundation
import TillerEval
import TillerFormats
import TillerModels
import TillerSteering
import TillerTokenizers

// `tiller run`: the stages of an experiment, each cached (a file or rows that exist are not
// recomputed): scan → layer norms → extraction → variants → baseline + sweep (batched steered
// generation) → judging → selection and report.
//
// Output folder:
//   results.sqlite                      everything below the vectors, plus the judge cache
//   <model>/scan.json                   massive-activation scan
//   <model>/<trait>/activations.safetensors, samples.jsonl     contrastive extraction
//   <model>/<trait>/vectors/<variant>.safetensors               cleaned variants (sweep layers only)
//   report.md, report.html              steering-sweep tables and the summary tables

public struct RunOptions: Sendable {
    public var shard: Shard = .all
    public var showProgress = true
    /// Write the report at the end (a shard's report only covers its slice).
    public var writeReport = true
    /// Stop after scan, extraction and variants (run once before shards start, so every shard
    /// uses the same vector files).
    public var prepareOnly = false
    /// Exit status policy: a judge that failed validation but scored tables (or vetted samples)
    /// makes `run` report failure unless this is set.
    public var allowInvalidJudge = false
    /// Where the models run (`tiller run --device`; default the CPU).
    public var backend: Backend = CPUBackend.shared
    /// Print what each stage does.
    public var log: @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    public init() {}
}

public final class ExperimentRunner {
    public let spec: ExperimentSpec
    /// Folder of the experiment file (relative paths in it are resolved against it).
    public let baseDirectory: String
    public let outputDirectory: String
    public let options: RunOptions
    public let store: ResultsStore
    let variants: [VariantSpec]
    let layers: [Int]
    var judgeModels: [String: LanguageModel] = [:]
    var teacherForcedCache: [String: TeacherForcedEvaluator] = [:]
    /// The file's evaluators, built once; `instruments` adds a configured judge that is not
    /// listed (it vets samples, so it is validated all the same).
    let evaluators: [ExperimentEvaluator]
    let instruments: [ExperimentEvaluator]

    public static let databaseName = "results.sqlite"

    public init(spec: ExperimentSpec, baseDirectory: String, outputDirectory: String? = nil, options: RunOptions = RunOptions()) throws {
        try spec.validate()
        self.spec = spec
        self.baseDirectory = baseDirectory
        let out = outputDirectory ?? spec.output.map { Self.resolve($0, in: baseDirectory) }
            ?? (baseDirectory as NSString).appendingPathComponent("runs/\(spec.name)")
        self.outputDirectory = out
        self.options = options
        variants = try spec.variantSpecs()
        (evaluators, instruments) = ExperimentEvaluators.build(spec)
        layers = spec.layers.layers
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let dbName = options.shard.isAll ? Self.databaseName : "results.shard\(options.shard.index)of\(options.shard.count).sqlite"
        store = try ResultsStore(path: (out as NSString).appendingPathComponent(dbName))
        try store.register(spec)
    }

    static func resolve(_ p: String, in dir: String) -> String {
        p.hasPrefix("/") ? p : (dir as NSString).appendingPathComponent(p)
    }

    /// Runs every stage that is not done yet.
    public func run() throws {
        let t0 = Date()
        // Everything checkable from the files comes first, before any model work.
        let traits = try spec.traits.map { try resolveTrait($0) }
        if !options.prepareOnly || spec.extraction.vetting == .judge { try preflightJudge() }
        // Every model's layers are checked from its config before any work on the first.
        for m in spec.models {
            let config = try ModelCache.openWeightSource(ModelCache.resolve(Self.resolveModel(m, in: baseDirectory))).config
            try checkLayers(count: config.numHiddenLayers, model: m)
        }
        for modelArg in spec.models {
            let model = try stage("load \(modelArg)", record: false) { try LanguageModel.load(Self.resolveModel(modelArg, in: baseDirectory), backend: options.backend) }
            let scan = try scanStage(model)
            try normsStage(model, scan: scan)
            for trait in traits {
                let scorer = spec.judge == nil ? nil : try makeScorer(for: model)
                if !options.prepareOnly || spec.extraction.vetting == .judge {
                    try validationStage(model, trait: trait, scorer: scorer)
                }
                let run = try extractionStage(model, trait: trait, scorer: scorer)
                let vectors = try variantsStage(model, trait: trait, run: run, scan: scan)
                if !options.prepareOnly { try sweepStage(model, trait: trait, vectors: vectors, scorer: scorer) }
            }
        }
        options.log(String(format: "all stages done in %.1fs", Date().timeIntervalSince(t0)))
        if options.writeReport && !options.prepareOnly {
            if !options.shard.isAll {
                options.log("shard \(options.shard): merge the shard databases with `tiller merge`, then `tiller report`")
            } else {
                let paths = try ExperimentReport(store: store).write(directory: outputDirectory)
                options.log("report: \(paths.markdown) and \(paths.html)")
            }
        }
    }

    static func resolveModel(_ arg: String, in dir: String) -> String {
        let p = resolve(arg, in: dir)
        return (arg.contains("/") || arg.hasSuffix(".gguf")) && FileManager.default.fileExists(atPath: p) ? p : arg
    }

    @discardableResult
    func stage<T>(_ name: String, record: Bool = true, _ body: () throws -> T) throws -> T {
        let t = Date()
        let v = try body()
        if record { try store.finishStage(name, seconds: Date().timeIntervalSince(t)) }
        return v
    }

    func modelDirectory(_ model: LanguageModel) -> String {
        (outputDirectory as NSString).appendingPathComponent(model.name.replacingOccurrences(of: "/", with: "_"))
    }

    // MARK: Scan

    func scanStage(_ model: LanguageModel) throws -> ScanResult {
        let dir = modelDirectory(model)
        let path = (dir as NSString).appendingPathComponent("scan.json")
        if FileManager.default.fileExists(atPath: path), let s = try? ScanResult.load(path: path), s.model == model.name,
           s.nLayers == model.layerCount {
            options.log("scan \(model.name): cached (\(path))")
            try store.setArtifact(model: model.name, kind: "scan", content: try String(contentsOfFile: path, encoding: .utf8))
            return s
        }
        return try stage("scan \(model.name)") {
            var texts = try spec.scan.texts.map { try PromptFile.load(path: Self.resolve($0, in: baseDirectory)) } ?? PromptFile.shippedCalibration()
            if let n = spec.scan.maxTexts { texts = Array(texts.prefix(n)) }
            options.log("scan \(model.name): \(texts.count) calibration texts")
            let s = try MassiveActivationScan.run(model: model, texts: texts, showProgress: options.showProgress)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try s.write(path: path)
            try store.setArtifact(model: model.name, kind: "scan", content: try String(contentsOfFile: path, encoding: .utf8))
            return s
        }
    }

    // MARK: Layer norms

    /// Sweep layers must exist in the model (checked from its config, before any work).
    func checkLayers(count: Int, model: String) throws {
        for l in layers where l >= count {
            throw ExperimentError("layers: \(l) is out of range for \(model) (\(count) layers, 0…\(count - 1))")
        }
    }

    /// A shipped trait's name or a trait file (relative to the experiment file), with the data
    /// the configured evaluators need.
    func resolveTrait(_ arg: String) throws -> Trait {
        let p = Self.resolve(arg, in: baseDirectory)
        let trait = try Trait.resolve(FileManager.default.fileExists(atPath: p) ? p : arg)
        if spec.generatesAnswers, trait.steeringQuestions.count < spec.questionsPerTrait {
            throw ExperimentError("trait \(trait.name) (\(trait.source)) has \(trait.steeringQuestions.count) steering questions, fewer than questions_per_trait \(spec.questionsPerTrait)")
        }
        let needsReferences = spec.evaluators.contains(.logodds) || (spec.evaluators.contains(.ab) && spec.abItems == nil)
            || spec.judge != nil
        if needsReferences, trait.referenceAnswers.count < 4 {
            throw ExperimentError("trait \(trait.name) (\(trait.source)) has \(trait.referenceAnswers.count) reference_answers; logodds, ab and judge validation need at least 4 (question, pos, neg)")
        }
        if spec.generatesAnswers && spec.questionsPerTrait < 4 {
            FileHandle.standardError.write(Data("warning: questions_per_trait \(spec.questionsPerTrait): with fewer than 4 questions the held-out half cannot give a confidence interval\n".utf8))
        }
        return trait
    }

    /// Mean ‖resid_post.L‖ over calibration tokens (the first token, the attention sink, left
    /// out), with and without the dims the scan flags massive at L. Relative coefficients are
    /// multiples of the latter.
    func normsStage(_ model: LanguageModel, scan: ScanResult) throws {
        let have = try store.layerNorms(model: model.name)
        if layers.allSatisfy({ have[$0] != nil }) { return }
        try stage("norms \(model.name)") {
            for (l, n) in try LayerNorms.measure(model: model, layers: layers, scan: scan) {
                try store.setLayerNorm(model: model.name, layer: l, mean: n.mean, excludingMassive: n.excludingMassive, excluded: n.excluded)
            }
        }
    }

    // MARK: Extraction and variants

    func traitDirectory(_ model: LanguageModel, _ trait: Trait) -> String {
        (modelDirectory(model) as NSString).appendingPathComponent(trait.name)
    }

    func extractionSettings() throws -> ExtractionSettings {
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
        return s
    }

    func extractionStage(_ model: LanguageModel, trait: Trait, scorer: JudgeScorer?) throws -> ExtractionRun {
        let dir = traitDirectory(model, trait)
        let settings = try extractionSettings()
        let form = try ContrastiveExtraction.form(for: trait, model: model, requested: settings.form)
        // Teacher-forced scenarios (the text itself carries the trait, nothing is generated)
        // need no vetting; generated answers are vetted when the file asks for it.
        let vet = spec.extraction.vetting == .judge && !(form == .scenarios && settings.positions == .lastPrompt)
        if let run = try? ExtractionRun.load(directory: dir), run.matches(model: model.name, trait: trait, form: form, settings: settings),
           (run.vetting != nil) == vet {
            options.log("extract \(model.name)/\(trait.name): cached (\(dir))")
            if let v = run.vetting { options.log("extract \(model.name)/\(trait.name): \(v.summary)") }
            try recordExtraction(run, model: model, trait: trait)
            return run
        }
        return try stage("extract \(model.name)/\(trait.name)") {
            var run = try ContrastiveExtraction.collect(model: model, trait: trait, settings: settings, showProgress: options.showProgress)
            if vet, let scorer {
                run = try vetStage(run, trait: trait, scorer: scorer)
            }
            try run.save(directory: dir)
            try recordExtraction(run, model: model, trait: trait)
            return run
        }
    }

    /// What the vectors were extracted from (form, sample counts, vetting survivors), for the report.
    func recordExtraction(_ run: ExtractionRun, model: LanguageModel, trait: Trait) throws {
        let record = ExtractionRecord(form: run.form.rawValue, positions: try extractionSettings().positions.description,
                                      positive: run.positiveSamples.count, negative: run.negativeSamples.count, vetting: run.vetting)
        try store.setArtifact(model: model.name, trait: trait.name, kind: ExtractionRecord.kind,
                              content: String(decoding: try JSONEncoder().encode(record), as: UTF8.self))
    }

    /// Vector files per variant (sweep layers); reused when present with the same layers and
    /// made from the stored activations (checked by the run's sample counts and positions).
    func variantsStage(_ model: LanguageModel, trait: Trait, run: ExtractionRun, scan: ScanResult) throws -> [String: SteeringVectorFile] {
        let dir = (traitDirectory(model, trait) as NSString).appendingPathComponent("vectors")
        var out: [String: SteeringVectorFile] = [:]
        var missing: [VariantSpec] = []
        for v in variants {
            let p = (dir as NSString).appendingPathComponent(v.name + ".safetensors")
            if let f = try? SteeringVectorFile.load(path: p), Set(layers).isSubset(of: Set(f.layers)),
               f.metadata.positiveSamples == run.positiveSamples.count, f.metadata.negativeSamples == run.negativeSamples.count,
               f.metadata.positions == run.positions {
                out[v.name] = f
            } else {
                missing.append(v)
            }
        }
        if !missing.isEmpty {
            try stage("variants \(model.name)/\(trait.name)") {
                options.log("variants \(model.name)/\(trait.name): \(missing.map(\.name).joined(separator: ", "))")
                let vs = try VariantExtractor().run(run.activations, specs: missing, layers: layers) { sel, layer in scan.dims(for: sel, layer: layer) }
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                for ev in vs {
                    var f = SteeringVectorFile(ev, model: model.name, trait: trait.name, positions: run.positions,
                                               positiveSamples: run.positiveSamples.count, negativeSamples: run.negativeSamples.count)
                    let p = (dir as NSString).appendingPathComponent(ev.spec.name + ".safetensors")
                    try f.write(to: p)
                    f.path = p
                    out[ev.spec.name] = f
                }
            }
        } else {
            options.log("variants \(model.name)/\(trait.name): cached (\(dir))")
        }
        for v in variants {
            let f = out[v.name]!
            for l in layers {
                try store.record(vector: digest(try f.vector(layer: l, hidden: model.hiddenSize)), model: model.name, trait: trait.name,
                                 variant: v.name, layer: l, cleanedDims: f.metadata.cleanedDims[l] ?? [], file: f.path ?? "")
            }
        }
        return out
    }

    // MARK: Sweep

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

    /// Generates the missing units among `configs` (those the filter keeps), then judges every
    /// stored answer of these configurations that has no score.
    func evaluate(_ configs: [Configuration], ctx: SweepContext, label: String, unitFilter: (Int) -> Bool) throws {
        let model = ctx.model
        var digests: [String: String] = [:]
        for c in configs where !c.isBaseline {
            digests[c.id] = digest(try vector(ctx, c))
        }
        try store.insert(configurations: configs, digests: digests)
        try metricsStage(configs, ctx: ctx, label: label, unitFilter: unitFilter)
        guard spec.generatesAnswers else { return }
        let units = SweepPlanner.units(configs: configs, questions: spec.questionsPerTrait, samples: spec.samplesPerQuestion,
                                       batchSize: spec.batchSize).filter { unitFilter($0.index) }
        let done = try store.generationKeys()
        let todo = units.filter { u in !u.items.allSatisfy { done.contains($0.key) } }
        if !todo.isEmpty {
            guard let tok = model.tokenizer else { throw ExperimentError("model \(model.name) has no tokenizer") }
            let prompts = try (0..<spec.questionsPerTrait).map { try PromptFormat.prompt(tok, user: ctx.trait.steeringQuestions[$0]) }
            let total = todo.reduce(0) { $0 + $1.items.count }
            options.log("generate \(label): \(total) answers in \(todo.count) batches (\(units.count - todo.count) batches stored)")
            let bar = ProgressBar("generate \(label)", total: total, unit: "answers", enabled: options.showProgress)
            let positions = spec.steerPositions
            let started = Date()
            for u in todo {
                let t = Date()
                var rows: [GenerationRow] = []
                // One call per sample index: the seed is per call, so sample s of every item uses seed + s.
                for s in Set(u.items.map(\.sample)).sorted() {
                    let items = u.items.filter { $0.sample == s }
                    let steering: [SteeringSpec?] = try items.map { it in
                        guard !it.config.isBaseline else { return nil }
                        return SteeringSpec(.add(layer: it.config.layer, vector: try vector(ctx, it.config),
                                                 coef: Float(it.config.absoluteCoefficient), positions: positions))
                    }
                    let opts = GenerationOptions(maxNewTokens: spec.maxNewTokens, temperature: spec.temperature,
                                                 seed: spec.seed &+ UInt64(s))
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
        if let scorer = ctx.scorer {
            let started = Date()
            try judgeStage(configIds: Set(configs.map(\.id)), ctx: ctx, scorer: scorer, label: label)
            try store.finishStage("judge \(label)", seconds: Date().timeIntervalSince(started))
        }
    }

    func vector(_ ctx: SweepContext, _ c: Configuration) throws -> [Float] {
        guard let f = ctx.vectors[c.variant] else { throw ExperimentError("no vectors for variant \(c.variant)") }
        return try f.vector(layer: c.layer, hidden: ctx.model.hiddenSize)
    }
}
