import Foundation

/// A BPE tokenizer assembled from tokenizer.json components (or from GGUF metadata converted the way
/// transformers converts it): added tokens → normalizer → pre-tokenizer → BPE model → post-processor,
/// and the decoder back.
public final class BPETokenizer: Tokenizer, @unchecked Sendable {
    public let vocabSize: Int
    public let bosTokenId: Int?
    public let eosTokenIds: [Int]
    public let chatTemplate: String?
    /// bos_token, eos_token, unk_token, pad_token as strings: the names a chat template sees.
    public let specialTokens: [String: String]
    /// Where the tokenizer came from, for messages.
    public let source: String

    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor?
    let decoder: Decoder?
    private let addedById: [Int: AddedToken]
    private let rawMatcher: AddedTokenMatcher
    private let normalizedMatcher: AddedTokenMatcher

    init(source: String, model: BPEModel, normalizer: Normalizer?, preTokenizer: PreTokenizer?,
         postProcessor: PostProcessor?, decoder: Decoder?, addedTokens: [AddedToken],
         specialTokens: [String: String], eosTokenIds: [Int], chatTemplate: String?) throws {
        self.source = source
        self.model = model
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.postProcessor = postProcessor
        self.decoder = decoder
        self.specialTokens = specialTokens
        self.chatTemplate = chatTemplate
        if let pre = preTokenizer, pre.containsByteLevel {
            guard pre.endsWithByteLevel else {
                throw TokenizerError("\(source): a ByteLevel pre-tokenizer followed by others is not supported")
            }
            model.enableByteLevel()
        }
        var byId = [Int: AddedToken]()
        for t in addedTokens { byId[t.id] = t }
        addedById = byId
        rawMatcher = AddedTokenMatcher(tokens: addedTokens.filter { !$0.normalized }, spelling: { $0.content })
        normalizedMatcher = AddedTokenMatcher(tokens: addedTokens.filter { $0.normalized },
                                              spelling: { normalizer?.apply($0.content) ?? $0.content })
        vocabSize = max(model.idToToken.count, (addedTokens.map(\.id).max() ?? -1) + 1)
        bosTokenId = specialTokens["bos_token"].flatMap { bos in
            addedTokens.first(where: { sameText($0.content, bos) })?.id ?? model.tokenToId[bos]
        }
        self.eosTokenIds = eosTokenIds
    }

    public func tokenId(_ token: String) -> Int? {
        if let t = addedById.values.first(where: { sameText($0.content, token) }) { return t.id }
        return model.tokenToId[token]
    }

    public func token(_ id: Int) -> String {
        if let t = addedById[id] { return t.content }
        return id >= 0 && id < model.idToToken.count ? model.idToToken[id] : ""
    }

    public func isSpecial(_ id: Int) -> Bool { addedById[id]?.special ?? false }

    // MARK: encode

    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        let bytes = Array(text.utf8)
        for (range, token) in rawMatcher.split(bytes) {
            if let token { ids.append(token.id); continue }
            let segment = String(decoding: bytes[range], as: UTF8.self)
            let normalized = normalizer?.apply(segment) ?? segment
            if normalizedMatcher.isEmpty {
                encodePlain(normalized, atStart: range.lowerBound == 0, into: &ids)
            } else {
                let nbytes = Array(normalized.utf8)
                for (r, t) in normalizedMatcher.split(nbytes) {
                    if let t { ids.append(t.id); continue }
                    encodePlain(String(decoding: nbytes[r], as: UTF8.self),
                                atStart: range.lowerBound == 0 && r.lowerBound == 0, into: &ids)
                }
            }
        }
        if addSpecialTokens, let postProcessor { ids = postProcessor.apply(ids) }
        return ids
    }

    /// The pieces the pre-tokenizer cuts normalized text into (as the model reads them, before byte mapping).
    func preTokenize(_ text: String) -> [String] {
        let piece = Piece(scalars: text.unicodeScalars.map(\.value), atStart: true)
        let pieces = preTokenizer?.apply([piece]) ?? [piece]
        return pieces.map { String(String.UnicodeScalarView($0.scalars.compactMap(Unicode.Scalar.init))) }
    }

    private func encodePlain(_ text: String, atStart: Bool, into ids: inout [Int]) {
        if text.isEmpty { return }
        let piece = Piece(scalars: text.unicodeScalars.map(\.value), atStart: atStart)
        let pieces = preTokenizer?.apply([piece]) ?? [piece]
        var utf8: [UInt8] = []
        for p in pieces {
            utf8.removeAll(keepingCapacity: true)
            appendUTF8(p.scalars, to: &utf8)
            model.tokenize(utf8, into: &ids)
        }
    }

    // MARK: decode

    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if let added = addedById[id] {
                if skipSpecialTokens && added.special { continue }
                tokens.append(added.content)
            } else if id >= 0 && id < model.idToToken.count {
                tokens.append(model.idToToken[id])
            }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeChain(tokens).joined()
    }
}

@inline(__always)
func appendUTF8(_ scalars: [UInt32], to out: inout [UInt8]) {
    for v in scalars {
        if v < 0x80 {
            out.append(UInt8(v))
        } else if v < 0x800 {
            out.append(UInt8(0xC0 | (v >> 6)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        } else if v < 0x10000 {
            out.append(UInt8(0xE0 | (v >> 12)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        } else {
            out.append(UInt8(0xF0 | (v >> 18)))
            out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        }
    }
}

/// Token-by-token decoding for generation: each `push` returns the text that became complete, holding back
/// an incomplete UTF-8 sequence (a byte-fallback or byte-level token cut mid-character) until it completes.
/// Like `tokenizers`' DecodeStream it re-decodes a short window of tokens so decoders that look at
/// neighbouring tokens (Metaspace, Strip) give the same text as decoding everything at once.
public final class StreamingDecoder {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    private var ids: [Int] = []
    private var prefix = ""
    private var prefixIndex = 0

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Newly completed text after adding `id` ("" while a character is still incomplete).
    public func push(_ id: Int) -> String {
        ids.append(id)
        let text = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        guard text.utf8.count > prefix.utf8.count, !text.hasSuffix("\u{FFFD}"),
              text.utf8.starts(with: prefix.utf8) else { return "" }
        let newText = String(decoding: text.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
        let newPrefixIndex = ids.count - prefixIndex
        ids.removeFirst(prefixIndex)
        prefix = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        prefixIndex = newPrefixIndex
        return newText
    }

    /// Whatever is still held back (an incomplete character comes out as U+FFFD, as a full decode gives it).
    public func finish() -> String {
        let text = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        defer { ids.removeAll(); prefix = ""; prefixIndex = 0 }
        guard text.utf8.count > prefix.utf8.count, text.utf8.starts(with: prefix.utf8) else { return "" }
        return String(decoding: text.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
    }
}
