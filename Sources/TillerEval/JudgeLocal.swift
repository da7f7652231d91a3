import Foundation
import TillerAsync
import TillerModels
import TillerTokenizers

/// A judge run by Tiller's engine. It scores exactly: for every answer string "0" … "100" the
/// probability that the judge's reply is that string, i.e. its tokens (however the tokenizer
/// splits them) followed by the token that ends the reply — the end-of-turn token of the chat
/// template, or a newline in the plain-text format of models without a template. The prompt's
/// keys/values are computed once and read in place by all 101 candidates. Requiring the end token keeps
/// the candidates disjoint ("1" alone vs "1" as the start of "15"), so their probabilities add
/// up to the mass on integer replies.
public final class LocalJudge: Judge, @unchecked Sendable {
    public let backend = "local"
    public let model: String
    public let languageModel: LanguageModel
    let tokenizer: Tokenizer
    /// Token ids of each answer 0…100 including its end token, as they follow the judge prompt.
    public let candidates: [[Int]]
    /// Whether prompts go through the chat template (else the plain-text format).
    public let usesChatTemplate: Bool
    /// The engine is synchronous and CPU-bound: calls run one at a time, off the async pool.
    private let queue = DispatchQueue(label: "tiller.judge.local")

    /// Plain-text format for models without a chat template: the prompt, then this, then the answer
    /// on its own line.
    public static let plainSuffix = "\n\nAnswer:\n"

    public init(model lm: LanguageModel, name: String? = nil) throws {
        guard let tok = lm.tokenizer else { throw JudgeError.configuration("judge model \(lm.name) has no tokenizer") }
        languageModel = lm
        tokenizer = tok
        model = name ?? lm.name
        usesChatTemplate = tok.chatTemplate != nil
        candidates = try Self.answerTokens(tok, chat: usesChatTemplate)
    }

    /// The judge prompt's token ids: chat-templated user message with the generation prompt, or
    /// the plain-text format.
    public func promptTokens(_ prompt: String) throws -> [Int] {
        try Self.promptTokens(tokenizer, prompt, chat: usesChatTemplate)
    }

    static func promptText(_ tok: Tokenizer, _ prompt: String, chat: Bool) throws -> String {
        if chat { return try renderChat(tok, messages: [ChatMessage(role: "user", content: prompt)], addGenerationPrompt: true) }
        return prompt + plainSuffix
    }
    static func promptTokens(_ tok: Tokenizer, _ prompt: String, chat: Bool) throws -> [Int] {
        let text = try promptText(tok, prompt, chat: chat)
        // A rendered template carries its own special tokens; plain text gets the tokenizer's (BOS).
        return tok.encode(text, addSpecialTokens: !chat)
    }

    /// For each answer 0…100: the tokens that follow the prompt when the reply is exactly that
    /// answer, up to and including the first token that is not part of the number (the end token).
    static func answerTokens(_ tok: Tokenizer, chat: Bool) throws -> [[Int]] {
        // The context before the reply ends the same way for every prompt (the generation prompt,
        // or the plain suffix), so a placeholder question gives the same split.
        let probe = "Rate this."
        let prefixText = try promptText(tok, probe, chat: chat)
        let prefix = tok.encode(prefixText, addSpecialTokens: !chat)
        return try (0...100).map { n -> [Int] in
            let full: String
            if chat {
                full = try renderChat(tok, messages: [ChatMessage(role: "user", content: probe),
                                                      ChatMessage(role: "assistant", content: String(n))],
                                      addGenerationPrompt: false)
            } else {
                full = prefixText + String(n) + "\n"
            }
            guard full.hasPrefix(prefixText) else {
                throw JudgeError.configuration("chat template of the judge model renders an assistant reply that does not extend the generation prompt; cannot score answers")
            }
            let ids = tok.encode(full, addSpecialTokens: !chat)
            guard ids.count > prefix.count, Array(ids[..<prefix.count]) == prefix else {
                throw JudgeError.configuration("the judge model's tokenizer merges the answer \(n) with the prompt's last tokens; cannot score answers separately")
            }
            let rest = Array(ids[prefix.count...])
            // Keep the number's tokens and the first token after them (the end of the reply).
            var out: [Int] = []
            var text = ""
            for t in rest {
                out.append(t)
                let next = text + tok.decode([t], skipSpecialTokens: false)
                if next.count > String(n).count || !String(n).hasPrefix(next) { break }
                text = next
            }
            guard tok.decode(Array(out.dropLast()), skipSpecialTokens: false) == String(n), out.count >= 2 else {
                throw JudgeError.configuration("the judge model's tokenizer does not spell the answer \(n) as separate tokens before the end of the reply")
            }
            return out
        }
    }

    /// Heads computed so far, most recently used last (touched only on `queue`, or by a caller of
    /// `answerLogProbs` that owns the judge).
    private var heads: [PromptHead] = []
    /// At most this many heads are kept (a template per judged trait, plus coherence and relevance).
    static let maxHeads = 8
    /// Heads shorter than this are not worth a copy of their keys/values.
    static let minHeadTokens = 8

    /// The head's tokens for `prompt`, whose first `headCharacters` characters are shared by many
    /// prompts: the longest common prefix of the whole prompt's tokens and the head text's own
    /// tokens, so a merge across the boundary only shortens it. A function of the prompt alone.
    public func headTokens(_ prompt: String, headCharacters: Int, ids: [Int]) throws -> [Int] {
        guard headCharacters > 0 else { return [] }
        let rendered = try Self.promptText(tokenizer, prompt, chat: usesChatTemplate)
        guard let start = rendered.range(of: prompt)?.lowerBound,
              let end = rendered.index(start, offsetBy: headCharacters, limitedBy: rendered.endIndex) else { return [] }
        let own = tokenizer.encode(String(rendered[..<end]), addSpecialTokens: !usesChatTemplate)
        var n = 0
        while n < own.count && n < ids.count - 1 && own[n] == ids[n] { n += 1 }
        return n >= Self.minHeadTokens ? Array(ids[..<n]) : []
    }

    private func head(_ tokens: [Int]) throws -> PromptHead? {
        guard !tokens.isEmpty else { return nil }
        if let i = heads.firstIndex(where: { $0.tokens == tokens }) {
            let h = heads.remove(at: i)
            heads.append(h)
            return h
        }
        let h = try languageModel.promptHead(tokens)
        heads.append(h)
        if heads.count > Self.maxHeads { heads.removeFirst() }
        return h
    }

    /// Log-probability of each answer 0…100 (natural log). With `headCharacters`, the prompt's
    /// head is computed once for all prompts that share it (see `Judge.judge(_: JudgePrompt)`).
    public func answerLogProbs(_ prompt: String, headCharacters: Int = 0) throws -> [Double] {
        let ids = try promptTokens(prompt)
        do {
            let h = try head(headTokens(prompt, headCharacters: headCharacters, ids: ids))
            return try languageModel.teacherForced(TeacherForcedRequest(
                groups: [.init(prompt: ids, continuations: candidates)], reuse: .prefixTrie(head: h), reduction: .sum))[0].map { $0[0] }
        } catch let e as JudgeError {
            throw e
        } catch {
            throw JudgeError.model(String(describing: error))
        }
    }

    public func judge(_ prompt: String) async throws -> JudgeAnswer { try await judge(JudgePrompt(text: prompt)) }

    public func scoring() async throws -> JudgeScoring? { .teacherForced }

    public func judge(_ prompt: JudgePrompt) async throws -> JudgeAnswer {
        // The forward pass is synchronous and CPU-bound: it runs on the judge's own queue.
        try await AsyncBridge.offload(on: queue) {
            let lps = try self.answerLogProbs(prompt.text, headCharacters: prompt.head)
            var d: [Int: Double] = [:]
            for (i, lp) in lps.enumerated() { d[i] = Foundation.exp(lp) }
            return JudgeAnswer(distribution: d)
        }
    }
}
