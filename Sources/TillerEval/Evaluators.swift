import Foundation
import TillerModels
import TillerSteering
import TillerTokenizers

/// What measures a steering configuration. The judge reads generated answers; `logodds`, `ab`
/// and `perplexity` are teacher-forced through the same steering hooks as generation (one batched
/// forward, no judge, deterministic); `degeneration` counts repetition in generated answers.
public enum EvaluatorKind: String, Codable, Sendable, CaseIterable {
    case judge, logodds, ab, perplexity, degeneration

    /// judge (its trait score), logodds and ab measure the trait; perplexity and degeneration
    /// measure what steering costs.
    public var measuresTrait: Bool { self == .judge || self == .logodds || self == .ab }

    /// The unit a report prints beside the evaluator's numbers.
    public var unit: String {
        switch self {
        case .judge: return "judge trait score, 0–100"
        case .logodds: return "log-odds of trait vs non-trait reference answers, nats"
        case .ab: return "P(trait letter) of A/B items, 0–100"
        case .perplexity: return "perplexity on neutral text ÷ unsteered"
        case .degeneration: return "share of repeated word bigrams in answers"
        }
    }
}

/// One multiple-choice item in the form of Anthropic's model-written evals and CAA's datasets:
/// `question` holds the choices, the answers are letters such as "(A)".
public struct ABItem: Codable, Sendable, Equatable {
    public var question: String
    public var answerMatchingBehavior: String
    public var answerNotMatchingBehavior: String

    enum CodingKeys: String, CodingKey {
        case question
        case answerMatchingBehavior = "answer_matching_behavior"
        case answerNotMatchingBehavior = "answer_not_matching_behavior"
    }
    public init(question: String, answerMatchingBehavior: String, answerNotMatchingBehavior: String) {
        self.question = question
        self.answerMatchingBehavior = answerMatchingBehavior
        self.answerNotMatchingBehavior = answerNotMatchingBehavior
    }

    /// The letter (A, B, …) of an answer written "(A)", "A", " (A) text" …
    static func letter(_ answer: String) -> String? {
        let t = answer.trimmingCharacters(in: .whitespaces)
        let body = t.hasPrefix("(") ? t.dropFirst() : t[...]
        guard let c = body.first, c.isLetter, c.isUppercase else { return nil }
        let rest = body.dropFirst()
        guard rest.isEmpty || rest.first == ")" || rest.first == " " else { return nil }
        return String(c)
    }

    /// The forms `load` reads, for its errors.
    static let acceptedForms = "a JSON array of {question, answer_matching_behavior, answer_not_matching_behavior} objects (CAA's *_ab.json) or JSONL with one such object per line"

    /// Reads a file of items: a JSON array (CAA ships its A/B datasets so) or JSONL (one object per
    /// line; blank lines skipped). Extra fields are ignored. Errors name the file, the item (array
    /// index or line) and the problem.
    public static func load(path: String) throws -> [ABItem] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw EvaluationError("\(path): cannot read A/B items: \(error.localizedDescription)")
        }
        // (where, JSON text) of each item: "[3]" in an array, ":4" for a JSONL line.
        var entries: [(at: String, json: Data)] = []
        if text.first(where: { !$0.isWhitespace }) == "[" {
            guard let array = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [Any] else {
                throw EvaluationError("\(path): starts with \"[\" but is not a valid JSON array; A/B items are \(acceptedForms)")
            }
            for (i, element) in array.enumerated() {
                guard element is [String: Any], let d = try? JSONSerialization.data(withJSONObject: element) else {
                    throw EvaluationError("\(path): item [\(i)] is not a JSON object; A/B items are \(acceptedForms)")
                }
                entries.append(("[\(i)]", d))
            }
        } else {
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let l = line.trimmingCharacters(in: .whitespaces)
                if !l.isEmpty { entries.append((":\(n + 1)", Data(l.utf8))) }
            }
        }
        var out: [ABItem] = []
        for (at, json) in entries {
            let item: ABItem
            do { item = try JSONDecoder().decode(ABItem.self, from: json) } catch {
                throw EvaluationError("\(path)\(at): not an A/B item; A/B items are \(acceptedForms)")
            }
            guard let a = letter(item.answerMatchingBehavior), let b = letter(item.answerNotMatchingBehavior), a != b else {
                throw EvaluationError("\(path)\(at): answers must be two different letters such as \"(A)\" and \"(B)\"")
            }
            out.append(item)
        }
        guard out.count >= 4 else { throw EvaluationError("\(path): \(out.count) A/B items; at least 4 are needed (half are held out)") }
        return out
    }

    /// Items built from reference answers: the two answers as choices (A)/(B), the trait's one
    /// first in a seeded half of the items, so that a letter bias cannot pass for the trait.
    public static func fromReferences(_ refs: [ReferenceAnswer], seed: UInt64) -> [ABItem] {
        var order = Array(refs.indices)
        var rng = StatsRNG(seed: seed ^ 0xAB)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
        let posFirst = Set(order.prefix(refs.count / 2))
        return refs.enumerated().map { i, r in
            let first = posFirst.contains(i)
            let (a, b) = first ? (r.pos, r.neg) : (r.neg, r.pos)
            return ABItem(question: "\(r.question)\n\nChoices:\n(A) \(a)\n(B) \(b)\n\nAnswer with the letter of your choice.",
                          answerMatchingBehavior: first ? "(A)" : "(B)", answerNotMatchingBehavior: first ? "(B)" : "(A)")
        }
    }
}

public struct EvaluationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The judge-free evaluators of one model and trait, prepared once (tokenised prompts and
/// answers) and run for many steering configurations at once.
///
/// - `logOdds`: per reference question, Σ log p(pos answer) − Σ log p(neg answer), teacher-forced
///   after the question's prompt (CAA's and steering-bench's propensity). Steering acts where it
///   acts in generation (`positions`), so with `response` the prompt is unsteered.
/// - `ab`: per A/B item, 100 · p(trait letter) / (p(A) + p(B)) at the answer's first letter.
///   Steering acts at every position (the letter is read at the prompt's end).
/// - `meanNLL`: per neutral text, the mean negative log-likelihood per token (steering at every
///   position); the perplexity ratio to the unsteered model is exp of the mean difference.
public final class TeacherForcedEvaluator: @unchecked Sendable {
    public let model: LanguageModel
    public let references: [ReferenceAnswer]
    public let abItems: [ABItem]
    public let neutralTexts: [String]
    /// Where `logOdds` steers (the experiment's steering positions).
    public let positions: SteeringPositions
    /// Sequences per engine call (without shared layers).
    public var chunk = 96
    /// Whether work is shared across configurations and items (on unless the environment sets
    /// TILLER_SHARED_PREFIX=0): configurations share the blocks before their steered layer (the
    /// shared layer prefix), and the prompts of one configuration their common head (the chat
    /// template's tokens before the question). The numbers are the same bits either way on a CPU
    /// with the packed kernel (the determinism rule in TeacherForcing.swift); off is the
    /// reference that checks it.
    public var sharedPrefix = TeacherForcedEvaluator.sharedPrefixDefault
    public static var sharedPrefixDefault: Bool { ProcessInfo.processInfo.environment["TILLER_SHARED_PREFIX"] != "0" }

    let referencePrompts: [[Int]]
    let posTokens: [[Int]], negTokens: [[Int]]
    let abPrompts: [[Int]]
    let abLetters: [(match: Int, other: Int)]
    /// Per A/B item: the prompt ends with "(" (the tokenizer splits "(A" into "(" + "A").
    let abParen: [Bool]
    let neutralTokens: [[Int]]

    public init(model: LanguageModel, references: [ReferenceAnswer], abItems: [ABItem] = [], neutralTexts: [String] = [],
                positions: SteeringPositions = .response) throws {
        guard let tok = model.tokenizer else { throw EvaluationError("model \(model.name) has no tokenizer: teacher-forced evaluators need one") }
        self.model = model
        self.references = references
        self.abItems = abItems
        self.neutralTexts = neutralTexts
        self.positions = positions
        referencePrompts = try references.map { try PromptFormat.prompt(tok, user: $0.question) }
        posTokens = references.map { PromptFormat.answerTokens(tok, $0.pos) }
        negTokens = references.map { PromptFormat.answerTokens(tok, $0.neg) }
        for (i, r) in references.enumerated() where posTokens[i].isEmpty || negTokens[i].isEmpty {
            throw EvaluationError("reference answer \(i) (\"\(r.question)\") tokenises to nothing")
        }
        var prompts: [[Int]] = [], letters: [(Int, Int)] = [], paren: [Bool] = []
        for (i, item) in abItems.enumerated() {
            guard let m = ABItem.letter(item.answerMatchingBehavior), let o = ABItem.letter(item.answerNotMatchingBehavior) else {
                throw EvaluationError("A/B item \(i): answers must be letters such as \"(A)\"")
            }
            let (p, ids, usesParen) = try Self.letterPrompt(tok, question: item.question, letters: [m, o])
            prompts.append(p)
            letters.append((ids[0], ids[1]))
            paren.append(usesParen)
        }
        abPrompts = prompts
        abLetters = letters
        abParen = paren
        neutralTokens = neutralTexts.map { tok.encode($0, addSpecialTokens: true) }
        for (i, t) in neutralTokens.enumerated() where t.count < 2 { throw EvaluationError("neutral text \(i) has fewer than 2 tokens") }
    }

    /// The prompt ending just before the answer letter (after "(" when the tokenizer splits
    /// "(A" into "(" + "A"), and the letters' token ids there.
    static func letterPrompt(_ tok: Tokenizer, turns: [PromptFormat.Turn] = [], question: String,
                             letters: [String]) throws -> ([Int], [Int], Bool) {
        let base = try PromptFormat.prompt(tok, turns: turns, user: question)
        let open = PromptFormat.answerTokens(tok, "(")
        let split = letters.map { PromptFormat.answerTokens(tok, "(" + $0) }
        if split.allSatisfy({ $0.count == open.count + 1 && Array($0.prefix(open.count)) == open }) {
            return (base + open, split.map { $0.last! }, true)
        }
        if split.allSatisfy({ $0.count == 1 }) { return (base, split.map { $0[0] }, false) }  // "(A" is one token
        throw EvaluationError("A/B: the answers \(letters.map { "(\($0))" }) do not tokenise to one letter token each after the prompt")
    }

    static func edit(_ s: SteeringEdit?, positions: SteeringPositions) -> SteeringSpec? {
        guard var e = s else { return nil }
        e.positions = positions
        return SteeringSpec(edits: [e])
    }

    /// Per configuration (nil: unsteered), per reference question.
    public func logOdds(_ steering: [SteeringEdit?], prompts: [[Int]]? = nil) throws -> [[Double]] {
        let prompts = prompts ?? referencePrompts
        let n = prompts.count
        if positions == .response {
            // The prompt is unsteered: it runs once per question and every configuration's two
            // answers continue it.
            var out = steering.map { _ in [Double](repeating: 0, count: n) }
            let specs = steering.map { Self.edit($0, positions: .response) }
            for i in prompts.indices {
                var conts: [[Int]] = [], ss: [SteeringSpec?] = []
                for s in specs { conts += [posTokens[i], negTokens[i]]; ss += [s, s] }
                let lp = try model.teacherForced(TeacherForcedRequest(
                    groups: [.init(prompt: prompts[i], continuations: conts, continuationSteering: ss)],
                    reuse: .sharedPrompt, reduction: .sum, sharedLayers: sharedPrefix, commonHead: sharedPrefix))[0]
                for c in steering.indices { out[c][i] = lp[2 * c][0] - lp[2 * c + 1][0] }
            }
            return out
        }
        // Steering reaches the prompt: one group per (configuration, question), the two answers
        // continuing that configuration's steered prompt.
        var groups: [TeacherForcedRequest.Group] = []
        for s in steering {
            let spec = Self.edit(s, positions: positions)
            for i in prompts.indices { groups.append(.init(prompt: prompts[i], continuations: [posTokens[i], negTokens[i]], steering: spec)) }
        }
        let lp = try batched(groups, configurations: steering.count, tokens: prompts.indices.map { prompts[$0].count + posTokens[$0].count + negTokens[$0].count }) {
            try model.teacherForced(TeacherForcedRequest(groups: $0, reuse: .sharedPrompt, reduction: .sum, sharedLayers: $1, commonHead: sharedPrefix))
        }
        return steering.indices.map { c in (0..<n).map { i in lp[c * n + i][0][0] - lp[c * n + i][1][0] } }
    }

    /// Per configuration, per A/B item: 100 · p(trait letter) / (p(trait) + p(other)).
    public func ab(_ steering: [SteeringEdit?], prompts: [[Int]]? = nil) throws -> [[Double]] {
        let prompts = prompts ?? abPrompts
        guard !prompts.isEmpty else { return steering.map { _ in [] } }
        let cands = Array(Set(abLetters.flatMap { [$0.match, $0.other] })).sorted()
        let col = Dictionary(uniqueKeysWithValues: cands.enumerated().map { ($1, $0) })
        var groups: [TeacherForcedRequest.Group] = []
        for s in steering {
            let spec = Self.edit(s, positions: .all)
            for p in prompts { groups.append(.init(prompt: p, continuations: cands.map { [$0] }, steering: spec)) }
        }
        let lp = try batched(groups, configurations: steering.count, tokens: prompts.map(\.count)) {
            try model.teacherForced(TeacherForcedRequest(groups: $0, reuse: .sharedPrompt, sharedLayers: $1, commonHead: sharedPrefix))
        }
        let n = prompts.count
        return steering.indices.map { c in
            (0..<n).map { i in
                let row = lp[c * n + i]
                let m = row[col[abLetters[i].match]!][0], o = row[col[abLetters[i].other]!][0]
                let top = max(m, o)
                return 100 * Foundation.exp(m - top) / (Foundation.exp(m - top) + Foundation.exp(o - top))
            }
        }
    }

    /// Per configuration, per neutral text: mean negative log-likelihood per token.
    public func meanNLL(_ steering: [SteeringEdit?]) throws -> [[Double]] {
        var groups: [TeacherForcedRequest.Group] = []
        for s in steering {
            let spec = Self.edit(s, positions: .all)
            for t in neutralTokens { groups.append(.init(prompt: [t[0]], continuations: [Array(t.dropFirst())], steering: spec)) }
        }
        let lp = try batched(groups, configurations: steering.count, tokens: neutralTokens.map(\.count)) {
            try model.teacherForced(TeacherForcedRequest(groups: $0, reuse: .none, sharedLayers: $1))
        }
        let n = neutralTokens.count
        return steering.indices.map { c in (0..<n).map { i in -lp[c * n + i][0].reduce(0, +) / Double(lp[c * n + i][0].count) } }
    }

    /// Runs groups laid out configuration-major ([c · items + i]) in engine calls.
    /// Without shared layers: `chunk` groups per call, in order. With them: per batch of items,
    /// every configuration's groups in one call, so that each item's blocks before a
    /// configuration's layer run once for all; items per batch are bounded so that the kept
    /// rows (tokens × hidden × kept layers, fp32) stay under `sharedLayerBytes`.
    func batched(_ groups: [TeacherForcedRequest.Group], configurations: Int, tokens: [Int],
                 _ f: ([TeacherForcedRequest.Group], Bool) throws -> [[[Double]]]) throws -> [[[Double]]] {
        let n = tokens.count
        precondition(groups.count == configurations * n)
        guard sharedPrefix, configurations > 1, n > 0 else {
            var out: [[[Double]]] = []
            out.reserveCapacity(groups.count)
            for start in stride(from: 0, to: groups.count, by: max(chunk, 1)) {
                out += try f(Array(groups[start..<min(start + chunk, groups.count)]), false)
            }
            return out
        }
        var out = [[[Double]]](repeating: [], count: groups.count)
        let kept = Set(groups.compactMap { TeacherForcedRequest.firstLayer($0.steering) ?? $0.continuationSteering?.compactMap { TeacherForcedRequest.firstLayer($0) }.min() }).count
        var start = 0
        while start < n {
            var end = start, bytes = 0
            while end < n && (end == start || bytes + Self.keptBytes(tokens[end], model.hiddenSize, kept) <= Self.sharedLayerBytes) {
                bytes += Self.keptBytes(tokens[end], model.hiddenSize, kept)
                end += 1
            }
            var batch: [TeacherForcedRequest.Group] = []
            for c in 0..<configurations { batch += groups[c * n + start ..< c * n + end] }
            let r = try f(batch, true)
            for c in 0..<configurations { for i in start..<end { out[c * n + i] = r[c * (end - start) + i - start] } }
            start = end
        }
        return out
    }

    /// The bound on rows kept for a shared layer prefix: 256 MiB per engine call.
    public static let sharedLayerBytes = 256 << 20
    static func keptBytes(_ tokens: Int, _ hidden: Int, _ layers: Int) -> Int { tokens * hidden * max(layers, 1) * MemoryLayout<Float>.size }

    // MARK: Validation

    /// Whether log-odds sees a propensity shift that is known to be there: each reference
    /// question is asked after two earlier exchanges in which the assistant answered with the
    /// trait (primed positive) or without it (primed negative), taken from other reference items.
    /// The evidence is paired per question (questions differ far more from each other than
    /// priming moves one): the share of questions whose log-odds are higher when primed
    /// positive, ties counting half, which is the AUC of the paired differences against 0.
    public func primedPrompts(positive: Bool) throws -> [[Int]] {
        guard let tok = model.tokenizer else { return [] }
        let n = references.count
        return try references.indices.map { i in
            let turns = [1, 2].map { k -> PromptFormat.Turn in
                let r = references[(i + k) % n]
                return PromptFormat.Turn(user: r.question, assistant: positive ? r.pos : r.neg)
            }
            return try PromptFormat.prompt(tok, turns: turns, user: references[i].question)
        }
    }

    public func validateLogOdds(minAUC: Double) throws -> InstrumentValidation {
        let pos = try logOdds([nil], prompts: try primedPrompts(positive: true))[0]
        let neg = try logOdds([nil], prompts: try primedPrompts(positive: false))[0]
        return InstrumentValidation(instrument: EvaluatorKind.logodds.rawValue, check: "primed_auc", value: Self.pairedAUC(pos, neg), n: pos.count,
                                    threshold: minAUC,
                                    detail: "paired per question: log-odds after two trait-showing vs two trait-free earlier answers (mean shift \(String(format: "%+.2f", zip(pos, neg).map { $0 - $1 }.reduce(0, +) / Double(max(pos.count, 1)))) nats)")
    }

    /// P(a_i > b_i) over pairs, ties half.
    static func pairedAUC(_ a: [Double], _ b: [Double]) -> Double? {
        let d = zip(a, b).map { $0 - $1 }
        return Statistics.auc(positive: d, negative: [Double](repeating: 0, count: d.count))
    }

    /// The same priming check for A/B items built from the reference answers.
    public func validateAB(minAUC: Double) throws -> InstrumentValidation {
        guard let tok = model.tokenizer, !abItems.isEmpty else {
            return InstrumentValidation(instrument: EvaluatorKind.ab.rawValue, check: "primed_auc", value: nil, n: 0, threshold: minAUC, detail: "no A/B items")
        }
        let n = references.count
        func primed(_ positive: Bool) throws -> [[Int]] {
            try abItems.indices.map { i in
                let turns = n >= 3 ? [1, 2].map { k -> PromptFormat.Turn in
                    let j = (i + k) % abItems.count
                    return PromptFormat.Turn(user: abItems[j].question,
                                             assistant: positive ? abItems[j].answerMatchingBehavior : abItems[j].answerNotMatchingBehavior)
                } : []
                let base = try PromptFormat.prompt(tok, turns: turns, user: abItems[i].question)
                return abParen[i] ? base + PromptFormat.answerTokens(tok, "(") : base
            }
        }
        let pos = try ab([nil], prompts: try primed(true))[0], neg = try ab([nil], prompts: try primed(false))[0]
        return InstrumentValidation(instrument: EvaluatorKind.ab.rawValue, check: "primed_auc", value: Self.pairedAUC(pos, neg), n: pos.count,
                                    threshold: minAUC,
                                    detail: "paired per item: P(trait letter) after two trait vs two non-trait earlier choices (mean shift \(String(format: "%+.1f", zip(pos, neg).map { $0 - $1 }.reduce(0, +) / Double(max(pos.count, 1)))) points)")
    }

    /// Whether perplexity sees damage that is known to be there: per neutral text, the NLL under
    /// a random direction at 4× the layer's residual norm against the unsteered NLL (paired AUC:
    /// the share of texts made worse, ties half).
    public func validatePerplexity(layer: Int, norm: Double, minAUC: Double, seed: UInt64) throws -> InstrumentValidation {
        var rng = StatsRNG(seed: seed ^ 0x9E7)
        var v = (0..<model.hiddenSize).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53) - 0.5) }
        let n = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        v = v.map { $0 / n }
        let r = try meanNLL([nil, .add(layer: layer, vector: v, coef: Float(4 * norm))])
        let diffs = zip(r[1], r[0]).map { $0 - $1 }
        let auc = Statistics.auc(positive: diffs, negative: [Double](repeating: 0, count: diffs.count)) ?? 0.5
        return InstrumentValidation(instrument: EvaluatorKind.perplexity.rawValue, check: "damage_auc", value: auc, n: diffs.count,
                                    threshold: minAUC,
                                    detail: "NLL under a random direction at 4× the L\(layer) norm vs unsteered, \(diffs.count) texts (ratio \(String(format: "%.2f", Foundation.exp(diffs.reduce(0, +) / Double(max(diffs.count, 1))))))")
    }
}

/// Evidence that one instrument measures what it claims, on known cases.
public struct InstrumentValidation: Codable, Sendable, Equatable {
    /// `judge`, `logodds`, `ab`, `perplexity`, `degeneration`.
    public var instrument: String
    /// `trait_auc`, `coherence_auc`, `primed_auc`, `damage_auc`, `repetition_auc`.
    public var check: String
    /// nil: the check could not be computed (no scores); that fails.
    public var value: Double?
    public var n: Int
    public var threshold: Double
    public var detail: String
    public var passed: Bool { (value ?? 0) >= threshold }

    public init(instrument: String, check: String, value: Double?, n: Int, threshold: Double, detail: String) {
        self.instrument = instrument; self.check = check; self.value = value; self.n = n; self.threshold = threshold; self.detail = detail
    }
}

/// Repetition in generated text, on lower-cased words: steering past the coherence cliff makes
/// answers like "A. A. A. A." that a weak judge may still rate as coherent.
public enum Degeneration {
    static func words(_ s: String) -> [Substring] {
        s.lowercased().split(whereSeparator: { $0.isWhitespace || $0.isPunctuation && $0 != "'" })
    }
    /// The share of word bigrams that repeat an earlier bigram (0 for fewer than three words).
    public static func repetition(_ s: String) -> Double {
        let w = words(s)
        guard w.count >= 3 else { return 0 }
        var seen = Set<String>(), repeated = 0
        for i in 0..<(w.count - 1) where !seen.insert(w[i] + " " + w[i + 1]).inserted { repeated += 1 }
        return Double(repeated) / Double(w.count - 1)
    }
    /// Distinct words / words (1 for empty text).
    public static func distinct1(_ s: String) -> Double {
        let w = words(s)
        return w.isEmpty ? 1 : Double(Set(w).count) / Double(w.count)
    }

    /// Degenerate versions of a fluent answer, the shapes steering produces: words shuffled, one
    /// word repeated, cut off at half, and a letter-and-dot loop.
    public static func versions(of answer: String, seed: UInt64) -> [(kind: String, text: String)] {
        let w = answer.split(separator: " ").map(String.init)
        var shuffled = w
        var rng = StatsRNG(seed: seed)
        for i in stride(from: shuffled.count - 1, to: 0, by: -1) { shuffled.swapAt(i, rng.nextInt(below: i + 1)) }
        let word = w.first { $0.count > 3 } ?? w.first ?? "the"
        let letter = answer.first(where: { $0.isLetter }).map { String($0).uppercased() } ?? "A"
        return [
            ("shuffled", shuffled.joined(separator: " ")),
            ("repeated", Array(repeating: word, count: max(w.count, 8)).joined(separator: " ")),
            ("cut_off", w.prefix(max(w.count / 2, 1)).joined(separator: " ")),
            ("letter_loop", Array(repeating: "\(letter).", count: max(w.count / 2, 6)).joined(separator: " ")),
        ]
    }

    /// Whether repetition tells fluent answers from their repeated and looped versions.
    public static func validate(fluent: [String], minAUC: Double, seed: UInt64) -> InstrumentValidation {
        var degenerate: [Double] = []
        for (i, a) in fluent.enumerated() {
            for v in versions(of: a, seed: seed &+ UInt64(i)) where v.kind == "repeated" || v.kind == "letter_loop" {
                degenerate.append(repetition(v.text))
            }
        }
        let auc = Statistics.auc(positive: degenerate, negative: fluent.map(repetition)) ?? 0.5
        return InstrumentValidation(instrument: EvaluatorKind.degeneration.rawValue, check: "repetition_auc", value: auc,
                                    n: fluent.count + degenerate.count, threshold: minAUC,
                                    detail: "repetition of \(fluent.count) fluent reference answers vs \(degenerate.count) repeated/looped versions")
    }
}
