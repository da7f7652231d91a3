import Foundation

/// The model's chat template rendered for `messages`, as transformers' `apply_chat_template(..., tokenize=False)`
/// renders it. `encode(rendered, addSpecialTokens: false)` then gives `apply_chat_template(..., tokenize=True)`,
/// which tokenizes without adding special tokens (the template writes BOS itself where the model wants it).
/// Throws `NoChatTemplateError` for a model without a template (a base model): use plain text then.
public func renderChat(_ tokenizer: Tokenizer, messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
    guard let source = tokenizer.chatTemplate else { throw NoChatTemplateError() }
    let template = try ChatTemplateCache.shared.template(source)
    var context: [String: JValue] = [:]
    // transformers passes the special tokens map (bos_token, eos_token, ...) and tools/documents as None.
    for (name, value) in tokenizer.specialTokenStrings { context[name] = .string(value) }
    context["messages"] = .list(messages.map { jinjaValue($0) })
    context["add_generation_prompt"] = .bool(addGenerationPrompt)
    context["tools"] = JValue.none
    context["documents"] = JValue.none
    return try template.render(values: context)
}

/// Templates parsed once per distinct source.
final class ChatTemplateCache: @unchecked Sendable {
    static let shared = ChatTemplateCache()
    private let lock = NSLock()
    private var templates: [String: JinjaTemplate] = [:]

    func template(_ source: String) throws -> JinjaTemplate {
        lock.lock(); defer { lock.unlock() }
        if let t = templates[source] { return t }
        let t = try JinjaTemplate(source)
        templates[source] = t
        return t
    }
}
