import Foundation

/// The three judge prompts, as templates with `{{name}}` placeholders. The defaults ship as
/// resource files (Resources/prompts/*.txt); a user overrides any of them with a directory holding
/// files of the same names.
public struct JudgePrompts: Sendable, Equatable {
    /// Placeholders: trait, definition, question, answer.
    public var trait: String
    /// Placeholders: question, answer.
    public var coherence: String
    /// Placeholders: question, answer.
    public var relevance: String

    public static let fileNames = ["trait.txt", "coherence.txt", "relevance.txt"]

    public init(trait: String, coherence: String, relevance: String) throws {
        self.trait = trait
        self.coherence = coherence
        self.relevance = relevance
        try Self.check(trait, "trait.txt", required: ["trait", "definition", "question", "answer"])
        try Self.check(coherence, "coherence.txt", required: ["question", "answer"])
        try Self.check(relevance, "relevance.txt", required: ["question", "answer"])
    }

    /// The shipped prompts.
    public static func defaults() throws -> JudgePrompts {
        guard let dir = Bundle.module.url(forResource: "Resources", withExtension: nil)?.appendingPathComponent("prompts") else {
            throw JudgeError.configuration("the shipped judge prompts are missing from the TillerEval bundle")
        }
        return try read(directory: dir.path, base: nil)
    }

    /// Prompts from `directory`; files missing there come from `fallback` (default: the shipped ones).
    public static func load(directory: String, fallback: JudgePrompts? = nil) throws -> JudgePrompts {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw JudgeError.configuration("judge prompt directory \(directory) does not exist")
        }
        return try read(directory: directory, base: fallback ?? defaults())
    }

    private static func read(directory: String, base: JudgePrompts?) throws -> JudgePrompts {
        func read(_ name: String, _ dflt: String?) throws -> String {
            let path = (directory as NSString).appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: path) {
                do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
                    throw JudgeError.configuration("cannot read judge prompt \(path): \(error.localizedDescription)")
                }
            }
            guard let dflt else { throw JudgeError.configuration("judge prompt \(path) is missing") }
            return dflt
        }
        return try JudgePrompts(trait: read("trait.txt", base?.trait), coherence: read("coherence.txt", base?.coherence),
                                relevance: read("relevance.txt", base?.relevance))
    }

    public func traitPrompt(trait name: String, definition: String, question: String, answer: String) -> String {
        traitJudgePrompt(trait: name, definition: definition, question: question, answer: answer).text
    }
    public func coherencePrompt(question: String, answer: String) -> String {
        coherenceJudgePrompt(question: question, answer: answer).text
    }
    public func relevancePrompt(question: String, answer: String) -> String {
        relevanceJudgePrompt(question: question, answer: answer).text
    }

    /// The prompts with their shared heads (`JudgePrompt.head`).
    public func traitJudgePrompt(trait name: String, definition: String, question: String, answer: String) -> JudgePrompt {
        Self.fill(trait, ["trait": name, "definition": definition, "question": question, "answer": answer])
    }
    public func coherenceJudgePrompt(question: String, answer: String) -> JudgePrompt {
        Self.fill(coherence, ["question": question, "answer": answer])
    }
    public func relevanceJudgePrompt(question: String, answer: String) -> JudgePrompt {
        Self.fill(relevance, ["question": question, "answer": answer])
    }

    /// The placeholders that change from one judged answer to the next: a prompt's head ends
    /// where the first of them is filled in.
    static let perItem: Set<String> = ["question", "answer"]

    /// One pass over the template: text substituted in is never scanned again, so an answer that
    /// itself contains "{{question}}" stays as written.
    static func fill(_ template: String, _ values: [String: String]) -> JudgePrompt {
        var out = ""
        var head: Int?
        var rest = Substring(template)
        while let open = rest.range(of: "{{") {
            out += rest[..<open.lowerBound]
            let after = rest[open.upperBound...]
            if let close = after.range(of: "}}"), let v = values[String(after[..<close.lowerBound])] {
                if head == nil && perItem.contains(String(after[..<close.lowerBound])) { head = out.count }
                out += v
                rest = after[close.upperBound...]
            } else {
                out += "{{"
                rest = after
            }
        }
        out += rest
        let leading = out.prefix { $0.isNewline }.count
        let text = out.trimmingCharacters(in: .newlines)
        return JudgePrompt(text: text, head: min(max((head ?? 0) - leading, 0), text.count))
    }

    static func placeholders(_ template: String) -> Set<String> {
        var names = Set<String>()
        var rest = Substring(template)
        while let open = rest.range(of: "{{") {
            let after = rest[open.upperBound...]
            guard let close = after.range(of: "}}") else { break }
            let name = String(after[..<close.lowerBound])
            if name.allSatisfy({ $0.isLetter || $0 == "_" }) && !name.isEmpty { names.insert(name) }
            rest = after[close.upperBound...]
        }
        return names
    }

    private static func check(_ template: String, _ file: String, required: [String]) throws {
        let found = placeholders(template)
        let missing = required.filter { !found.contains($0) }
        guard missing.isEmpty else {
            throw JudgeError.configuration("judge prompt \(file) lacks the placeholder(s) \(missing.map { "{{\($0)}}" }.joined(separator: ", "))")
        }
        let unknown = found.subtracting(required)
        guard unknown.isEmpty else {
            throw JudgeError.configuration("judge prompt \(file) has unknown placeholder(s) \(unknown.sorted().map { "{{\($0)}}" }.joined(separator: ", ")); allowed: \(required.joined(separator: ", "))")
        }
    }
}

/// A filled judge prompt and the length of its head: the first `head` characters are the same for
/// every answer judged with this template (its instructions, the trait and its definition), so
/// a local judge computes their keys/values once (`Judge.judge(_: JudgePrompt)`).
public struct JudgePrompt: Sendable, Equatable {
    public var text: String
    /// Characters of `text` that precede the first per-item field.
    public var head: Int
    public init(text: String, head: Int = 0) {
        self.text = text
        self.head = head
    }
}
