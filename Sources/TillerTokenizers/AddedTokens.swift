// Added tokens (special tokens and user-defined ones such as "<|im_start|>" or Gemma's "\n\n") are cut out of
// the text before anything else, leftmost-longest as HF `tokenizers` does with its Aho-Corasick matcher.

struct AddedToken: Sendable {
    var content: String
    var id: Int
    var special: Bool
    var lstrip = false
    var rstrip = false
    var singleWord = false
    /// Matched on normalized text (after the normalizer) rather than on the raw text.
    var normalized = false
}

/// A byte trie over the added tokens' contents.
struct AddedTokenMatcher: Sendable {
    private var children: [[UInt8: Int32]] = [[:]]
    private var terminal: [Int32] = [-1]  // index into `tokens`
    private var startsToken = [Bool](repeating: false, count: 256)
    let tokens: [AddedToken]

    init(tokens: [AddedToken], spelling: (AddedToken) -> String) {
        self.tokens = tokens
        for (index, token) in tokens.enumerated() {
            let bytes = Array(spelling(token).utf8)
            guard let first = bytes.first else { continue }
            startsToken[Int(first)] = true
            var node = 0
            for b in bytes {
                if let child = children[node][b] {
                    node = Int(child)
                } else {
                    children.append([:])
                    terminal.append(-1)
                    children[node][b] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            if terminal[node] < 0 { terminal[node] = Int32(index) }
        }
    }

    var isEmpty: Bool { tokens.isEmpty }

    /// Splits UTF-8 `text` into runs of plain text (token nil) and added tokens.
    func split(_ text: [UInt8]) -> [(range: Range<Int>, token: AddedToken?)] {
        var out: [(Range<Int>, AddedToken?)] = []
        var plainStart = 0
        var i = 0
        let n = text.count
        while i < n {
            guard startsToken[Int(text[i])] else { i += 1; continue }
            var node = 0
            var best: (end: Int, token: Int)? = nil
            var j = i
            while j < n, let child = children[node][text[j]] {
                node = Int(child)
                j += 1
                if terminal[node] >= 0 { best = (j, Int(terminal[node])) }
            }
            guard let match = best else { i += 1; continue }
            let token = tokens[match.token]
            var start = i
            var stop = match.end
            if token.singleWord {
                let before = start == 0 ? nil : lastScalar(text, before: start)
                let after = stop == n ? nil : firstScalar(text, from: stop)
                if before.map(isWordCharacter) == true || after.map(isWordCharacter) == true { i += 1; continue }
            }
            if token.lstrip {
                while start > plainStart, let s = lastScalar(text, before: start), s.properties.isWhitespace {
                    start -= String(s).utf8.count
                }
            }
            if token.rstrip {
                while stop < n, let s = firstScalar(text, from: stop), s.properties.isWhitespace {
                    stop += String(s).utf8.count
                }
            }
            if plainStart < start { out.append((plainStart..<start, nil)) }
            out.append((start..<stop, token))
            plainStart = stop
            i = stop
        }
        if plainStart < n { out.append((plainStart..<n, nil)) }
        return out
    }
}

private func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
    s == "_" || s.properties.isAlphabetic || s.properties.numericType != nil
}

private func firstScalar(_ text: [UInt8], from i: Int) -> Unicode.Scalar? {
    var it = text[i...].makeIterator()
    var decoder = UTF8()
    if case .scalarValue(let s) = decoder.decode(&it) { return s }
    return nil
}

private func lastScalar(_ text: [UInt8], before i: Int) -> Unicode.Scalar? {
    var start = i - 1
    while start > 0 && text[start] & 0xC0 == 0x80 { start -= 1 }
    return firstScalar(text, from: start)
}
