import Foundation

// The tokenizer.json components (normalizers, pre-tokenizers, post-processors, decoders) that GPT-2,
// Llama 2/3, Qwen2 and Gemma 2/3 use, each behaving as its namesake in HF `tokenizers`.

// MARK: - Normalizers

indirect enum Normalizer: Sendable {
    case replace(pattern: [UInt32], content: String)
    case replaceRegex(NSRegularExpression, content: String)
    case prepend(String)
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])

    func apply(_ text: String) -> String {
        switch self {
        case .replace(let pattern, let content):
            return replaceScalars(text, pattern, content)
        case .replaceRegex(let regex, let content):
            let range = NSRange(text.startIndex..., in: text)
            return regex.stringByReplacingMatches(in: text, range: range,
                                                  withTemplate: NSRegularExpression.escapedTemplate(for: content))
        case .prepend(let prefix):
            return text.isEmpty ? text : prefix + text
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase: return text.lowercased()
        case .strip(let left, let right):
            var scalars = Substring(text).unicodeScalars[...]
            if left { while let f = scalars.first, f.properties.isWhitespace { scalars.removeFirst() } }
            if right { while let l = scalars.last, l.properties.isWhitespace { scalars.removeLast() } }
            return String(String.UnicodeScalarView(scalars))
        case .sequence(let steps):
            return steps.reduce(text) { $1.apply($0) }
        }
    }
}

/// Replaces every non-overlapping occurrence of `pattern` (compared scalar by scalar, never by grapheme).
func replaceScalars(_ text: String, _ pattern: [UInt32], _ content: String) -> String {
    guard !pattern.isEmpty else { return text }
    let scalars = Array(text.unicodeScalars)
    var out = String.UnicodeScalarView()
    let contentScalars = Array(content.unicodeScalars)
    var i = 0
    while i < scalars.count {
        if scalars[i].value == pattern[0] && i + pattern.count <= scalars.count {
            var same = true
            for k in 1..<pattern.count where scalars[i + k].value != pattern[k] { same = false; break }
            if same {
                out.append(contentsOf: contentScalars)
                i += pattern.count
                continue
            }
        }
        out.append(scalars[i])
        i += 1
    }
    return String(out)
}

// MARK: - Pre-tokenizers

/// A piece of text on its way through the pre-tokenizers, as Unicode scalar values.
struct Piece {
    var scalars: [UInt32]
    /// Whether the piece begins at offset 0 of the original text (Metaspace's `prepend_scheme: first`).
    var atStart: Bool
}

enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
}

enum SplitPattern: @unchecked Sendable {
    case known(KnownSplitPattern)
    case literal([UInt32])
    /// A regex without a hand-written scanner: ICU's engine stands in for Oniguruma, so rare constructs may differ.
    case regex(NSRegularExpression)
    /// A predicate on single characters (Digits, Metaspace split).
    case characters(@Sendable (UInt32) -> Bool)

    func matches(_ s: [UInt32]) -> [Range<Int>] {
        switch self {
        case .known(let scanner):
            return scanner.matches(s)
        case .literal(let p):
            guard !p.isEmpty, p.count <= s.count else { return [] }
            var out: [Range<Int>] = []
            var i = 0
            while i + p.count <= s.count {
                if s[i] == p[0] && (1..<p.count).allSatisfy({ s[i + $0] == p[$0] }) {
                    out.append(i..<(i + p.count))
                    i += p.count
                } else {
                    i += 1
                }
            }
            return out
        case .characters(let predicate):
            var out: [Range<Int>] = []
            for (i, v) in s.enumerated() where predicate(v) { out.append(i..<(i + 1)) }
            return out
        case .regex(let regex):
            let text = String(String.UnicodeScalarView(s.compactMap(Unicode.Scalar.init)))
            let utf16Offsets: [Int] = {
                var offsets = [Int](); offsets.reserveCapacity(s.count + 1)
                var o = 0
                for v in s { offsets.append(o); o += v > 0xFFFF ? 2 : 1 }
                offsets.append(o)
                return offsets
            }()
            var scalarIndexOfUTF16 = [Int: Int]()
            for (i, o) in utf16Offsets.enumerated() { scalarIndexOfUTF16[o] = i }
            return regex.matches(in: text, range: NSRange(location: 0, length: utf16Offsets.last!)).compactMap { m in
                guard m.range.length > 0, let a = scalarIndexOfUTF16[m.range.location],
                      let b = scalarIndexOfUTF16[m.range.location + m.range.length] else { return nil }
                return a..<b
            }
        }
    }
}

/// Cuts `s` into pieces: matches and the gaps between them, combined as `behavior` says.
func splitPiece(_ piece: Piece, pattern: SplitPattern, behavior: SplitBehavior, invert: Bool) -> [Piece] {
    let s = piece.scalars
    if s.isEmpty { return [] }
    var spans: [(Range<Int>, Bool)] = []
    var last = 0
    for m in pattern.matches(s) {
        if m.lowerBound > last { spans.append((last..<m.lowerBound, false)) }
        spans.append((m, true))
        last = m.upperBound
    }
    if last < s.count { spans.append((last..<s.count, false)) }
    if invert { spans = spans.map { ($0.0, !$0.1) } }

    var ranges: [Range<Int>] = []
    switch behavior {
    case .removed:
        ranges = spans.filter { !$0.1 }.map { $0.0 }
    case .isolated:
        ranges = spans.map { $0.0 }
    case .mergedWithPrevious:
        var previousMatch = false
        for (r, isMatch) in spans {
            if isMatch && !previousMatch, let lastRange = ranges.last {
                ranges[ranges.count - 1] = lastRange.lowerBound..<r.upperBound
            } else {
                ranges.append(r)
            }
            previousMatch = isMatch
        }
    case .mergedWithNext:
        var previousMatch = false
        var reversed: [Range<Int>] = []
        for (r, isMatch) in spans.reversed() {
            if isMatch && !previousMatch, let lastRange = reversed.last {
                reversed[reversed.count - 1] = r.lowerBound..<lastRange.upperBound
            } else {
                reversed.append(r)
            }
            previousMatch = isMatch
        }
        ranges = reversed.reversed()
    case .contiguous:
        var previousMatch = false
        for (i, (r, isMatch)) in spans.enumerated() {
            if i > 0 && isMatch == previousMatch, let lastRange = ranges.last {
                ranges[ranges.count - 1] = lastRange.lowerBound..<r.upperBound
            } else {
                ranges.append(r)
            }
            previousMatch = isMatch
        }
    }
    return ranges.filter { !$0.isEmpty }.map {
        Piece(scalars: Array(s[$0]), atStart: piece.atStart && $0.lowerBound == 0)
    }
}

enum PrependScheme: String, Sendable { case always, first, never }

indirect enum PreTokenizer: Sendable {
    /// Only as the last step: the model then reads each piece as bytes spelled in the GPT-2 byte alphabet.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(SplitPattern, SplitBehavior, invert: Bool)
    case metaspace(replacement: UInt32, prependScheme: PrependScheme, split: Bool)
    case digits(individual: Bool)
    case sequence([PreTokenizer])

    func apply(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case .byteLevel(let addPrefixSpace, let useRegex):
            return pieces.flatMap { piece -> [Piece] in
                var p = piece
                if addPrefixSpace && p.scalars.first != 0x20 { p.scalars.insert(0x20, at: 0) }
                return useRegex ? splitPiece(p, pattern: .known(.gpt2), behavior: .isolated, invert: false) : [p]
            }
        case .split(let pattern, let behavior, let invert):
            return pieces.flatMap { splitPiece($0, pattern: pattern, behavior: behavior, invert: invert) }
        case .metaspace(let replacement, let scheme, let split):
            return pieces.flatMap { piece -> [Piece] in
                var p = piece
                p.scalars = p.scalars.map { $0 == 0x20 ? replacement : $0 }
                let startsWithReplacement = p.scalars.first == replacement
                switch scheme {
                case .always where !startsWithReplacement: p.scalars.insert(replacement, at: 0)
                case .first where !startsWithReplacement && p.atStart: p.scalars.insert(replacement, at: 0)
                default: break
                }
                guard split else { return [p] }
                return splitPiece(p, pattern: .characters { $0 == replacement }, behavior: .mergedWithNext, invert: false)
            }
        case .digits(let individual):
            return pieces.flatMap {
                splitPiece($0, pattern: .characters { UnicodeClasses.of($0) == .number },
                           behavior: individual ? .isolated : .contiguous, invert: false)
            }
        case .sequence(let steps):
            return steps.reduce(pieces) { $1.apply($0) }
        }
    }

    var endsWithByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case .sequence(let steps): return steps.last?.endsWithByteLevel ?? false
        default: return false
        }
    }

    var containsByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case .sequence(let steps): return steps.contains { $0.containsByteLevel }
        default: return false
        }
    }
}

// MARK: - Post-processors

indirect enum PostProcessor: Sendable {
    /// `single` as a list of pieces: a special token's ids, or the sequence itself (nil).
    case template(single: [[Int]?])
    case byteLevel
    case sequence([PostProcessor])

    func apply(_ ids: [Int]) -> [Int] {
        switch self {
        case .template(let single):
            var out: [Int] = []
            out.reserveCapacity(ids.count + single.count)
            for piece in single {
                if let special = piece { out.append(contentsOf: special) } else { out.append(contentsOf: ids) }
            }
            return out
        case .byteLevel:
            return ids
        case .sequence(let steps):
            return steps.reduce(ids) { $1.apply($0) }
        }
    }
}

// MARK: - Decoders

indirect enum Decoder: Sendable {
    case byteLevel
    case replace(pattern: [UInt32], content: String)
    case byteFallback
    case fuse
    case strip(content: UInt32, start: Int, stop: Int)
    case metaspace(replacement: UInt32, prependScheme: PrependScheme)
    case sequence([Decoder])

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                if let b = ByteAlphabet.bytes(of: token) { bytes.append(contentsOf: b) } else { bytes.append(contentsOf: token.utf8) }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let pattern, let content):
            return tokens.map { replaceScalars($0, pattern, content) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    out.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for token in tokens {
                if let b = byteFallbackValue(token) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(token)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                var scalars = Array(token.unicodeScalars)
                var cutStart = 0
                while cutStart < min(start, scalars.count) && scalars[cutStart].value == content { cutStart += 1 }
                var cutStop = scalars.count
                var removed = 0
                while removed < stop && cutStop > cutStart && scalars[cutStop - 1].value == content { cutStop -= 1; removed += 1 }
                scalars = Array(scalars[cutStart..<cutStop])
                return String(String.UnicodeScalarView(scalars))
            }
        case .metaspace(let replacement, let scheme):
            return tokens.enumerated().map { i, token in
                var out = String.UnicodeScalarView()
                for s in token.unicodeScalars {
                    if s.value == replacement {
                        if i == 0 && scheme != .never { continue }
                        out.append(" ")
                    } else {
                        out.append(s)
                    }
                }
                return String(out)
            }
        case .sequence(let steps):
            return steps.reduce(tokens) { $1.decodeChain($0) }
        }
    }
}

/// The byte of a `<0xXX>` token.
func byteFallbackValue(_ token: String) -> UInt8? {
    let u = Array(token.utf8)
    guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
    return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
}
