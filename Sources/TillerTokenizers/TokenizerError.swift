import Foundation

/// A tokenizer file that cannot be used, or a chat that cannot be rendered. The message names the file (or
/// template) and what is wrong with it.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Thrown by `renderChat` for a model whose tokenizer carries no chat template (a base model).
public struct NoChatTemplateError: Error, CustomStringConvertible, Sendable {
    public let description = "model has no chat template (base model): use plain text"
    public init() {}
}
