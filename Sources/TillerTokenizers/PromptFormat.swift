import Foundation

/// How a question (with optional earlier turns and a system prompt) becomes the tokens a model
/// answers after: the model's chat template when its tokenizer has one, else an explicit
/// base-model format:
///
///     {system}\n\n                     (when given)
///     Question: {user}\nAnswer: {assistant}\n\n   (earlier turns)
///     Question: {user}\nAnswer:
///
/// What a vector is evaluated on depends on this, so steering, teacher-forced evaluation and
/// priming all go through it. An answer continues the prompt: `answerTokens` encodes it the way it
/// follows the prompt (a leading space in the base format).
public enum PromptFormat {
    public struct Turn: Sendable, Equatable {
        public var user: String
        public var assistant: String
        public init(user: String, assistant: String) {
            self.user = user
            self.assistant = assistant
        }
    }

    /// Tokens of the conversation up to the start of the answer to `user`.
    public static func prompt(_ tokenizer: Tokenizer, system: String? = nil, turns: [Turn] = [], user: String) throws -> [Int] {
        if tokenizer.chatTemplate != nil {
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            for t in turns {
                messages.append(ChatMessage(role: "user", content: t.user))
                messages.append(ChatMessage(role: "assistant", content: t.assistant))
            }
            messages.append(ChatMessage(role: "user", content: user))
            let text = try renderChat(tokenizer, messages: messages, addGenerationPrompt: true)
            return tokenizer.encode(text, addSpecialTokens: false)
        }
        var text = system.map { $0 + "\n\n" } ?? ""
        for t in turns { text += "Question: \(t.user)\nAnswer: \(t.assistant)\n\n" }
        text += "Question: \(user)\nAnswer:"
        return tokenizer.encode(text, addSpecialTokens: true)
    }

    /// The tokens of an answer as they follow `prompt`.
    public static func answerTokens(_ tokenizer: Tokenizer, _ answer: String) -> [Int] {
        tokenizer.encode(tokenizer.chatTemplate != nil ? answer : " " + answer, addSpecialTokens: false)
    }
}
