import Foundation
import TillerModels
import TillerTokenizers

// Monitoring with a trait vector (persona_vectors' projection): how far a prompt, or a prompt
// with its response, already points along the trait direction at one layer, without steering.
// High projections flag training samples or prompts that will shift the model towards the trait.

/// One row of a projection data file (JSONL, one object per line).
///
/// Either `prompt` (a user message, with an optional `system`) or `messages` (chat messages
/// alternating user/assistant after an optional system message); `response` (or a final assistant
/// message) is the answer to project. `label` (true/false or 1/0) marks rows for an AUC; every
/// other field is carried to the output unchanged.
public struct ProjectionInput: Sendable {
    public var system: String?
    public var turns: [PromptFormat.Turn]
    public var user: String
    public var response: String?
    public var label: Bool?
    /// The line's JSON object, for the output.
    public var fields: [String: JSONValueBox]

    public init(system: String? = nil, turns: [PromptFormat.Turn] = [], user: String, response: String? = nil, label: Bool? = nil,
                fields: [String: JSONValueBox] = [:]) {
        self.system = system
        self.turns = turns
        self.user = user
        self.response = response
        self.label = label
        self.fields = fields
    }
}

/// A JSON value kept as parsed (Foundation's object) so rows round-trip into the output.
public struct JSONValueBox: @unchecked Sendable {
    public let value: Any
    public init(_ value: Any) { self.value = value }
}

/// Where a row's activation is read.
public enum ProjectionPosition: String, Sendable, CaseIterable {
    /// The mean over the response tokens (rows with a response).
    case responseMean = "response"
    /// The last prompt token, whose logits produce the first answer token.
    case promptLast = "prompt:last"
}

public struct ProjectionError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public enum Projection {
    /// Reads a JSONL data file; every problem names the file and line.
    public static func readData(path: String) throws -> [ProjectionInput] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ProjectionError("\(path): cannot read the data file")
        }
        var rows: [ProjectionInput] = []
        for (i, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            let at = "\(path):\(i + 1)"
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
                throw ProjectionError("\(at): not a JSON object")
            }
            rows.append(try parse(obj, at: at))
        }
        guard !rows.isEmpty else { throw ProjectionError("\(path): no rows (expected one JSON object per line with \"prompt\" or \"messages\")") }
        return rows
    }

    static func parse(_ obj: [String: Any], at: String) throws -> ProjectionInput {
        func string(_ k: String) throws -> String? {
            guard let v = obj[k], !(v is NSNull) else { return nil }
            guard let s = v as? String else { throw ProjectionError("\(at): \"\(k)\" must be a string") }
            return s
        }
        var label: Bool?
        if let l = obj["label"], !(l is NSNull) {
            // JSON true/false arrive as NSNumber 1/0, like the numbers 1 and 0.
            if let n = l as? NSNumber, n.doubleValue == 0 || n.doubleValue == 1 { label = n.doubleValue == 1 }
            else { throw ProjectionError("\(at): \"label\" must be true/false or 1/0, got \(l)") }
        }
        let fields = obj.mapValues(JSONValueBox.init)
        if let messages = obj["messages"] {
            guard obj["prompt"] == nil else { throw ProjectionError("\(at): give \"prompt\" or \"messages\", not both") }
            guard let list = messages as? [[String: Any]], !list.isEmpty else {
                throw ProjectionError("\(at): \"messages\" must be a non-empty list of {\"role\", \"content\"} objects")
            }
            var msgs: [(role: String, content: String)] = []
            for (j, m) in list.enumerated() {
                guard let role = m["role"] as? String, let content = m["content"] as? String else {
                    throw ProjectionError("\(at): messages[\(j)] needs string \"role\" and \"content\"")
                }
                msgs.append((role, content))
            }
            var system: String?
            if msgs.first?.role == "system" { system = msgs.removeFirst().content }
            var response = try string("response")
            if msgs.last?.role == "assistant" {
                guard response == nil else { throw ProjectionError("\(at): a final assistant message and \"response\" both give the response") }
                response = msgs.removeLast().content
            }
            guard msgs.count % 2 == 1 else { throw ProjectionError("\(at): messages must alternate user/assistant and end with a user message (before an optional final assistant answer)") }
            var turns: [PromptFormat.Turn] = []
            for k in stride(from: 0, to: msgs.count - 1, by: 2) {
                guard msgs[k].role == "user", msgs[k + 1].role == "assistant" else {
                    throw ProjectionError("\(at): messages must alternate user/assistant (message \(k + (system == nil ? 0 : 1)) is \(msgs[k].role))")
                }
                turns.append(.init(user: msgs[k].content, assistant: msgs[k + 1].content))
            }
            guard msgs.last!.role == "user" else { throw ProjectionError("\(at): the message before the answer must be from the user") }
            return ProjectionInput(system: system, turns: turns, user: msgs.last!.content, response: response, label: label, fields: fields)
        }
        guard let prompt = try string("prompt") else { throw ProjectionError("\(at): needs \"prompt\" (or \"messages\")") }
        return ProjectionInput(system: try string("system"), user: prompt, response: try string("response"), label: label, fields: fields)
    }

    /// The tokens of a row: its prompt (through PromptFormat, as extraction and steering use it)
    /// and its response, if any.
    public static func tokens(_ row: ProjectionInput, tokenizer: Tokenizer) throws -> (prompt: [Int], response: [Int]) {
        let prompt = try PromptFormat.prompt(tokenizer, system: row.system, turns: row.turns, user: row.user)
        let response = row.response.map { PromptFormat.answerTokens(tokenizer, $0) } ?? []
        return (prompt, response)
    }

    /// Projections `a·v / |v|` of resid_post.`layer` activations on `vector`, per row: the mean
    /// over response tokens for rows with a non-empty response, else the last prompt token.
    /// `onBatch(done)` reports progress; rows run in batches of `batchSize` sequences.
    public static func project(model: LanguageModel, vector: [Float], layer: Int, rows: [(prompt: [Int], response: [Int])],
                               batchSize: Int = 16, onBatch: (Int) -> Void = { _ in }) throws -> [(position: ProjectionPosition, value: Double)] {
        guard vector.count == model.hiddenSize else {
            throw ProjectionError("vector has \(vector.count) dims, the model's hidden size is \(model.hiddenSize)")
        }
        guard layer >= 0, layer < model.layerCount else {
            throw ProjectionError("layer \(layer) is outside the model's 0..<\(model.layerCount)")
        }
        var norm = 0.0
        for x in vector { norm += Double(x) * Double(x) }
        norm = norm.squareRoot()
        guard norm > 0 else { throw ProjectionError("the vector at layer \(layer) is zero") }
        let context = model.config.maxPositionEmbeddings
        for (i, r) in rows.enumerated() where r.prompt.count + r.response.count > context {
            throw ProjectionError("row \(i + 1): \(r.prompt.count + r.response.count) tokens exceed the model's context of \(context)")
        }
        var out = [(position: ProjectionPosition, value: Double)?](repeating: nil, count: rows.count)
        // Response rows and prompt-only rows read different positions: one capture spec each.
        let groups: [(ProjectionPosition, [Int])] = [
            (.responseMean, rows.indices.filter { !rows[$0].response.isEmpty }),
            (.promptLast, rows.indices.filter { rows[$0].response.isEmpty }),
        ]
        var done = 0
        for (position, indices) in groups where !indices.isEmpty {
            let capture = CaptureSpec(layers: [layer], positions: position == .responseMean ? .meanResponse : .lastPrompt)
            for start in stride(from: 0, to: indices.count, by: max(batchSize, 1)) {
                let chunk = Array(indices[start ..< min(start + max(batchSize, 1), indices.count)])
                let batch = chunk.map { rows[$0].prompt + rows[$0].response }
                let result = try model.forward(batch, capture: capture, logits: .none, promptLengths: chunk.map { rows[$0].prompt.count })
                for (k, i) in chunk.enumerated() {
                    guard let a = result.activations[k].row(0, layer: layer) else {
                        throw ProjectionError("row \(i + 1): no activation captured at layer \(layer)")
                    }
                    var dot = 0.0
                    for d in 0..<a.count { dot += Double(a[d]) * Double(vector[d]) }
                    out[i] = (position, dot / norm)
                }
                done += chunk.count
                onBatch(done)
            }
        }
        return out.map { $0! }
    }
}
