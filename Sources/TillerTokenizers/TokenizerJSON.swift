import Foundation

// Loading a Hugging Face tokenizer directory: tokenizer.json (the components), tokenizer_config.json
// (special tokens, add_bos_token/add_eos_token, chat template), chat_template.jinja, special_tokens_map.json.

/// Loads tokenizer.json and its companions from a model directory, as `AutoTokenizer.from_pretrained(dir)` does.
public func loadTokenizer(directory: String) throws -> Tokenizer {
    try loadBPETokenizer(directory: directory)
}

public func loadBPETokenizer(directory: String) throws -> BPETokenizer {
    let dir = URL(fileURLWithPath: directory)
    let tokenizerPath = dir.appendingPathComponent("tokenizer.json").path
    guard FileManager.default.fileExists(atPath: tokenizerPath) else {
        throw TokenizerError("\(directory): no tokenizer.json in this directory")
    }
    let json = try readJSONObject(tokenizerPath)
    let config = try readJSONObjectIfPresent(dir.appendingPathComponent("tokenizer_config.json").path) ?? [:]
    let specialMap = try readJSONObjectIfPresent(dir.appendingPathComponent("special_tokens_map.json").path) ?? [:]
    let generation = try readJSONObjectIfPresent(dir.appendingPathComponent("generation_config.json").path) ?? [:]

    let parser = ComponentParser(file: tokenizerPath)
    guard let modelJSON = json["model"] as? [String: Any] else { throw TokenizerError("\(tokenizerPath): no \"model\" object") }
    let model = try parser.model(modelJSON, exactVocab: try exactVocabulary(tokenizerPath))

    var added: [AddedToken] = []
    for entry in json["added_tokens"] as? [[String: Any]] ?? [] {
        guard let id = entry["id"] as? Int, let content = entry["content"] as? String else {
            throw TokenizerError("\(tokenizerPath): an added_tokens entry lacks an id or content")
        }
        guard id >= 0, id < BPEModel.idLimit(entries: model.idToToken.count + ((json["added_tokens"] as? [Any])?.count ?? 0)) else {
            throw TokenizerError("\(tokenizerPath): added token \(content.debugDescription) has id \(id), outside the vocabulary's range (0..<\(model.idToToken.count) plus the added tokens)")
        }
        added.append(AddedToken(content: content, id: id, special: entry["special"] as? Bool ?? false,
                                lstrip: entry["lstrip"] as? Bool ?? false, rstrip: entry["rstrip"] as? Bool ?? false,
                                singleWord: entry["single_word"] as? Bool ?? false,
                                normalized: entry["normalized"] as? Bool ?? !(entry["special"] as? Bool ?? false)))
    }

    // Special tokens named by the config (or special_tokens_map.json) become special added tokens, as in transformers.
    var special: [String: String] = [:]
    for name in ["bos_token", "eos_token", "unk_token", "pad_token"] {
        if let value = tokenString(config[name]) ?? tokenString(specialMap[name]) { special[name] = value }
    }
    var extra: [String] = []
    for key in ["additional_special_tokens", "extra_special_tokens"] {
        if let list = config[key] as? [Any] { extra += list.compactMap(tokenString) }
        if let dict = config[key] as? [String: Any] { extra += dict.values.compactMap(tokenString) }
    }
    var nextId = max(model.idToToken.count, (added.map(\.id).max() ?? -1) + 1)
    for content in Array(special.values).sorted() + extra where !added.contains(where: { sameText($0.content, content) }) {
        let id: Int
        if let existing = model.tokenToId[content] { id = existing } else { id = nextId; nextId += 1 }
        added.append(AddedToken(content: content, id: id, special: true))
    }

    let normalizer = try (json["normalizer"] as? [String: Any]).map(parser.normalizer)
    let preTokenizer = try (json["pre_tokenizer"] as? [String: Any]).map(parser.preTokenizer)
    var postProcessor = try (json["post_processor"] as? [String: Any]).map { try parser.postProcessor($0, added: added, model: model) }
    let decoder = try (json["decoder"] as? [String: Any]).map(parser.decoder)

    // transformers rebuilds the post-processor from bos/eos when the config sets add_bos_token/add_eos_token,
    // or when tokenizer.json has none.
    if config["add_bos_token"] != nil || config["add_eos_token"] != nil || postProcessor == nil {
        func idOf(_ s: String?) -> Int? {
            guard let s else { return nil }
            return added.first(where: { sameText($0.content, s) })?.id ?? model.tokenToId[s]
        }
        let addBos = (config["add_bos_token"] as? Bool ?? false) && idOf(special["bos_token"]) != nil
        let addEos = (config["add_eos_token"] as? Bool ?? false) && idOf(special["eos_token"]) != nil
        var single: [[Int]?] = []
        if addBos { single.append([idOf(special["bos_token"])!]) }
        single.append(nil)
        if addEos { single.append([idOf(special["eos_token"])!]) }
        postProcessor = .template(single: single)
    }

    var template: String? = nil
    let jinjaPath = dir.appendingPathComponent("chat_template.jinja").path
    if FileManager.default.fileExists(atPath: jinjaPath) {
        template = try String(contentsOfFile: jinjaPath, encoding: .utf8)
    } else if let t = config["chat_template"] as? String {
        template = t
    } else if let list = config["chat_template"] as? [[String: Any]] {
        template = (list.first(where: { $0["name"] as? String == "default" }) ?? list.first)?["template"] as? String
    }

    var eos: [Int] = []
    if let e = special["eos_token"], let id = added.first(where: { sameText($0.content, e) })?.id ?? model.tokenToId[e] { eos.append(id) }
    if let g = generation["eos_token_id"] as? Int { eos.append(g) }
    if let g = generation["eos_token_id"] as? [Int] { eos += g }
    eos += endOfTurnIds(added)

    return try BPETokenizer(source: directory, model: model, normalizer: normalizer, preTokenizer: preTokenizer,
                            postProcessor: postProcessor, decoder: decoder, addedTokens: added,
                            specialTokens: special, eosTokenIds: uniqued(eos), chatTemplate: template)
}

/// Special tokens that end a turn in the chat formats we know; generation stops on them as on EOS.
let endOfTurnTokens: Set<String> = ["<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>",
                                    "<|endoftext|>", "<|end_of_text|>", "<eos>", "</s>"]

func endOfTurnIds(_ added: [AddedToken]) -> [Int] {
    added.filter { $0.special && endOfTurnTokens.contains($0.content) }.map(\.id).sorted()
}

func uniqued(_ ids: [Int]) -> [Int] {
    var seen = Set<Int>()
    return ids.filter { seen.insert($0).inserted }
}

private func tokenString(_ value: Any?) -> String? {
    if let s = value as? String { return s }
    if let d = value as? [String: Any] { return d["content"] as? String }
    return nil
}

func readJSONObject(_ path: String) throws -> [String: Any] {
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw TokenizerError("\(path): cannot read (\(error.localizedDescription))")
    }
    let object: Any
    do { object = try JSONSerialization.jsonObject(with: data) } catch {
        throw TokenizerError("\(path): not valid JSON (\(error.localizedDescription))")
    }
    guard let dict = object as? [String: Any] else { throw TokenizerError("\(path): the top level is not a JSON object") }
    return dict
}

private func readJSONObjectIfPresent(_ path: String) throws -> [String: Any]? {
    FileManager.default.fileExists(atPath: path) ? try readJSONObject(path) : nil
}

/// Builds components from their tokenizer.json objects; errors name the file and the component.
struct ComponentParser {
    let file: String

    func fail(_ message: String) -> TokenizerError { TokenizerError("\(file): \(message)") }

    func model(_ j: [String: Any], exactVocab: Vocabulary?) throws -> BPEModel {
        let type = j["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw fail("model type \(type.debugDescription) is not supported (only BPE)") }
        guard let vocab = exactVocab else { throw fail("BPE model has no vocab object") }
        var merges: [(String, String)] = []
        for (i, m) in (j["merges"] as? [Any] ?? []).enumerated() {
            if let s = m as? String {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw fail("merge #\(i) \(s.debugDescription) is not two tokens") }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let pair = m as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else {
                throw fail("merge #\(i) is neither \"a b\" nor [a, b]")
            }
        }
        if let dropout = j["dropout"] as? Double, dropout > 0 { throw fail("BPE dropout is not supported") }
        return try BPEModel(vocab: vocab, merges: merges, unkToken: j["unk_token"] as? String,
                            fuseUnk: j["fuse_unk"] as? Bool ?? false, byteFallback: j["byte_fallback"] as? Bool ?? false,
                            ignoreMerges: j["ignore_merges"] as? Bool ?? false,
                            continuingSubwordPrefix: (j["continuing_subword_prefix"] as? String).flatMap { $0.isEmpty ? nil : $0 },
                            endOfWordSuffix: (j["end_of_word_suffix"] as? String).flatMap { $0.isEmpty ? nil : $0 },
                            source: file)
    }

    private func pattern(_ j: [String: Any], in component: String) throws -> SplitPattern {
        guard let p = j["pattern"] as? [String: Any] else { throw fail("\(component) has no pattern") }
        if let s = p["String"] as? String { return .literal(s.unicodeScalars.map(\.value)) }
        if let r = p["Regex"] as? String {
            if let known = KnownSplitPattern(pattern: r) { return .known(known) }
            do { return .regex(try NSRegularExpression(pattern: r)) } catch {
                throw fail("\(component) regex \(r.debugDescription) does not compile: \(error.localizedDescription)")
            }
        }
        throw fail("\(component) pattern is neither String nor Regex")
    }

    private func scalar(_ s: String?, _ what: String) throws -> UInt32 {
        guard let s, s.unicodeScalars.count == 1 else { throw fail("\(what) must be one character") }
        return s.unicodeScalars.first!.value
    }

    func normalizer(_ j: [String: Any]) throws -> Normalizer {
        switch j["type"] as? String {
        case "Replace":
            let content = j["content"] as? String ?? ""
            switch try pattern(j, in: "Replace normalizer") {
            case .literal(let p): return .replace(pattern: p, content: content)
            case .regex(let r): return .replaceRegex(r, content: content)
            case .known(let k):
                let source: String
                switch k {
                case .gpt2: source = KnownSplitPattern.gpt2Pattern
                case .llama3: source = KnownSplitPattern.llama3Pattern
                case .qwen2: source = KnownSplitPattern.qwen2Pattern
                }
                return .replaceRegex(try NSRegularExpression(pattern: source), content: content)
            case .characters: throw fail("Replace normalizer pattern is not supported")
            }
        case "Prepend": return .prepend(j["prepend"] as? String ?? "")
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Strip": return .strip(left: j["strip_left"] as? Bool ?? true, right: j["strip_right"] as? Bool ?? true)
        case "Sequence":
            return .sequence(try (j["normalizers"] as? [[String: Any]] ?? []).map(normalizer))
        case let other: throw fail("normalizer \(String(describing: other)) is not supported")
        }
    }

    func preTokenizer(_ j: [String: Any]) throws -> PreTokenizer {
        switch j["type"] as? String {
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: j["add_prefix_space"] as? Bool ?? true, useRegex: j["use_regex"] as? Bool ?? true)
        case "Split":
            guard let b = j["behavior"] as? String, let behavior = SplitBehavior(rawValue: b) else {
                throw fail("Split pre-tokenizer has an unknown behavior \(String(describing: j["behavior"]))")
            }
            return .split(try pattern(j, in: "Split pre-tokenizer"), behavior, invert: j["invert"] as? Bool ?? false)
        case "Metaspace":
            let replacement = try scalar(j["replacement"] as? String ?? "▁", "Metaspace replacement")
            var scheme = PrependScheme.always
            if let s = j["prepend_scheme"] as? String {
                guard let p = PrependScheme(rawValue: s) else { throw fail("Metaspace prepend_scheme \(s) is unknown") }
                scheme = p
            } else if let add = j["add_prefix_space"] as? Bool {
                scheme = add ? .always : .never
            }
            return .metaspace(replacement: replacement, prependScheme: scheme, split: j["split"] as? Bool ?? true)
        case "Digits":
            return .digits(individual: j["individual_digits"] as? Bool ?? false)
        case "Sequence":
            return .sequence(try (j["pretokenizers"] as? [[String: Any]] ?? []).map(preTokenizer))
        case let other: throw fail("pre-tokenizer \(String(describing: other)) is not supported")
        }
    }

    func postProcessor(_ j: [String: Any], added: [AddedToken], model: BPEModel) throws -> PostProcessor {
        switch j["type"] as? String {
        case "TemplateProcessing":
            let specials = j["special_tokens"] as? [String: [String: Any]] ?? [:]
            var single: [[Int]?] = []
            for item in j["single"] as? [[String: Any]] ?? [] {
                if let s = item["SpecialToken"] as? [String: Any], let name = s["id"] as? String {
                    guard let ids = specials[name]?["ids"] as? [Int] else {
                        throw fail("TemplateProcessing names special token \(name.debugDescription) but special_tokens has no ids for it")
                    }
                    single.append(ids)
                } else if item["Sequence"] != nil {
                    single.append(nil)
                } else {
                    throw fail("TemplateProcessing item \(item) is neither SpecialToken nor Sequence")
                }
            }
            return .template(single: single)
        case "ByteLevel":
            return .byteLevel
        case "RobertaProcessing", "BertProcessing":
            guard let cls = j["cls"] as? [Any], let sep = j["sep"] as? [Any], let clsId = cls.last as? Int,
                  let sepId = sep.last as? Int else { throw fail("\(j["type"]!) needs cls and sep") }
            return .template(single: [[clsId], nil, [sepId]])
        case "Sequence":
            return .sequence(try (j["processors"] as? [[String: Any]] ?? []).map { try postProcessor($0, added: added, model: model) })
        case let other: throw fail("post-processor \(String(describing: other)) is not supported")
        }
    }

    func decoder(_ j: [String: Any]) throws -> Decoder {
        switch j["type"] as? String {
        case "ByteLevel": return .byteLevel
        case "Replace":
            guard case .literal(let p) = try pattern(j, in: "Replace decoder") else { throw fail("Replace decoder with a regex is not supported") }
            return .replace(pattern: p, content: j["content"] as? String ?? "")
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            return .strip(content: try scalar(j["content"] as? String ?? " ", "Strip content"),
                          start: j["start"] as? Int ?? 0, stop: j["stop"] as? Int ?? 0)
        case "Metaspace":
            let replacement = try scalar(j["replacement"] as? String ?? "▁", "Metaspace replacement")
            var scheme = PrependScheme.always
            if let s = j["prepend_scheme"] as? String { scheme = PrependScheme(rawValue: s) ?? .always }
            else if let add = j["add_prefix_space"] as? Bool { scheme = add ? .always : .never }
            return .metaspace(replacement: replacement, prependScheme: scheme)
        case "Sequence":
            return .sequence(try (j["decoders"] as? [[String: Any]] ?? []).map(decoder))
        case let other: throw fail("decoder \(String(describing: other)) is not supported")
        }
    }
}

/// model.vocab of a tokenizer.json with its keys exactly as written (Foundation's JSON reader would merge
/// canonically equivalent keys such as ";" and "\u{37E}").
private func exactVocabulary(_ path: String) throws -> Vocabulary? {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
        throw TokenizerError("\(path): cannot read (\(error.localizedDescription))")
    }
    let root: JValue
    do { root = try parseJSONValue(text) } catch { throw TokenizerError("\(path): not valid JSON (\(error))") }
    guard case .dict(let top) = root, case .dict(let model)? = top["model"], case .dict(let vocab)? = model["vocab"] else { return nil }
    var out = Vocabulary(minimumCapacity: vocab.count)
    for (token, value) in vocab.pairs {
        guard case .int(let id) = value else { throw TokenizerError("\(path): vocab entry \(token.debugDescription) has no integer id") }
        out[token] = id
    }
    return out
}
