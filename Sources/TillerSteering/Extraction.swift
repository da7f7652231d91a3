import Foundation
import TillerFormats
import TillerModels
import TillerTokenizers

// Contrastive extraction, the model side: generate answers for both polarities of a trait, read
// resid_post at every layer at a position set, and keep one row per sample (the mean over the
// selected positions). The result is stored so that the methods and variants can be rerun
// without generating again.

/// Which tokens of a sample become its activation row: always one row, the mean over the
/// selected positions. "Response" means here what it means for capture and steering
/// (CapturePositions, SteeringPositions): the positions at and after the prompt's length.
public enum PositionSet: Sendable, Equatable, CustomStringConvertible {
    /// `response:K`: the mean over the first K response tokens (fewer if the answer is shorter).
    case firstResponse(Int)
    /// `response`: the mean over all response tokens.
    case responseMean
    /// The last prompt token (nothing is generated).
    case lastPrompt

    /// Parses `response:5`, `response`, `prompt:last`.
    public init(_ s: String) throws {
        switch s {
        case "response", "response:all", "response:mean": self = .responseMean
        case "prompt:last", "last-prompt": self = .lastPrompt
        default:
            if s.hasPrefix("response:"), let k = Int(s.dropFirst(9)), k >= 1 { self = .firstResponse(k); return }
            throw ExtractionError("unknown position set '\(s)': use response:K (mean of the first K response tokens), response (mean over the whole response) or prompt:last")
        }
    }

    public var description: String {
        switch self {
        case .firstResponse(let k): return "response:\(k)"
        case .responseMean: return "response"
        case .lastPrompt: return "prompt:last"
        }
    }

    public var capture: CapturePositions {
        switch self {
        case .firstResponse(let k): return .firstResponse(k)
        case .responseMean: return .meanResponse
        case .lastPrompt: return .lastPrompt
        }
    }
}

/// How contrastive samples are generated and read: the one set of defaults that `tiller extract`
/// and experiment files (`extraction:`) start from.
public struct ExtractionSettings: Sendable, Equatable {
    /// nil: instructions when the model has a chat template and the trait has them, else scenarios.
    public var form: ExtractionForm?
    public var positions: PositionSet = .firstResponse(5)
    public var maxNewTokens = 32
    public var temperature = 0.7
    public var topP = 1.0
    public var seed: UInt64 = 0
    public var batchSize = 16
    /// Use only the first N instruction/scenario pairs, and the first N questions (small runs).
    public var maxPairs: Int?
    public var maxQuestions: Int?

    public init() {}

    /// What decides the stored activations: a stored run is reused only when these match.
    public var key: [String: String] {
        ["positions": positions.description, "max_new_tokens": String(maxNewTokens), "temperature": String(temperature),
         "top_p": String(topP), "seed": String(seed), "max_pairs": maxPairs.map(String.init) ?? "all",
         "max_questions": maxQuestions.map(String.init) ?? "all"]
    }
}

/// One generated sample.
public struct ExtractionSample: Codable, Sendable, Equatable {
    /// "pos" or "neg".
    public var polarity: String
    /// Index of the instruction or scenario pair.
    public var pair: Int
    /// Index of the question (instructions form).
    public var question: Int?
    /// What the judge sees as the question: the user question, or the scenario prefix.
    public var prompt: String
    public var response: String
    public var responseTokens: Int
    /// Judge score (0–100) when the run was vetted.
    public var score: Double?

    enum CodingKeys: String, CodingKey {
        case polarity, pair, question, prompt, response, score
        case responseTokens = "response_tokens"
    }
}

/// A stored extraction: activations plus the samples they came from.
public struct ExtractionRun: Sendable {
    public var model: String
    /// The model's architecture (llama.cpp's control vectors carry it as a hint).
    public var architecture: String
    public var trait: String
    public var form: ExtractionForm
    public var settings: [String: String]
    public var activations: ContrastiveActivations
    public var positiveSamples: [ExtractionSample]
    public var negativeSamples: [ExtractionSample]
    /// Samples dropped because no position was captured (e.g. an empty answer).
    public var dropped: Int
    public var vetting: VettingReport?

    public var positions: String { settings["positions"] ?? "?" }

    public static let fileName = "activations.safetensors"

    public func save(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var meta: [String: String] = [
            "format": "tiller.activations/1", "model": model, "architecture": architecture, "trait": trait,
            "form": form.rawValue, "site": HookPoint.Kind.residPost.rawValue, "dropped": String(dropped),
            "settings": String(decoding: try enc.encode(settings), as: UTF8.self),
            "samples_pos": String(decoding: try enc.encode(positiveSamples), as: UTF8.self),
            "samples_neg": String(decoding: try enc.encode(negativeSamples), as: UTF8.self),
        ]
        if let vetting { meta["vetting"] = String(decoding: try enc.encode(vetting), as: UTF8.self) }
        var w = SafetensorsWriter(metadata: meta)
        try activations.addTensors(to: &w)
        try w.write(to: (directory as NSString).appendingPathComponent(Self.fileName))
        // The answers, one JSON object per line, for reading.
        let lines = try (positiveSamples + negativeSamples).map { String(decoding: try enc.encode($0), as: UTF8.self) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: (directory as NSString).appendingPathComponent("samples.jsonl"),
                                                         atomically: true, encoding: .utf8)
    }

    public static func load(directory: String) throws -> ExtractionRun {
        let path = (directory as NSString).appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: path) else {
            throw ExtractionError("\(directory): no \(fileName) (run `tiller extract --out \(directory)` first)")
        }
        let file = try SafetensorsFile(path: path)
        let m = file.metadata
        guard m["format"] == "tiller.activations/1" else { throw ExtractionError("\(path): not a Tiller activations file (format \(m["format"] ?? "missing"))") }
        func field(_ k: String) throws -> String {
            guard let v = m[k] else { throw ExtractionError("\(path): metadata \(k) is missing") }
            return v
        }
        func decode<T: Decodable>(_ t: T.Type, _ k: String) throws -> T {
            do { return try JSONDecoder().decode(T.self, from: Data(try field(k).utf8)) } catch let e as ExtractionError { throw e } catch {
                throw ExtractionError("\(path): metadata \(k) is not valid: \(error)")
            }
        }
        guard let form = ExtractionForm(rawValue: try field("form")) else { throw ExtractionError("\(path): unknown form \(m["form"]!)") }
        let acts = try ContrastiveActivations.load(safetensors: path)
        let pos = try decode([ExtractionSample].self, "samples_pos"), neg = try decode([ExtractionSample].self, "samples_neg")
        guard pos.count == acts.positiveCount, neg.count == acts.negativeCount else {
            throw ExtractionError("\(path): \(pos.count)/\(neg.count) samples recorded but \(acts.positiveCount)/\(acts.negativeCount) activation rows")
        }
        return ExtractionRun(model: try field("model"), architecture: m["architecture"] ?? "", trait: try field("trait"), form: form,
                             settings: try decode([String: String].self, "settings"), activations: acts,
                             positiveSamples: pos, negativeSamples: neg, dropped: Int(m["dropped"] ?? "0") ?? 0,
                             vetting: m["vetting"] != nil ? try decode(VettingReport.self, "vetting") : nil)
    }

    /// Whether this stored run answers the same request (so generation can be skipped).
    public func matches(model: String, trait: Trait, form: ExtractionForm, settings: ExtractionSettings) -> Bool {
        var key = settings.key
        key["trait_digest"] = trait.extractionDigest
        return self.model == model && self.trait == trait.name && self.form == form && self.settings == key
    }
}

// MARK: - Vetting

/// How many samples survived judge vetting.
public struct VettingReport: Codable, Sendable, Equatable {
    public var threshold: Double
    public var positiveKept: Int
    public var positiveTotal: Int
    public var negativeKept: Int
    public var negativeTotal: Int
    /// Samples the scorer returned no score for (dropped).
    public var unscored: Int
    /// What else decided which samples were kept (the vetting settings and the judge, as the
    /// vetting stage states them); nil in files vetted before it was recorded, which are vetted
    /// again.
    public var settings: [String: String]?

    enum CodingKeys: String, CodingKey {
        case threshold, unscored, settings
        case positiveKept = "pos_kept", positiveTotal = "pos_total", negativeKept = "neg_kept", negativeTotal = "neg_total"
    }
    public var summary: String {
        "vetting (threshold \(threshold)): kept \(positiveKept)/\(positiveTotal) positive and \(negativeKept)/\(negativeTotal) negative samples"
            + (unscored > 0 ? ", \(unscored) unscored" : "")
    }
}

/// Scores an answer 0–100 for the trait and for coherence; nil where the judge gives no usable score.
public typealias VettingScorer = @Sendable (_ question: String, _ answer: String) async throws -> (trait: Double?, coherence: Double?)

extension ExtractionRun {
    /// Keeps the samples that show what their polarity claims (persona_vectors' rule): positive
    /// samples scoring trait ≥ threshold, negative ones trait < threshold, both with coherence ≥
    /// `minCoherence`. A sample without a trait score is dropped (and counted).
    public func vetted(threshold: Double = 50, minCoherence: Double = 50, scorer: VettingScorer) async throws -> ExtractionRun {
        var keepPos: [Int] = [], keepNeg: [Int] = [], unscored = 0
        var pos = positiveSamples, neg = negativeSamples
        for i in pos.indices {
            let s = try await scorer(pos[i].prompt, pos[i].response)
            guard let t = s.trait else { unscored += 1; continue }
            pos[i].score = t
            if t >= threshold && (s.coherence ?? 0) >= minCoherence { keepPos.append(i) }
        }
        for i in neg.indices {
            let s = try await scorer(neg[i].prompt, neg[i].response)
            guard let t = s.trait else { unscored += 1; continue }
            neg[i].score = t
            if t < threshold && (s.coherence ?? 0) >= minCoherence { keepNeg.append(i) }
        }
        var out = self
        out.activations = activations.selecting(positive: keepPos, negative: keepNeg)
        out.positiveSamples = keepPos.map { pos[$0] }
        out.negativeSamples = keepNeg.map { neg[$0] }
        out.vetting = VettingReport(threshold: threshold, positiveKept: keepPos.count, positiveTotal: pos.count,
                                    negativeKept: keepNeg.count, negativeTotal: neg.count, unscored: unscored)
        return out
    }
}

// MARK: - Collection

public enum ContrastiveExtraction {
    struct Job {
        let positive: Bool
        let pair: Int
        let question: Int?
        let judgePrompt: String
        let tokens: [Int]
    }

    /// Picks the form: the requested one, else instructions for a chat model, else scenarios.
    public static func form(for trait: Trait, model: LanguageModel, requested: ExtractionForm?) throws -> ExtractionForm {
        if let f = requested {
            guard trait.forms.contains(f) else {
                throw ExtractionError("trait \(trait.name) (\(trait.source)) has no \(f.rawValue) data (it has: \(trait.forms.map(\.rawValue).joined(separator: ", ")))")
            }
            return f
        }
        let chat = model.tokenizer?.chatTemplate != nil
        if chat, trait.forms.contains(.instructions) { return .instructions }
        if trait.forms.contains(.scenarios) { return .scenarios }
        return .instructions
    }

    /// Generates both polarities and captures resid_post at every layer.
    public static func collect(model: LanguageModel, trait: Trait, settings: ExtractionSettings,
                               showProgress: Bool = true) throws -> ExtractionRun {
        guard let tokenizer = model.tokenizer else {
            throw ExtractionError("model \(model.name) has no tokenizer: extraction needs one to write its prompts")
        }
        guard settings.batchSize >= 1 else { throw ExtractionError("batch size must be at least 1") }
        let form = try form(for: trait, model: model, requested: settings.form)
        let jobs = try makeJobs(trait: trait, form: form, tokenizer: tokenizer, settings: settings)
        let layers = Array(0..<model.config.numHiddenLayers)
        let hidden = model.config.hiddenSize
        var options = GenerationOptions(maxNewTokens: settings.positions == .lastPrompt ? 0 : settings.maxNewTokens)
        options.temperature = settings.temperature
        options.topP = settings.topP
        options.seed = settings.seed
        var posRows: [Int: [Float]] = [:], negRows: [Int: [Float]] = [:]
        var posSamples: [ExtractionSample] = [], negSamples: [ExtractionSample] = []
        var dropped = 0
        let progress = ProgressBar("extract \(trait.name) on \(model.name)", total: jobs.count, unit: "answers", enabled: showProgress)
        for start in stride(from: 0, to: jobs.count, by: settings.batchSize) {
            let batch = Array(jobs[start ..< min(start + settings.batchSize, jobs.count)])
            let results = try model.generate(batch.map(\.tokens), options: options,
                                             capture: CaptureSpec(layers: layers, positions: settings.positions.capture))
            for (job, r) in zip(batch, results) {
                guard let acts = r.activations, acts.rowCount > 0 else { dropped += 1; continue }
                for l in layers {
                    guard let buf = acts[l] else { throw ExtractionError("internal: layer \(l) was not captured") }
                    // One row per sample: the mean of its selected positions, in Float64.
                    var mean = [Double](repeating: 0, count: hidden)
                    for row in 0..<acts.rowCount { for d in 0..<hidden { mean[d] += Double(buf[row * hidden + d]) } }
                    let rowMean = mean.map { Float($0 / Double(acts.rowCount)) }
                    if job.positive { posRows[l, default: []].append(contentsOf: rowMean) } else { negRows[l, default: []].append(contentsOf: rowMean) }
                }
                let s = ExtractionSample(polarity: job.positive ? "pos" : "neg", pair: job.pair, question: job.question,
                                         prompt: job.judgePrompt, response: r.text ?? tokenizer.decode(r.tokens, skipSpecialTokens: true),
                                         responseTokens: r.tokens.count, score: nil)
                if job.positive { posSamples.append(s) } else { negSamples.append(s) }
            }
            progress.advance(by: batch.count)
        }
        progress.finish()
        guard !posSamples.isEmpty, !negSamples.isEmpty else {
            throw ExtractionError("no usable samples: every answer of one polarity was empty (\(dropped) dropped); try a larger --max-tokens or --positions prompt:last")
        }
        let acts = ContrastiveActivations(
            hidden: hidden,
            positive: Dictionary(uniqueKeysWithValues: layers.map { ($0, ActivationMatrix(rows: posSamples.count, cols: hidden, values: posRows[$0]!)) }),
            negative: Dictionary(uniqueKeysWithValues: layers.map { ($0, ActivationMatrix(rows: negSamples.count, cols: hidden, values: negRows[$0]!)) }))
        var key = settings.key
        key["trait_digest"] = trait.extractionDigest
        return ExtractionRun(model: model.name, architecture: model.config.architecture.rawValue, trait: trait.name, form: form,
                             settings: key, activations: acts, positiveSamples: posSamples, negativeSamples: negSamples,
                             dropped: dropped, vetting: nil)
    }

    /// The prompts, positive and negative interleaved per (pair, question).
    static func makeJobs(trait: Trait, form: ExtractionForm, tokenizer: Tokenizer, settings: ExtractionSettings) throws -> [Job] {
        var jobs: [Job] = []
        switch form {
        case .instructions:
            let pairs = Array(trait.instructions.prefix(settings.maxPairs ?? .max))
            let questions = Array(trait.questions.prefix(settings.maxQuestions ?? .max))
            for (p, pair) in pairs.enumerated() {
                for (q, question) in questions.enumerated() {
                    for positive in [true, false] {
                        let system = positive ? pair.pos : pair.neg
                        jobs.append(Job(positive: positive, pair: p, question: q, judgePrompt: question,
                                        tokens: try encodeInstruction(tokenizer, system: system, question: question)))
                    }
                }
            }
        case .scenarios:
            for (p, pair) in trait.scenarios.prefix(settings.maxPairs ?? .max).enumerated() {
                for positive in [true, false] {
                    let text = positive ? pair.pos : pair.neg
                    jobs.append(Job(positive: positive, pair: p, question: nil, judgePrompt: text,
                                    tokens: tokenizer.encode(text, addSpecialTokens: true)))
                }
            }
        }
        return jobs
    }

    /// System prompt + question in the prompt format every evaluation uses (PromptFormat).
    static func encodeInstruction(_ tokenizer: Tokenizer, system: String, question: String) throws -> [Int] {
        try PromptFormat.prompt(tokenizer, system: system, user: question)
    }
}
