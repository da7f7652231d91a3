import ArgumentParser
import Foundation
import TillerFormats
import TillerTokenizers

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn text into the model's token ids (exactly as transformers does).")

    @Option(name: .shortAndLong, help: modelHelp)
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
    @Option(name: .shortAndLong, help: modelHelp)
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

/// Prompt ids: plain text with the tokenizer's special tokens, or (`--chat`) the prompt format
/// that extraction and evaluation use (PromptFormat): the chat template applied to [system?, user]
/// with the generation prompt, or on a base model the explicit "Question: …\nAnswer:" format.
func encodePrompt(_ tokenizer: Tokenizer, text: String, chat: Bool, system: String?) throws -> [Int] {
    guard chat else {
        if system != nil { note("note: --system is only used with --chat; ignoring it") }
        return tokenizer.encode(text, addSpecialTokens: true)
    }
    if tokenizer.chatTemplate == nil {
        note("note: this model has no chat template (base model): using the base-model format (Question: …\nAnswer:)")
    }
    return try PromptFormat.prompt(tokenizer, system: system, user: text)
}
