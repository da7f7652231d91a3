import Foundation
import TillerEval
import TillerModels
import TillerSteering
import Yams

// The experiment file (YAML, or JSON which is YAML too): a whole steering experiment (models,
// traits, variants, layers, coefficients, judging, selection and report) as data.
// `tiller run FILE` executes it; every key is documented in experiments/README.md.

public struct ExperimentError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// How a coefficient is given: as the norm of the added vector (vectors are unit length), or as
/// a multiple of the layer's mean residual norm with massive dims excluded (transfers between
/// models whose residual scales differ by 1000×).
public enum CoefficientScale: String, Codable, Sendable, Equatable {
    case absolute
    case relative
}

/// Adaptive coefficient search per (variant, layer): grow the coefficient geometrically from
/// `start` until mean coherence falls below `threshold` (the cliff), then bisect (geometric
/// mean) between the last coherent and the first incoherent coefficient `refine` times.
public struct CoefficientSearch: Codable, Sendable, Equatable {
    public var start: Double
    public var factor: Double = 2
    public var maxSteps: Int = 8
    public var refine: Int = 2
    /// Coherence the search brackets; default: the experiment's first coherence threshold.
    public var threshold: Double?

    enum CodingKeys: String, CodingKey {
        case start, factor, refine, threshold
        case maxSteps = "max_steps"
    }
    public init(start: Double, factor: Double = 2, maxSteps: Int = 8, refine: Int = 2, threshold: Double? = nil) {
        self.start = start; self.factor = factor; self.maxSteps = maxSteps; self.refine = refine; self.threshold = threshold
    }
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        start = try c.decode(Double.self, forKey: .start)
        factor = try c.decodeIfPresent(Double.self, forKey: .factor) ?? 2
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps) ?? 8
        refine = try c.decodeIfPresent(Int.self, forKey: .refine) ?? 2
        threshold = try c.decodeIfPresent(Double.self, forKey: .threshold)
    }
}

public struct CoefficientPlan: Codable, Sendable, Equatable {
    public var scale: CoefficientScale
    /// A fixed grid (ignored when `search` is given).
    public var values: [Double]
    public var search: CoefficientSearch?

    enum CodingKeys: String, CodingKey { case scale, values, search }
    public init(scale: CoefficientScale, values: [Double], search: CoefficientSearch? = nil) {
        self.scale = scale; self.values = values; self.search = search
    }
    /// A plain list means absolute coefficients (e.g. 50…5000, as used on 2B–8B models).
    public init(from d: Decoder) throws {
        if let list = try? d.singleValueContainer().decode([Double].self) {
            self.init(scale: .absolute, values: list)
            return
        }
        let c = try d.container(keyedBy: CodingKeys.self)
        self.init(scale: try c.decodeIfPresent(CoefficientScale.self, forKey: .scale) ?? .absolute,
                  values: try c.decodeIfPresent([Double].self, forKey: .values) ?? [],
                  search: try c.decodeIfPresent(CoefficientSearch.self, forKey: .search))
    }
}

/// Layers as a list `[6, 9, 12]`, a range string `"6-18"` / `"6-18:3"` (step), or
/// `{from: 6, to: 18, step: 3}`.
public struct LayerList: Codable, Sendable, Equatable {
    public var layers: [Int]
    public init(_ layers: [Int]) { self.layers = layers }

    public init(from d: Decoder) throws {
        let c = try d.singleValueContainer()
        if let list = try? c.decode([Int].self) { layers = list; return }
        if let s = try? c.decode(String.self) { layers = try Self.parse(s); return }
        struct R: Decodable { var from: Int; var to: Int; var step: Int? }
        if let r = try? c.decode(R.self) {
            layers = try Self.range(r.from, r.to, r.step ?? 1, text: "{from: \(r.from), to: \(r.to)}")
            return
        }
        throw DecodingError.dataCorruptedError(in: c, debugDescription: "layers must be a list of integers, a range \"6-18\" or \"6-18:3\", or {from, to, step}")
    }
    public func encode(to e: Encoder) throws {
        var c = e.singleValueContainer()
        try c.encode(layers)
    }

    static func parse(_ s: String) throws -> [Int] {
        do { return try IntRange(parsing: s).values } catch let e as RangeFormatError {
            throw ExperimentError("layers \"\(s)\": \(e)")
        }
    }
    static func range(_ a: Int, _ b: Int, _ step: Int, text: String) throws -> [Int] {
        do { return try IntRange(lower: a, upper: b, step: step).values } catch let e as RangeFormatError {
            throw ExperimentError("layers \(text): \(e)")
        }
    }
}

/// Contrastive-extraction settings for the experiment's vectors.
public struct ExtractionPlan: Codable, Sendable, Equatable {
    public var maxPairs: Int?
    public var maxQuestions: Int?
    public var maxNewTokens: Int = Self.defaults.maxNewTokens
    public var temperature: Double = Self.defaults.temperature
    /// Nucleus sampling of the generated samples (1: off), as `tiller extract --top-p`.
    public var topP: Double = Self.defaults.topP
    public var batchSize: Int = Self.defaults.batchSize
    /// Defaults shared with `tiller extract`.
    static let defaults = ExtractionSettings()
    /// `instructions` or `scenarios`; nil: instructions for a chat model that the trait has them
    /// for, else scenarios.
    public var form: ExtractionForm?
    /// `judge`: keep only the samples whose answers the (validated) judge scores as showing the
    /// trait (positive: trait ≥ 50, negative: trait < 50, both coherence ≥ 50). `none`: keep all.
    public var vetting: VettingMode = .none
    /// Fewest surviving samples per polarity; fewer is an error naming the trait and counts.
    public var minVetted: Int = VettingStage.Settings().minVetted

    public enum VettingMode: String, Codable, Sendable, Equatable { case none, judge }

    enum CodingKeys: String, CodingKey {
        case temperature, form, vetting
        case maxPairs = "max_pairs", maxQuestions = "max_questions", maxNewTokens = "max_new_tokens", batchSize = "batch_size"
        case minVetted = "min_vetted", topP = "top_p"
    }
    public init() {}
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        maxPairs = try c.decodeIfPresent(Int.self, forKey: .maxPairs)
        maxQuestions = try c.decodeIfPresent(Int.self, forKey: .maxQuestions)
        maxNewTokens = try c.decodeIfPresent(Int.self, forKey: .maxNewTokens) ?? Self.defaults.maxNewTokens
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature) ?? Self.defaults.temperature
        topP = try c.decodeIfPresent(Double.self, forKey: .topP) ?? Self.defaults.topP
        guard topP > 0, topP <= 1 else { throw ExperimentError("extraction.top_p \(topP) must be in (0, 1]") }
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? Self.defaults.batchSize
        if let f = try c.decodeIfPresent(String.self, forKey: .form) {
            guard let form = ExtractionForm(rawValue: f) else {
                throw ExperimentError("extraction.form \"\(f)\" is unknown: use instructions or scenarios")
            }
            self.form = form
        }
        if let v = try c.decodeIfPresent(String.self, forKey: .vetting) {
            guard let mode = VettingMode(rawValue: v) else { throw ExperimentError("extraction.vetting \"\(v)\" is unknown: use none or judge") }
            vetting = mode
        }
        minVetted = try c.decodeIfPresent(Int.self, forKey: .minVetted) ?? VettingStage.Settings().minVetted
    }
}

/// How the judge proves itself before its scores are used (see TillerEval's JudgeValidation).
public struct JudgeValidationPlan: Codable, Sendable, Equatable {
    /// Least trait and coherence AUC for the judge to pass.
    public var minAUC: Double = Self.defaults.minAUC
    /// Reference answer pairs scored (each gives a positive, a negative, and four degenerate
    /// versions of the positive for the coherence AUC).
    public var items: Int = Self.defaults.items
    /// Defaults shared with `tiller judge --validate` and `tiller extract --vetting judge`.
    static let defaults = JudgeValidationStage.Settings()
    enum CodingKeys: String, CodingKey { case minAUC = "min_auc", items }
    public init() {}
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        minAUC = try c.decodeIfPresent(Double.self, forKey: .minAUC) ?? Self.defaults.minAUC
        items = try c.decodeIfPresent(Int.self, forKey: .items) ?? Self.defaults.items
    }
}

public struct ScanPlan: Codable, Sendable, Equatable {
    /// Use only the first N calibration texts (small runs).
    public var maxTexts: Int?
    /// A prompt file (JSONL/text) instead of the shipped calibration set.
    public var texts: String?
    enum CodingKeys: String, CodingKey { case texts; case maxTexts = "max_texts" }
    public init() {}
}

public struct ExperimentSpec: Codable, Sendable, Equatable {
    public var name: String
    public var models: [String]
    public var traits: [String]
    public var methods: [String]
    /// Cleaning suffixes applied to every method: `preclean_la2`, `postclean_u1`, …
    public var cleaning: [String]
    /// Explicit variant names (`probe_preclean_la2`); used in addition to methods × cleaning.
    public var variants: [String]
    /// Extraction position set: `response:5`, `response`, `prompt:last`.
    public var positions: String
    public var layers: LayerList
    public var coefficients: CoefficientPlan
    /// `local:MODEL` or `openai:MODEL`; needed for the `judge` evaluator and judge vetting, and
    /// validated whenever it is given.
    public var judge: String?
    /// What measures each configuration: `judge` (trait and coherence scores of generated
    /// answers), `logodds` and `ab` (judge-free trait metrics, teacher-forced), `perplexity`
    /// (capability on neutral text) and `degeneration` (repetition of generated answers).
    public var evaluators: [EvaluatorKind]
    public var judgeValidation: JudgeValidationPlan
    /// Selection gates for the judge-free trait metrics: the steered model's perplexity on the
    /// neutral texts at most this many times the unsteered model's (one to five values; findings
    /// are recomputed at each).
    public var maxPerplexityRatio: [Double]
    /// Neutral texts scored per configuration by `perplexity`.
    public var perplexityTexts: Int
    /// Reference answer pairs scored per configuration by `logodds` and `ab` (the trait's first N).
    public var referenceItems: Int?
    /// A JSONL file of A/B items (question, answer_matching_behavior,
    /// answer_not_matching_behavior) for `ab`; default: items built from the reference answers.
    public var abItems: String?
    /// Seed of the selection/held-out split of questions (default: `seed`).
    public var splitSeed: UInt64?
    public var coherenceThresholds: [Double]
    /// Least probability mass on integer answers for a judge score to count (TillerEval's
    /// default 0.25; tiny local judges put only a few percent there).
    public var judgeMinMass: Double
    /// Cap coherence of off-topic answers using a third judge call (relevance).
    public var judgeRelevance: Bool
    /// A folder with trait.txt / coherence.txt / relevance.txt overriding the judge prompts.
    public var judgePrompts: String?
    /// Where models run: `auto`, `cpu` or `vulkan[:N]` (TillerVulkan's DeviceChoice parses it;
    /// `tiller run --device` overrides it, and it overrides TILLER_DEVICE).
    public var device: String?
    public var questionsPerTrait: Int
    public var samplesPerQuestion: Int
    public var maxNewTokens: Int
    public var temperature: Double
    public var seed: UInt64
    /// Where steering applies during evaluation: `response` (generated tokens) or `all`.
    /// Where steering acts while answers are generated and teacher-forced (`steer_positions`).
    public var steerPositions: SteeringPositions
    /// Sequences generated together (one steering spec each).
    public var batchSize: Int
    public var extraction: ExtractionPlan
    public var scan: ScanPlan
    /// The variant the summary table compares with the uncleaned probe (e.g.
    /// probe_preclean_la2); default: the variant with the best mean Δ.
    public var winner: String?
    /// Output folder, relative to the experiment file; default `runs/<name>` next to it.
    public var output: String?
    /// Claims of the form "group A beats group B" tested in the findings, beside the built-in ones.
    public var claims: [ClaimSpec]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, models, traits, methods, cleaning, variants, positions, layers, coefficients, judge
        case judgeMinMass = "judge_min_mass", judgeRelevance = "judge_relevance", judgePrompts = "judge_prompts"
        case coherenceThresholds = "coherence_thresholds", questionsPerTrait = "questions_per_trait"
        case samplesPerQuestion = "samples_per_question", maxNewTokens = "max_new_tokens", temperature, seed
        case steerPositions = "steer_positions", batchSize = "batch_size", extraction, scan, winner, output
        case evaluators, judgeValidation = "judge_validation", maxPerplexityRatio = "max_perplexity_ratio"
        case perplexityTexts = "perplexity_texts", referenceItems = "reference_items", abItems = "ab_items", splitSeed = "split_seed"
        case claims, device
    }

    static let knownKeys: Set<String> = Set(CodingKeys.allCases.map(\.rawValue))

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        models = try Self.stringOrList(c, .models) ?? []
        traits = try Self.stringOrList(c, .traits) ?? []
        methods = try Self.stringOrList(c, .methods) ?? []
        cleaning = try Self.stringOrList(c, .cleaning) ?? []
        variants = try Self.stringOrList(c, .variants) ?? []
        positions = try c.decodeIfPresent(String.self, forKey: .positions) ?? ExtractionPlan.defaults.positions.description
        layers = try c.decode(LayerList.self, forKey: .layers)
        coefficients = try c.decode(CoefficientPlan.self, forKey: .coefficients)
        judge = try c.decodeIfPresent(String.self, forKey: .judge)
        if let list = try Self.stringOrList(c, .evaluators) {
            evaluators = try list.map { e in
                guard let k = EvaluatorKind(rawValue: e) else {
                    throw ExperimentError("evaluators: \"\(e)\" is unknown (use \(EvaluatorKind.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return k
            }
        } else {
            evaluators = [.judge]
        }
        judgeValidation = try c.decodeIfPresent(JudgeValidationPlan.self, forKey: .judgeValidation) ?? JudgeValidationPlan()
        if let one = try? c.decode(Double.self, forKey: .maxPerplexityRatio) {
            maxPerplexityRatio = [one]
        } else {
            maxPerplexityRatio = try c.decodeIfPresent([Double].self, forKey: .maxPerplexityRatio) ?? [1.5]
        }
        perplexityTexts = try c.decodeIfPresent(Int.self, forKey: .perplexityTexts) ?? 16
        referenceItems = try c.decodeIfPresent(Int.self, forKey: .referenceItems)
        abItems = try c.decodeIfPresent(String.self, forKey: .abItems)
        splitSeed = try c.decodeIfPresent(UInt64.self, forKey: .splitSeed)
        claims = try c.decodeIfPresent([ClaimSpec].self, forKey: .claims) ?? []
        if let one = try? c.decode(Double.self, forKey: .coherenceThresholds) {
            coherenceThresholds = [one]
        } else {
            coherenceThresholds = try c.decodeIfPresent([Double].self, forKey: .coherenceThresholds) ?? [50]
        }
        judgeMinMass = try c.decodeIfPresent(Double.self, forKey: .judgeMinMass) ?? Scoring.defaultMinMass
        judgeRelevance = try c.decodeIfPresent(Bool.self, forKey: .judgeRelevance) ?? JudgingStage.Settings().relevance
        judgePrompts = try c.decodeIfPresent(String.self, forKey: .judgePrompts)
        device = try c.decodeIfPresent(String.self, forKey: .device)
        questionsPerTrait = try c.decodeIfPresent(Int.self, forKey: .questionsPerTrait) ?? 10
        samplesPerQuestion = try c.decodeIfPresent(Int.self, forKey: .samplesPerQuestion) ?? 1
        maxNewTokens = try c.decodeIfPresent(Int.self, forKey: .maxNewTokens) ?? 64
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature) ?? 0
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0
        let positions = try c.decodeIfPresent(String.self, forKey: .steerPositions) ?? SteeringPositions.response.rawValue
        guard let sp = SteeringPositions(rawValue: positions) else {
            throw ExperimentError("steer_positions \"\(positions)\" is unknown: use response (generated tokens only) or all (prompt included)")
        }
        steerPositions = sp
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? 32
        extraction = try c.decodeIfPresent(ExtractionPlan.self, forKey: .extraction) ?? ExtractionPlan()
        scan = try c.decodeIfPresent(ScanPlan.self, forKey: .scan) ?? ScanPlan()
        winner = try c.decodeIfPresent(String.self, forKey: .winner)
        output = try c.decodeIfPresent(String.self, forKey: .output)
    }

    private static func stringOrList(_ c: KeyedDecodingContainer<CodingKeys>, _ k: CodingKeys) throws -> [String]? {
        if let s = try? c.decode(String.self, forKey: k) { return [s] }
        return try c.decodeIfPresent([String].self, forKey: k)
    }

    // MARK: Derived

    /// The variants to sweep, in file order, without duplicates.
    public func variantSpecs() throws -> [VariantSpec] {
        var names: [String] = []
        for m in methods {
            names.append(m)
            for cl in cleaning { names.append(m + "_" + cl) }
        }
        names += variants
        var seen = Set<String>()
        var out: [VariantSpec] = []
        for n in names where seen.insert(n).inserted {
            do { out.append(try VariantSpec(name: n)) } catch {
                throw ExperimentError("variant \"\(n)\": \(error)")
            }
        }
        return out
    }

    /// The split's seed.
    public var effectiveSplitSeed: UInt64 { splitSeed ?? seed }
    /// Whether answers are generated (the judge and degeneration read them).
    public var generatesAnswers: Bool { evaluators.contains(.judge) || evaluators.contains(.degeneration) }


    /// Settings that decide every stored answer and score. Resuming with different values would
    /// mix incomparable rows, so the store refuses it.
    public var generationKey: [String: String] {
        [
            "questions_per_trait": String(questionsPerTrait), "samples_per_question": String(samplesPerQuestion),
            "max_new_tokens": String(maxNewTokens), "temperature": String(temperature), "seed": String(seed),
            "steer_positions": steerPositions.rawValue, "judge": judge ?? "none", "judge_min_mass": String(judgeMinMass),
            "judge_relevance": String(judgeRelevance), "judge_prompts": judgePrompts ?? "default", "batch_size": String(batchSize),
            "positions": positions,
            "extraction": "pairs=\(extraction.maxPairs.map(String.init) ?? "all"),questions=\(extraction.maxQuestions.map(String.init) ?? "all"),tokens=\(extraction.maxNewTokens),T=\(extraction.temperature)"
                + (extraction.form.map { ",form=\($0.rawValue)" } ?? "") + (extraction.vetting == .none ? "" : ",vetting=\(extraction.vetting.rawValue)"),
            "perplexity_texts": String(perplexityTexts), "reference_items": referenceItems.map(String.init) ?? "all",
            "ab_items": abItems ?? "reference",
        ]
    }

    // MARK: Loading and validation

    public static func load(path: String) throws -> ExperimentSpec {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ExperimentError("\(path): cannot read experiment file: \(error.localizedDescription)")
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws -> ExperimentSpec {
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch {
            throw ExperimentError("\(path): not valid YAML or JSON: \(error)")
        }
        guard let dict = node as? [String: Any] else {
            throw ExperimentError("\(path): an experiment file must be a mapping of keys (name, models, traits, …)")
        }
        let unknown = Set(dict.keys).subtracting(knownKeys).sorted()
        if !unknown.isEmpty {
            throw ExperimentError("\(path): unknown key\(unknown.count > 1 ? "s" : "") \(unknown.joined(separator: ", ")) (known: \(knownKeys.sorted().joined(separator: ", ")))")
        }
        let spec: ExperimentSpec
        do { spec = try YAMLDecoder().decode(ExperimentSpec.self, from: text) } catch let e as DecodingError {
            throw ExperimentError("\(path): \(describe(e))")
        } catch let e as ExperimentError {
            throw ExperimentError("\(path): \(e.description)")
        } catch {
            throw ExperimentError("\(path): \(error)")
        }
        do { try spec.validate() } catch let e as ExperimentError { throw ExperimentError("\(path): \(e.description)") }
        return spec
    }

    static func describe(_ e: DecodingError) -> String {
        func key(_ p: [CodingKey]) -> String {
            p.isEmpty ? "the top level" : p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
                .replacingOccurrences(of: ".[", with: "[")
        }
        switch e {
        case .keyNotFound(let k, let ctx): return "missing required key \(key(ctx.codingPath + [k]))"
        case .typeMismatch(let t, let ctx): return "\(key(ctx.codingPath)) has the wrong type (expected \(t))"
        case .valueNotFound(let t, let ctx): return "\(key(ctx.codingPath)) is empty (expected \(t))"
        case .dataCorrupted(let ctx):
            // Yams wraps errors thrown while decoding (ours included) as "not valid YAML".
            if let u = ctx.underlyingError as? ExperimentError { return u.description }
            if let u = ctx.underlyingError as? DecodingError { return describe(u) }
            return "\(key(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    public func validate() throws {
        func fail(_ s: String) throws -> Never { throw ExperimentError(s) }
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            try fail("name \"\(name)\" must be non-empty and use only letters, digits, - _ .")
        }
        if models.isEmpty { try fail("models: give at least one model (cache name, .gguf path or HF directory)") }
        if traits.isEmpty { try fail("traits: give at least one trait (shipped name or trait file)") }
        if methods.isEmpty && variants.isEmpty { try fail("give methods (probe, mean_diff) and/or variants") }
        for m in methods where ExtractionMethod(rawValue: m) == nil {
            try fail("methods: unknown method \"\(m)\" (use probe or mean_diff)")
        }
        for cl in cleaning {
            guard (try? VariantSpec(name: "probe_" + cl)) != nil else {
                try fail("cleaning: \"\(cl)\" is not preclean_laN, preclean_uN, postclean_laN or postclean_uN")
            }
        }
        _ = try variantSpecs()
        do { _ = try PositionSet(positions) } catch { try fail("positions: \(error)") }
        if layers.layers.isEmpty { try fail("layers: the list is empty") }
        if let bad = layers.layers.first(where: { $0 < 0 }) { try fail("layers: \(bad) is negative") }
        if Set(layers.layers).count != layers.layers.count { try fail("layers: \(layers.layers) has duplicates") }
        if coefficients.search != nil && !evaluators.contains(.judge) {
            try fail("coefficients.search brackets the judge's coherence cliff: it needs the judge evaluator (use a grid for judge-free evaluators)")
        }
        if let s = coefficients.search {
            guard s.start > 0, s.start.isFinite else { try fail("coefficients.search.start must be > 0") }
            guard s.factor > 1 else { try fail("coefficients.search.factor must be > 1") }
            guard s.maxSteps >= 1, s.maxSteps <= 30 else { try fail("coefficients.search.max_steps must be in 1…30") }
            guard s.refine >= 0, s.refine <= 10 else { try fail("coefficients.search.refine must be in 0…10") }
        } else {
            if coefficients.values.isEmpty { try fail("coefficients: give values (a list) or a search") }
            if let bad = coefficients.values.first(where: { !($0 > 0) || !$0.isFinite }) {
                try fail("coefficients: \(bad) is not a positive number (the baseline, coefficient 0, is always run)")
            }
            if Set(coefficients.values).count != coefficients.values.count { try fail("coefficients: \(coefficients.values) has duplicates") }
        }
        if let judge { do { _ = try JudgeSpecText.parse(judge) } catch { try fail("judge: \(error)") } }
        if evaluators.isEmpty { try fail("evaluators: give at least one of \(EvaluatorKind.allCases.map(\.rawValue).joined(separator: ", "))") }
        if Set(evaluators).count != evaluators.count { try fail("evaluators: \(evaluators.map(\.rawValue)) has duplicates") }
        if !evaluators.contains(where: \.measuresTrait) {
            try fail("evaluators: none of \(evaluators.map(\.rawValue).joined(separator: ", ")) measures the trait; add judge, logodds or ab")
        }
        if judge == nil && evaluators.contains(.judge) { try fail("evaluators: judge is listed but no judge is given (judge: local:MODEL or openai:MODEL)") }
        if judge == nil && extraction.vetting == .judge { try fail("extraction.vetting: judge needs a judge (judge: local:MODEL or openai:MODEL)") }
        if !(judgeValidation.minAUC > 0.5 && judgeValidation.minAUC <= 1) { try fail("judge_validation.min_auc must be in (0.5, 1]") }
        if judgeValidation.items < 4 { try fail("judge_validation.items must be at least 4") }
        if maxPerplexityRatio.isEmpty || maxPerplexityRatio.count > 5 { try fail("max_perplexity_ratio: give one to five ratios") }
        if let bad = maxPerplexityRatio.first(where: { !($0 > 1) || !$0.isFinite }) { try fail("max_perplexity_ratio: \(bad) must be a ratio above 1") }
        if perplexityTexts < 2 { try fail("perplexity_texts must be at least 2") }
        if let n = referenceItems, n < 4 { try fail("reference_items must be at least 4 (half are held out)") }
        if extraction.minVetted < 1 { try fail("extraction.min_vetted must be at least 1") }
        if coherenceThresholds.isEmpty || coherenceThresholds.count > 5 {
            try fail("coherence_thresholds: give one to five thresholds (findings are recomputed at each)")
        }
        for c in claims { try c.validate() }
        if let bad = coherenceThresholds.first(where: { !(0...100).contains($0) }) { try fail("coherence_thresholds: \(bad) is outside 0…100") }
        if !(judgeMinMass > 0 && judgeMinMass <= 1) { try fail("judge_min_mass must be in (0, 1]") }
        if questionsPerTrait < 1 { try fail("questions_per_trait must be at least 1") }
        if samplesPerQuestion < 1 { try fail("samples_per_question must be at least 1") }
        if samplesPerQuestion > 1 && temperature == 0 {
            try fail("samples_per_question is \(samplesPerQuestion) but temperature is 0: greedy samples would all be the same")
        }
        if maxNewTokens < 1 || maxNewTokens > 4096 { try fail("max_new_tokens must be in 1…4096") }
        if !(temperature >= 0) || !temperature.isFinite { try fail("temperature must be ≥ 0") }
        if batchSize < 1 { try fail("batch_size must be at least 1") }
        if extraction.batchSize < 1 { try fail("extraction.batch_size must be at least 1") }
        if let w = winner, (try? VariantSpec(name: w)) == nil { try fail("winner: \"\(w)\" is not a variant name") }
    }
}

/// `local:MODEL` / `openai:MODEL`, checked without loading anything.
enum JudgeSpecText {
    static func parse(_ s: String) throws -> (backend: String, model: String) {
        guard let i = s.firstIndex(of: ":") else { throw ExperimentError("\"\(s)\" must be local:MODEL or openai:MODEL") }
        let b = String(s[..<i]), m = String(s[s.index(after: i)...])
        guard b == "local" || b == "openai" else { throw ExperimentError("backend \"\(b)\" is unknown: use local:MODEL or openai:MODEL") }
        guard !m.isEmpty else { throw ExperimentError("\"\(s)\" names no model") }
        return (b, m)
    }
}

