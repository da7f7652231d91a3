import ArgumentParser
import Foundation
import TillerFormats
import TillerTokenizers

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn text into the model's token ids (exactly as transformers does).")

    @Option(name: .shortAndLong, help: "Model: cache name, .gguf path or HF directory.")
    var model: String
    @Option(name: .shortAndLong, help: "The text to tokenize.")
    var text: String
    @Flag(help: "Wrap the text as a user message in the model's chat template (with the generation prompt).")
    var chat = false
    @Option(help: "System message (with --chat).")
    var system: String?
    @Flag(help: "Print {\"ids\": […], \"tokens\": […]} as JSON.")
    var json = false

    func run() throws {
        let tokenizer = try loadModelTokenizer(model)
        let ids = try encodePrompt(tokenizer, text: text, chat: chat, system: system)
        if json {
            let obj: [String: Any] = ["ids": ids, "tokens": ids.map { tokenizer.token($0) }]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            for id in ids { print("\(id)\t\(tokenizer.token(id).debugDescription)") }
        }
    }
}

/// The options every prompt-taking command shares: model, prompt text, chat wrapping.
struct PromptInput: ParsableArguments {
    @Option(name: .shortAndLong, help: "Model: cache name, .gguf path or HF directory.")
    var model: String
    @Option(name: .shortAndLong, help: "The prompt.")
    var prompt: String
    @Flag(help: "Wrap the prompt as a user message in the model's chat template (with the generation prompt).")
    var chat = false
    @Option(help: "System message (with --chat).")
    var system: String?

    func ids(_ tokenizer: Tokenizer) throws -> [Int] {
        try encodePrompt(tokenizer, text: prompt, chat: chat, system: system)
    }
}

/// The tokenizer of a model argument, without loading its weights.
func loadModelTokenizer(_ argument: String) throws -> Tokenizer {
    switch try ModelCache.resolve(argument) {
    case .gguf(let path): return try loadTokenizer(gguf: GGUFFile(path: path))
    case .hfDirectory(let path): return try loadTokenizer(directory: path)
    }
}

/// Prompt ids: plain text with the tokenizer's special tokens, or the chat template applied to
/// [system?, user] with the generation prompt. A model without a template falls back to plain
/// text, with a notice.
func encodePrompt(_ tokenizer: Tokenizer, text: String, chat: Bool, system: String?) throws -> [Int] {
    guard chat else {
        if system != nil { note("note: --system is only used with --chat; ignoring it") }
        return tokenizer.encode(text, addSpecialTokens: true)
    }
    guard tokenizer.chatTemplate != nil else {
        note("note: this model has no chat template (base model): using the plain text")
        let joined = system.map { $0 + "\n\n" + text } ?? text
        return tokenizer.encode(joined, addSpecialTokens: true)
    }
    var messages: [ChatMessage] = []
    if let s = system { messages.append(ChatMessage(role: "system", content: s)) }
    messages.append(ChatMessage(role: "user", content: text))
    let rendered = try renderChat(tokenizer, messages: messages, addGenerationPrompt: true)
    return tokenizer.encode(rendered, addSpecialTokens: false)
}
