import Foundation
import TillerTensor

/// A positive/negative pair: two system prompts (instructions form) or two text prefixes
/// (scenarios form).
public struct ContrastPair: Codable, Sendable, Equatable {
    public var pos: String
    public var neg: String
    public init(pos: String, neg: String) {
        self.pos = pos
        self.neg = neg
    }
}

/// A question with a short answer that shows the trait (`pos`) and one that does not (`neg`):
/// the known cases judge-free metrics score (log-odds, A/B) and the judge is validated on.
/// Worded unlike the extraction data, so that a gain measures the trait, not the vector
/// remembering its own training text.
public struct ReferenceAnswer: Codable, Sendable, Equatable {
    public var question: String
    public var pos: String
    public var neg: String
    public init(question: String, pos: String, neg: String) {
        self.question = question
        self.pos = pos
        self.neg = neg
    }
}

/// How a trait's extraction data makes the model show the trait or its opposite.
public enum ExtractionForm: String, Sendable, Codable, CaseIterable {
    /// Positive/negative system prompts × questions, answered by an instruct model.
    case instructions
    /// Positive/negative text prefixes that a (base) model completes.
    case scenarios
}

/// A trait to extract and steer. Files:
/// - Tiller's form (one JSON file, or `trait.json` in a folder):
///   `{"name", "definition", "instructions": [{"pos","neg"}], "questions": [...],
///     "scenarios": [{"pos","neg"}], "steering_questions": [...], "eval_prompt"?}`
///   with at least one of instructions(+questions) and scenarios.
/// - persona_vectors' form, imported as is: `{"instruction": [{"pos","neg"}], "questions",
///   "eval_prompt"}` (one file; the name is the file name), or a folder with its `extract.json`
///   and `eval.json`, whose questions become the steering questions.
public struct Trait: Sendable, Equatable {
    public var name: String
    /// The judge's rubric for 0–100 scoring of how strongly an answer shows the trait.
    public var definition: String
    /// A complete judge prompt with `{question}` and `{answer}` placeholders (persona_vectors'
    /// `eval_prompt`), when the file gives one.
    public var evalPrompt: String?
    public var instructions: [ContrastPair]
    public var questions: [String]
    public var scenarios: [ContrastPair]
    /// Questions for evaluating steering; disjoint from the extraction data.
    public var steeringQuestions: [String]
    /// Reference answer pairs (`reference_answers`); disjoint from the extraction data too.
    public var referenceAnswers: [ReferenceAnswer] = []
    /// Where the trait was read from.
    public var source: String

    public init(name: String, definition: String, evalPrompt: String? = nil, instructions: [ContrastPair] = [],
                questions: [String] = [], scenarios: [ContrastPair] = [], steeringQuestions: [String] = [],
                source: String = "<memory>") {
        self.name = name
        self.definition = definition
        self.evalPrompt = evalPrompt
        self.instructions = instructions
        self.questions = questions
        self.scenarios = scenarios
        self.steeringQuestions = steeringQuestions
        self.source = source
    }

    public var forms: [ExtractionForm] {
        (instructions.isEmpty ? [] : [.instructions]) + (scenarios.isEmpty ? [] : [.scenarios])
    }

    // MARK: Loading

    /// The traits shipped with Tiller (refusal, sycophancy, evil).
    public static var shippedNames: [String] {
        guard let dir = shippedDirectory,
              let files = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    static var shippedDirectory: String? {
        Bundle.module.url(forResource: "traits", withExtension: nil, subdirectory: "Resources")?.path
            ?? Bundle.module.url(forResource: "traits", withExtension: nil)?.path
    }

    /// A shipped trait's name, a JSON file, or a trait folder.
    public static func resolve(_ nameOrPath: String) throws -> Trait {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: nameOrPath, isDirectory: &isDir) {
            return try load(path: nameOrPath)
        }
        if !nameOrPath.contains("/"), !nameOrPath.hasSuffix(".json"), let dir = shippedDirectory {
            let p = (dir as NSString).appendingPathComponent(nameOrPath + ".json")
            if FileManager.default.fileExists(atPath: p) { return try load(path: p) }
        }
        let shipped = shippedNames
        throw TraitError("\(nameOrPath): no such trait file or folder, and not a shipped trait (shipped: \(shipped.isEmpty ? "none" : shipped.joined(separator: ", ")))")
    }

    public static func load(path: String) throws -> Trait {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TraitError("\(path): no such trait file or folder")
        }
        guard isDir.boolValue else { return try parse(try readJSON(path), path: path) }
        let fm = FileManager.default
        let traitFile = (path as NSString).appendingPathComponent("trait.json")
        if fm.fileExists(atPath: traitFile) { return try parse(try readJSON(traitFile), path: traitFile) }
        let extract = (path as NSString).appendingPathComponent("extract.json")
        let eval = (path as NSString).appendingPathComponent("eval.json")
        guard fm.fileExists(atPath: extract) else {
            throw TraitError("\(path): a trait folder needs trait.json (Tiller's form) or extract.json + eval.json (persona_vectors' form)")
        }
        var trait = try parse(try readJSON(extract), path: extract, defaultName: (path as NSString).lastPathComponent)
        if fm.fileExists(atPath: eval) {
            let e = try readJSON(eval)
            guard let qs = e["questions"] else { throw TraitError("\(eval): missing \"questions\"") }
            trait.steeringQuestions = try strings(qs, key: "questions", path: eval)
            if trait.evalPrompt == nil, let p = e["eval_prompt"] as? String { trait.evalPrompt = p; trait.definition = p }
            trait.source = path
            try trait.validate()
        }
        return trait
    }

    static func readJSON(_ path: String) throws -> [String: Any] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TraitError("\(path): cannot read trait file: \(error.localizedDescription)")
        }
        let obj: Any
        do { obj = try JSONSerialization.jsonObject(with: data) } catch {
            throw TraitError("\(path): not valid JSON (\(error.localizedDescription))")
        }
        guard let dict = obj as? [String: Any] else { throw TraitError("\(path): a trait file must be a JSON object") }
        return dict
    }

    static let tillerKeys: Set<String> = ["name", "definition", "eval_prompt", "instructions", "questions", "scenarios",
                                          "steering_questions", "description", "reference_answers"]
    static let personaKeys: Set<String> = ["instruction", "questions", "eval_prompt"]

    /// Parses a decoded trait file and validates it.
    public static func parse(_ obj: [String: Any], path: String, defaultName: String? = nil) throws -> Trait {
        let persona = obj["instruction"] != nil && obj["name"] == nil
        let allowed = persona ? personaKeys : tillerKeys
        if let unknown = obj.keys.filter({ !allowed.contains($0) }).sorted().first {
            let hint = persona ? "persona_vectors' form has instruction, questions, eval_prompt"
                : "allowed: \(tillerKeys.sorted().joined(separator: ", "))"
            throw TraitError("\(path): unknown key \"\(unknown)\" (\(hint))")
        }
        var t = Trait(name: "", definition: "", source: path)
        if persona {
            t.name = defaultName ?? ((path as NSString).lastPathComponent as NSString).deletingPathExtension
            t.instructions = try pairs(obj["instruction"]!, key: "instruction", path: path)
            guard let q = obj["questions"] else { throw TraitError("\(path): missing \"questions\"") }
            t.questions = try strings(q, key: "questions", path: path)
            guard let p = obj["eval_prompt"] as? String else {
                throw TraitError("\(path): missing string \"eval_prompt\" (the judge's rubric)")
            }
            t.evalPrompt = p
            t.definition = p
        } else {
            guard let name = obj["name"] as? String else { throw TraitError("\(path): missing string \"name\"") }
            t.name = name
            guard let def = obj["definition"] as? String else {
                throw TraitError("\(path): missing string \"definition\" (the judge's rubric for 0–100 scoring)")
            }
            t.definition = def
            if let p = obj["eval_prompt"] { guard let s = p as? String else { throw TraitError("\(path): \"eval_prompt\" must be a string") }; t.evalPrompt = s }
            if let v = obj["instructions"] { t.instructions = try pairs(v, key: "instructions", path: path) }
            if let v = obj["questions"] { t.questions = try strings(v, key: "questions", path: path) }
            if let v = obj["scenarios"] { t.scenarios = try pairs(v, key: "scenarios", path: path) }
            guard let sq = obj["steering_questions"] else {
                throw TraitError("\(path): missing \"steering_questions\" (questions for evaluating steering, disjoint from the extraction data)")
            }
            t.steeringQuestions = try strings(sq, key: "steering_questions", path: path)
            if let v = obj["reference_answers"] { t.referenceAnswers = try references(v, path: path) }
        }
        try t.validate(requireSteering: !persona)
        return t
    }

    static func strings(_ v: Any, key: String, path: String) throws -> [String] {
        guard let arr = v as? [Any] else { throw TraitError("\(path): \"\(key)\" must be an array of strings") }
        return try arr.enumerated().map { i, x in
            guard let s = x as? String else { throw TraitError("\(path): \(key)[\(i)] is not a string") }
            return s
        }
    }

    static func references(_ v: Any, path: String) throws -> [ReferenceAnswer] {
        guard let arr = v as? [Any] else { throw TraitError("\(path): \"reference_answers\" must be an array of {\"question\", \"pos\", \"neg\"} objects") }
        return try arr.enumerated().map { i, x in
            guard let o = x as? [String: Any] else { throw TraitError("\(path): reference_answers[\(i)] is not an object") }
            if let extra = o.keys.sorted().first(where: { !["question", "pos", "neg"].contains($0) }) {
                throw TraitError("\(path): reference_answers[\(i)] has unknown key \"\(extra)\" (expected question, pos, neg)")
            }
            guard let q = o["question"] as? String, let p = o["pos"] as? String, let n = o["neg"] as? String else {
                throw TraitError("\(path): reference_answers[\(i)] needs string fields \"question\", \"pos\" and \"neg\"")
            }
            return ReferenceAnswer(question: q, pos: p, neg: n)
        }
    }

    static func pairs(_ v: Any, key: String, path: String) throws -> [ContrastPair] {
        guard let arr = v as? [Any] else { throw TraitError("\(path): \"\(key)\" must be an array of {\"pos\", \"neg\"} objects") }
        return try arr.enumerated().map { i, x in
            guard let o = x as? [String: Any] else { throw TraitError("\(path): \(key)[\(i)] is not an object with \"pos\" and \"neg\"") }
            if let extra = o.keys.first(where: { $0 != "pos" && $0 != "neg" }) {
                throw TraitError("\(path): \(key)[\(i)] has unknown key \"\(extra)\" (expected \"pos\" and \"neg\")")
            }
            guard let p = o["pos"] as? String, let n = o["neg"] as? String else {
                throw TraitError("\(path): \(key)[\(i)] needs string fields \"pos\" and \"neg\"")
            }
            return ContrastPair(pos: p, neg: n)
        }
    }

    /// Checks the trait is usable; errors name the file and the problem.
    public func validate(requireSteering: Bool = true) throws {
        let path = source
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
            throw TraitError("\(path): name \"\(name)\" must be non-empty letters, digits, '_' or '-' (it names output files)")
        }
        guard definition.trimmingCharacters(in: .whitespacesAndNewlines).count >= 20 else {
            throw TraitError("\(path): \"definition\" is empty or too short to serve as a judge's rubric")
        }
        guard !instructions.isEmpty || !scenarios.isEmpty else {
            throw TraitError("\(path): no extraction data: give \"instructions\" with \"questions\", or \"scenarios\" (or both)")
        }
        if !instructions.isEmpty && questions.isEmpty {
            throw TraitError("\(path): \"instructions\" are given but no \"questions\" for the model to answer under them")
        }
        if instructions.isEmpty && !questions.isEmpty {
            throw TraitError("\(path): \"questions\" are given but no \"instructions\" (pos/neg system prompts) to answer them under")
        }
        for (key, list) in [("instructions", instructions), ("scenarios", scenarios)] {
            for (i, p) in list.enumerated() {
                if p.pos.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty || p.neg.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                    throw TraitError("\(path): \(key)[\(i)] has an empty \"pos\" or \"neg\"")
                }
                if p.pos == p.neg { throw TraitError("\(path): \(key)[\(i)] has identical \"pos\" and \"neg\"") }
            }
        }
        for (key, list) in [("questions", questions), ("steering_questions", steeringQuestions)] {
            var seen = Set<String>()
            for (i, q) in list.enumerated() {
                let k = Trait.normalise(q)
                if k.isEmpty { throw TraitError("\(path): \(key)[\(i)] is empty") }
                if !seen.insert(k).inserted { throw TraitError("\(path): \(key)[\(i)] repeats an earlier question: \"\(q)\"") }
            }
        }
        if requireSteering && steeringQuestions.isEmpty {
            throw TraitError("\(path): \"steering_questions\" is empty")
        }
        // Steering is evaluated on questions the vector was not extracted from.
        let extraction = Set(questions.map(Trait.normalise))
        let scenarioText = scenarios.flatMap { [Trait.normalise($0.pos), Trait.normalise($0.neg)] }
        var seenReference = Set<String>()
        for (i, r) in referenceAnswers.enumerated() {
            let k = Trait.normalise(r.question)
            if k.isEmpty || Trait.normalise(r.pos).isEmpty || Trait.normalise(r.neg).isEmpty {
                throw TraitError("\(path): reference_answers[\(i)] has an empty question, pos or neg")
            }
            if Trait.normalise(r.pos) == Trait.normalise(r.neg) { throw TraitError("\(path): reference_answers[\(i)] has identical pos and neg") }
            if !seenReference.insert(k).inserted { throw TraitError("\(path): reference_answers[\(i)] repeats an earlier question: \"\(r.question)\"") }
            if extraction.contains(k) { throw TraitError("\(path): reference_answers[\(i)] asks an extraction question: \"\(r.question)\"") }
            if scenarioText.contains(where: { $0.contains(k) }) {
                throw TraitError("\(path): reference_answers[\(i)] question appears in a scenario: \"\(r.question)\"")
            }
        }
        for (i, q) in steeringQuestions.enumerated() {
            let k = Trait.normalise(q)
            if extraction.contains(k) {
                throw TraitError("\(path): steering_questions[\(i)] is also an extraction question: \"\(q)\"")
            }
            if scenarioText.contains(where: { $0.contains(k) }) {
                throw TraitError("\(path): steering_questions[\(i)] appears in a scenario: \"\(q)\"")
            }
        }
    }

    /// A stable fingerprint of the extraction data (FNV-1a 64), so stored activations are reused
    /// only for the data they came from.
    public var extractionDigest: String {
        var h = Fingerprint()
        func feed(_ s: String) {
            h.add(bytes: s.utf8)
            h.add(bytes: [0xFF])  // separator
        }
        for p in instructions { feed(p.pos); feed(p.neg) }
        feed("|questions|")
        questions.forEach(feed)
        feed("|scenarios|")
        for p in scenarios { feed(p.pos); feed(p.neg) }
        return String(h.value, radix: 16)
    }

    static func normalise(_ s: String) -> String {
        s.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }
}

public struct TraitError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
