import Foundation
import TillerFormats

// A tokenizer from GGUF metadata, built the way transformers builds one for
// `AutoTokenizer.from_pretrained(dir, gguf_file=...)` (integrations/gguf/gguf_tokenizer_mapping.py), so that
// ids match it exactly:
//  - `gpt2`: byte-level BPE with the file's merges; the GPT-2 split regex, or the Llama 3 / Qwen2 one when
//    `tokenizer.ggml.pre` names such a vocabulary. (SmolLM2's 'smollm' gets plain GPT-2 splitting there, where
//    the original tokenizer.json and llama.cpp also cut digits one by one.)
//  - `llama` with a Gemma architecture: SentencePiece-style BPE over "▁"-spelled text with byte fallback;
//    the file has no merges, so they are rebuilt from the vocabulary in file order, and tokens that are runs
//    of spaces are respelled as runs of "▁".
//  - `llama` otherwise: as transformers' LlamaTokenizer (Metaspace, byte fallback, merges from scores).
// Control tokens become special added tokens, user-defined ones plain added tokens.

private enum GGUFTokenType: Int { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

/// The tokenizer a GGUF file describes.
public func loadTokenizer(gguf: GGUFFile) throws -> Tokenizer {
    try loadBPETokenizer(gguf: gguf)
}

public func loadBPETokenizer(gguf: GGUFFile) throws -> BPETokenizer {
    let file = gguf.path
    let meta = gguf.metadata
    func fail(_ message: String) -> TokenizerError { TokenizerError("\(file): \(message)") }
    guard let kind = meta["tokenizer.ggml.model"]?.string else { throw fail("no tokenizer.ggml.model in the metadata") }
    guard let tokenValues = meta["tokenizer.ggml.tokens"]?.array else { throw fail("no tokenizer.ggml.tokens in the metadata") }
    var tokens = try tokenValues.enumerated().map { i, v -> String in
        guard let s = v.string else { throw fail("tokenizer.ggml.tokens[\(i)] is not a string") }
        return s
    }
    let types = (meta["tokenizer.ggml.token_type"]?.array ?? []).map { $0.int ?? 1 }
    guard types.isEmpty || types.count == tokens.count else {
        throw fail("tokenizer.ggml.token_type has \(types.count) entries for \(tokens.count) tokens")
    }
    let architecture = meta["general.architecture"]?.string ?? ""
    let pre = meta["tokenizer.ggml.pre"]?.string
    func id(_ key: String) -> Int? {
        guard let v = meta["tokenizer.ggml.\(key)"]?.int, v >= 0, v < tokens.count else { return nil }
        return v
    }
    var addBos = meta["tokenizer.ggml.add_bos_token"]?.bool
    let addEos = meta["tokenizer.ggml.add_eos_token"]?.bool ?? false
    let originalTokens = tokens

    let model: BPEModel
    var normalizer: Normalizer? = nil
    let preTokenizer: PreTokenizer?
    let decoder: Decoder
    let byteLevel: Bool
    switch kind {
    case "gpt2":
        byteLevel = true
        // Entries outside the byte alphabet (a raw space, say) are respelled through it.
        tokens = tokens.map { ByteAlphabet.bytes(of: $0) != nil ? $0 : String($0.utf8.map(ByteAlphabet.character(of:))) }
        guard let mergeValues = meta["tokenizer.ggml.merges"]?.array else { throw fail("a gpt2 vocabulary without tokenizer.ggml.merges") }
        let merges = try mergeValues.enumerated().map { i, v -> (String, String) in
            guard let s = v.string else { throw fail("tokenizer.ggml.merges[\(i)] is not a string") }
            let parts = s.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw fail("tokenizer.ggml.merges[\(i)] \(s.debugDescription) is not two tokens") }
            return (String(parts[0]), String(parts[1]))
        }
        model = try BPEModel(vocab: vocabulary(tokens), merges: merges, unkToken: nil, fuseUnk: false, byteFallback: false,
                             ignoreMerges: false, continuingSubwordPrefix: nil, endOfWordSuffix: nil, source: file)
        if let split = ggufSplitPatterns[pre ?? ""] {
            let pattern: SplitPattern
            if let known = KnownSplitPattern(pattern: split) { pattern = .known(known) } else {
                pattern = .regex(try NSRegularExpression(pattern: split))
            }
            preTokenizer = .sequence([.split(pattern, .isolated, invert: false), .byteLevel(addPrefixSpace: false, useRegex: false)])
        } else {
            preTokenizer = .byteLevel(addPrefixSpace: false, useRegex: true)
        }
        decoder = .byteLevel
    case "llama":
        byteLevel = false
        if addBos == nil { addBos = true }  // llama.cpp's default for SentencePiece vocabularies
        let isGemma = architecture.hasPrefix("gemma") && architecture != "gemma4"
        if isGemma {
            tokens = tokens.map { t in
                // (byte tests: String.contains(String) goes through Foundation and is slow over 262k tokens)
                t.utf8.contains(0x20) && t.unicodeScalars.allSatisfy(\.properties.isWhitespace)
                    ? String(repeating: "▁", count: t.unicodeScalars.count) : t
            }
        }
        let vocab = vocabulary(tokens)
        let merges: [(left: Int, right: Int, merged: Int)]
        if let mergeValues = meta["tokenizer.ggml.merges"]?.array {
            merges = try mergeValues.enumerated().map { i, v in
                guard let parts = v.string?.split(separator: " ", omittingEmptySubsequences: false), parts.count == 2,
                      let l = vocab[String(parts[0])], let r = vocab[String(parts[1])], let m = vocab[String(parts[0] + parts[1])] else {
                    throw fail("tokenizer.ggml.merges[\(i)] is not two vocabulary tokens that merge into a third")
                }
                return (l, r, m)
            }
        } else if isGemma {
            // Gemma's scores do not follow its merge order; the position in the file does.
            merges = mergesFromVocabulary(tokens: tokens, vocab: vocab, score: { Double(-$0) })
        } else {
            let scores = (meta["tokenizer.ggml.scores"]?.array ?? []).map { $0.double ?? 0 }
            guard scores.count == tokens.count else { throw fail("tokenizer.ggml.scores is missing or has the wrong length") }
            merges = mergesFromVocabulary(tokens: tokens, vocab: vocab, score: { scores[$0] })
        }
        if isGemma {
            let unk = id("unknown_token_id").map { tokens[$0] } ?? "<unk>"
            model = try BPEModel(vocab: vocab, mergeIds: merges, unkToken: unk, fuseUnk: true, byteFallback: true,
                                 ignoreMerges: false, continuingSubwordPrefix: nil, endOfWordSuffix: nil, source: file)
            normalizer = .replace(pattern: [0x20], content: "▁")
            preTokenizer = .split(.literal([0x20]), .mergedWithPrevious, invert: false)
            decoder = .sequence([.replace(pattern: [0x2581], content: " "), .byteFallback, .fuse])
        } else {
            model = try BPEModel(vocab: vocab, mergeIds: merges, unkToken: nil, fuseUnk: true, byteFallback: true,
                                 ignoreMerges: false, continuingSubwordPrefix: nil, endOfWordSuffix: nil, source: file)
            preTokenizer = .metaspace(replacement: 0x2581, prependScheme: .first, split: false)
            decoder = .sequence([.replace(pattern: [0x2581], content: " "), .byteFallback, .fuse,
                                 .strip(content: 0x20, start: 1, stop: 0)])
        }
    default:
        throw fail("tokenizer.ggml.model \(kind.debugDescription) is not supported (gpt2 and llama are)")
    }

    // Control tokens as special added tokens (in a byte-level vocabulary, only those spelled in its alphabet:
    // others are llama.cpp mislabels), user-defined ones as plain added tokens.
    var added: [AddedToken] = []
    var addedContents = Set<RawKey>()
    for (i, type) in types.enumerated() where type == GGUFTokenType.control.rawValue {
        let content = originalTokens[i]
        if byteLevel && ByteAlphabet.bytes(of: content) == nil { continue }
        guard addedContents.insert(RawKey(content)).inserted else { continue }
        added.append(AddedToken(content: content, id: model.tokenToId[content] ?? i, special: true))
    }
    for (i, type) in types.enumerated() where type == GGUFTokenType.userDefined.rawValue {
        let content = originalTokens[i]
        guard let tid = model.tokenToId[content], addedContents.insert(RawKey(content)).inserted else { continue }
        added.append(AddedToken(content: content, id: tid, special: false))
    }
    var special: [String: String] = [:]
    for (name, key) in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"),
                        ("pad_token", "padding_token_id")] {
        guard let i = id(key) else { continue }
        let content = originalTokens[i]
        special[name] = content
        if let index = added.firstIndex(where: { sameText($0.content, content) }) {
            added[index].special = true
        } else {
            added.append(AddedToken(content: content, id: model.tokenToId[content] ?? i, special: true))
            addedContents.insert(RawKey(content))
        }
    }

    var single: [[Int]?] = []
    if addBos == true, let b = id("bos_token_id") { single.append([b]) }
    single.append(nil)
    if addEos, let e = id("eos_token_id") { single.append([e]) }

    var eos: [Int] = []
    if let e = id("eos_token_id") { eos.append(e) }
    eos += endOfTurnIds(added)

    return try BPETokenizer(source: file, model: model, normalizer: normalizer, preTokenizer: preTokenizer,
                            postProcessor: .template(single: single), decoder: decoder, addedTokens: added,
                            specialTokens: special, eosTokenIds: uniqued(eos),
                            chatTemplate: meta["tokenizer.chat_template"]?.string)
}

/// token → id; a token listed twice keeps its last id, as a Python dict built from the list does.
private func vocabulary(_ tokens: [String]) -> Vocabulary {
    var vocab = Vocabulary(minimumCapacity: tokens.count)
    for (i, t) in tokens.enumerated() { vocab[t] = i }
    return vocab
}

/// Merges implied by a vocabulary (transformers' `generate_merges` with scores): every split of every token
/// into two vocabulary entries, ordered by the token's score (highest first), then by the longer left part.
func mergesFromVocabulary(tokens: [String], vocab: Vocabulary, score: (Int) -> Double) -> [(left: Int, right: Int, merged: Int)] {
    struct Candidate { var score: Double; var leftLength: Int32; var rightLength: Int32; var order: Int32; var left: Int32; var right: Int32; var merged: Int32 }
    var candidates: [Candidate] = []
    candidates.reserveCapacity(tokens.count * 2)
    var seen = Set<RawKey>()
    for token in tokens where seen.insert(RawKey(token)).inserted {
        guard let tokenId = vocab[token] else { continue }
        let scalars = Array(token.unicodeScalars)
        guard scalars.count > 1 else { continue }
        var local: [(Int, Int, Int, Int)] = []
        var left = String.UnicodeScalarView()
        for k in 1..<scalars.count {
            left.append(scalars[k - 1])
            let l = String(left)
            guard let lid = vocab[l] else { continue }
            let r = String(String.UnicodeScalarView(scalars[k...]))
            guard let rid = vocab[r] else { continue }
            local.append((lid, rid, k, scalars.count - k))
        }
        local.sort { ($0.0, $0.1) < ($1.0, $1.1) }
        let s = score(tokenId)
        for (lid, rid, leftLength, rightLength) in local {
            candidates.append(Candidate(score: s, leftLength: Int32(leftLength), rightLength: Int32(rightLength),
                                        order: Int32(candidates.count), left: Int32(lid), right: Int32(rid), merged: Int32(tokenId)))
        }
    }
    candidates.sort { a, b in
        if a.score != b.score { return a.score > b.score }
        if a.leftLength != b.leftLength { return a.leftLength > b.leftLength }
        if a.rightLength != b.rightLength { return a.rightLength > b.rightLength }
        return a.order < b.order
    }
    return candidates.map { (Int($0.left), Int($0.right), Int($0.merged)) }
}

/// `tokenizer.ggml.pre` values whose split regex transformers installs (the rest keep GPT-2's).
let ggufSplitPatterns: [String: String] = {
    var map: [String: String] = [:]
    for name in ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                 "jina-v5-nano", "dbrx", "smaug-bpe"] { map[name] = KnownSplitPattern.llama3Pattern }
    for name in ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"] { map[name] = KnownSplitPattern.qwen2Pattern }
    return map
}()
