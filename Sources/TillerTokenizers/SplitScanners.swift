// Hand-written scanners for the pre-tokenizer regexes of GPT-2, Llama 3 and Qwen2. Each returns the matches
// the regex finds scanning left to right, exactly as Oniguruma would (alternatives tried in order, greedy
// quantifiers with backtracking where the pattern needs it). Tests compare them with `tokenizers` on a corpus.

enum KnownSplitPattern: Sendable {
    /// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    case gpt2
    /// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    case llama3
    /// As llama3 with \p{N} (one digit per piece).
    case qwen2

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(pattern: String) {
        switch pattern {
        case Self.gpt2Pattern: self = .gpt2
        case Self.llama3Pattern: self = .llama3
        case Self.qwen2Pattern: self = .qwen2
        default: return nil
        }
    }

    /// Match ranges (in scalar indices) over `s`.
    func matches(_ s: [UInt32]) -> [Range<Int>] {
        switch self {
        case .gpt2: return scanGPT2(s)
        case .llama3: return scanLlama3(s, maxDigits: 3)
        case .qwen2: return scanLlama3(s, maxDigits: 1)
        }
    }
}

private let apostrophe: UInt32 = 0x27
private let space: UInt32 = 0x20
private let cr: UInt32 = 0x0D
private let lf: UInt32 = 0x0A

@inline(__always) private func cls(_ v: UInt32) -> CharClass { UnicodeClasses.of(v) }

/// Length of a contraction ('s 't 're 've 'm 'll 'd) starting at `i`, or 0.
@inline(__always)
private func contraction(_ s: [UInt32], _ i: Int, caseInsensitive: Bool) -> Int {
    guard s[i] == apostrophe, i + 1 < s.count else { return 0 }
    func lower(_ v: UInt32) -> UInt32 {
        guard caseInsensitive else { return v }
        if v >= 0x41 && v <= 0x5A { return v + 0x20 }
        if v == 0x17F { return 0x73 }  // ſ folds to s
        return v
    }
    let a = lower(s[i + 1])
    switch a {
    case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
    case 0x72, 0x76:  // r v: 're 've
        if i + 2 < s.count, lower(s[i + 2]) == 0x65 { return 3 }
    case 0x6C:  // l: 'll
        if i + 2 < s.count, lower(s[i + 2]) == 0x6C { return 3 }
    default: break
    }
    return 0
}

/// End of the whitespace alternatives `\s+(?!\S)|\s+` at `i` (s[i] is whitespace).
@inline(__always)
private func whitespaceEnd(_ s: [UInt32], _ i: Int) -> Int {
    var k = i + 1
    while k < s.count && cls(s[k]) == .whitespace { k += 1 }
    if k == s.count || k - i == 1 { return k }
    return k - 1  // leave the last space to prefix the next word
}

private func scanGPT2(_ s: [UInt32]) -> [Range<Int>] {
    var out: [Range<Int>] = []
    out.reserveCapacity(s.count / 4 + 1)
    let n = s.count
    var i = 0
    while i < n {
        let start = i
        let c = s[i]
        let contr = contraction(s, i, caseInsensitive: false)
        if contr > 0 {
            i += contr
        } else {
            let j = (c == space && i + 1 < n) ? i + 1 : i
            let cj = cls(s[j])
            if cj == .letter || cj == .number {
                i = j + 1
                while i < n && cls(s[i]) == cj { i += 1 }
            } else if cj == .other {
                i = j + 1
                while i < n && cls(s[i]) == .other { i += 1 }
            } else {
                // s[j] is whitespace, so s[i] is whitespace too
                i = whitespaceEnd(s, i)
            }
        }
        out.append(start..<i)
    }
    return out
}

private func scanLlama3(_ s: [UInt32], maxDigits: Int) -> [Range<Int>] {
    var out: [Range<Int>] = []
    out.reserveCapacity(s.count / 4 + 1)
    let n = s.count
    var i = 0
    while i < n {
        let start = i
        let c = s[i]
        let cc = cls(c)
        let contr = contraction(s, i, caseInsensitive: true)
        if contr > 0 {
            i += contr
        } else if cc == .letter {
            i += 1
            while i < n && cls(s[i]) == .letter { i += 1 }
        } else if cc != .number && c != cr && c != lf && i + 1 < n && cls(s[i + 1]) == .letter {
            // [^\r\n\p{L}\p{N}]?\p{L}+ with the optional character present
            i += 2
            while i < n && cls(s[i]) == .letter { i += 1 }
        } else if cc == .number {
            i += 1
            while i < n && i - start < maxDigits && cls(s[i]) == .number { i += 1 }
        } else if let end = punctuationRun(s, i) {
            i = end
        } else {
            // c is whitespace. \s*[\r\n]+ : up to the last \r or \n of the whitespace run, if it has one.
            var k = i
            var lastNewline = -1
            while k < n && cls(s[k]) == .whitespace {
                if s[k] == cr || s[k] == lf { lastNewline = k }
                k += 1
            }
            if lastNewline >= 0 {
                i = lastNewline + 1
            } else {
                i = whitespaceEnd(s, i)
            }
        }
        out.append(start..<i)
    }
    return out
}

/// ` ?[^\s\p{L}\p{N}]+[\r\n]*` at `i`, or nil.
@inline(__always)
private func punctuationRun(_ s: [UInt32], _ i: Int) -> Int? {
    let n = s.count
    let j = (s[i] == space && i + 1 < n) ? i + 1 : i
    guard cls(s[j]) == .other else { return nil }
    var k = j + 1
    while k < n && cls(s[k]) == .other { k += 1 }
    while k < n && (s[k] == cr || s[k] == lf) { k += 1 }
    return k
}
