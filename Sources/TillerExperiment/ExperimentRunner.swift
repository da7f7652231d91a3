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
}
