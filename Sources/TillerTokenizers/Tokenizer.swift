import TillerFormats

public struct ChatMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Text ↔ token ids, exactly as the model's own tokenizer does it in transformers.
public protocol Tokenizer: AnyObject, Sendable {
    var vocabSize: Int { get }
    var bosTokenId: Int? { get }
    /// EOS and end-of-turn tokens: generation stops on any of them.
    var eosTokenIds: [Int] { get }
    /// `tokenizer(text).input_ids` when `addSpecialTokens` (BOS etc. as the tokenizer is configured).
    func encode(_ text: String, addSpecialTokens: Bool) -> [Int]
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String
    /// The vocabulary entry for an id, as stored (e.g. "Ġthe", "▁the", "<|im_end|>").
    func token(_ id: Int) -> String
    func isSpecial(_ id: Int) -> Bool
    /// The model's chat template, if it has one.
    var chatTemplate: String? { get }
}

extension Tokenizer {
    /// bos_token / eos_token (and unk_token, pad_token where known) as strings, for chat templates.
    public var specialTokenStrings: [String: String] {
        if let bpe = self as? BPETokenizer { return bpe.specialTokens }
        var out: [String: String] = [:]
        if let b = bosTokenId { out["bos_token"] = token(b) }
        if let e = eosTokenIds.first { out["eos_token"] = token(e) }
        return out
    }
}
