import Foundation

// Byte-pair encoding as HF `tokenizers` does it (models/bpe): a word starts as one symbol per character
// (or per byte, for byte-level vocabularies), then the adjacent pair with the lowest merge rank is merged,
// leftmost first, until no pair has a merge. A priority queue over a linked list of symbols keeps long
// words (SentencePiece-style text without pre-tokenization is one long word) at O(n log n).

final class BPEModel: @unchecked Sendable {
    /// id → vocabulary entry, as spelled in the vocabulary ("Ġthe", "▁the", "<0x0A>").
    let idToToken: [String]
    let tokenToId: Vocabulary
    /// (left id << 32 | right id) → (rank << 32 | merged id)
    private let merges: MergeTable
    let unkId: Int?
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?
    /// Byte-level vocabularies: the id of the one-character token for each byte.
    private var byteLevelIds: [Int32] = []
    /// `<0xXX>` tokens, for byte fallback.
    private var byteFallbackIds: [Int32] = []
    /// Single-scalar tokens, the usual first symbols of a non-byte-level word.
    private var scalarIds: [UInt32: Int32] = [:]
    /// The same for the BMP, as a flat table (-1: none).
    private var bmpIds = [Int32](repeating: -1, count: 0x10000)

    private let cacheLock = NSLock()
    private var cache: [[UInt8]: [Int32]] = [:]
    private static let cacheCapacity = 100_000
    /// Words this long (in bytes) are not cached, as in `tokenizers`.
    private static let maxCachedLength = 256

    /// Merges as token pairs, in rank order (a tokenizer.json `merges` list).
    convenience init(vocab: Vocabulary, merges: [(String, String)], unkToken: String?, fuseUnk: Bool, byteFallback: Bool,
                     ignoreMerges: Bool, continuingSubwordPrefix: String?, endOfWordSuffix: String?, source: String) throws {
        let prefixLength = continuingSubwordPrefix?.count ?? 0
        var resolved: [(left: Int, right: Int, merged: Int)] = []
        resolved.reserveCapacity(merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            guard let left = vocab[a], let right = vocab[b] else {
                throw TokenizerError("\(source): merge #\(rank) \"\(a) \(b)\" uses a token that is not in the vocabulary")
            }
            let mergedText = a + String(b.dropFirst(prefixLength))
            guard let merged = vocab[mergedText] else {
                throw TokenizerError("\(source): merge #\(rank) \"\(a) \(b)\" gives \(mergedText.debugDescription), which is not in the vocabulary")
            }
            resolved.append((left, right, merged))
        }
        try self.init(vocab: vocab, mergeIds: resolved, unkToken: unkToken, fuseUnk: fuseUnk, byteFallback: byteFallback,
                      ignoreMerges: ignoreMerges, continuingSubwordPrefix: continuingSubwordPrefix,
                      endOfWordSuffix: endOfWordSuffix, source: source)
    }

    /// Largest token id accepted for a vocabulary (or added-token list) of `entries` entries:
    /// real tokenizers number tokens densely, so anything past twice the count is corruption.
    static func idLimit(entries: Int) -> Int { 2 * entries + 1024 }

    /// Merges as (left id, right id, merged id), in rank order.
    init(vocab: Vocabulary, mergeIds: [(left: Int, right: Int, merged: Int)], unkToken: String?, fuseUnk: Bool, byteFallback: Bool,
         ignoreMerges: Bool, continuingSubwordPrefix: String?, endOfWordSuffix: String?, source: String) throws {
        tokenToId = vocab
        var maxId = -1
        let vocabPairs = vocab.pairs
        for (_, id) in vocabPairs where id > maxId { maxId = id }
        // Ids index a table: a stray huge id must be an error, not a terabyte allocation.
        if maxId >= Self.idLimit(entries: vocabPairs.count), let (token, _) = vocabPairs.first(where: { $0.1 == maxId }) {
            throw TokenizerError("\(source): token id \(maxId) for \(token.debugDescription) is far beyond the vocabulary's \(vocabPairs.count) entries (ids must be about 0..<\(vocabPairs.count))")
        }
        var table = [String](repeating: "", count: maxId + 1)
        for (token, id) in vocabPairs {
            guard id >= 0 else { throw TokenizerError("\(source): negative token id \(id) for \(token.debugDescription)") }
            table[id] = token
        }
        idToToken = table
        self.unkId = unkToken.flatMap { vocab[$0] }
        self.fuseUnk = fuseUnk
        self.byteFallback = byteFallback
        self.ignoreMerges = ignoreMerges
        self.continuingSubwordPrefix = continuingSubwordPrefix
        self.endOfWordSuffix = endOfWordSuffix

        var mergeTable = MergeTable(capacity: mergeIds.count)
        for (rank, m) in mergeIds.enumerated() {
            // A later duplicate replaces an earlier one, as when `tokenizers` collects merges into a map.
            mergeTable.insert(UInt64(m.left) << 32 | UInt64(m.right), UInt64(rank) << 32 | UInt64(m.merged))
        }
        self.merges = mergeTable

        for (token, id) in vocabPairs {
            let scalars = token.unicodeScalars
            if scalars.count == 1 {
                let v = scalars.first!.value
                scalarIds[v] = Int32(id)
                if v < 0x10000 { bmpIds[Int(v)] = Int32(id) }
            }
        }
        byteFallbackIds = (0..<256).map { b in
            Int32(vocab[String(format: "<0x%02X>", b)] ?? -1)
        }
    }

    /// Makes words arrive as raw UTF-8 bytes that are spelled through the GPT-2 byte alphabet.
    func enableByteLevel() {
        byteLevelIds = (0..<256).map { b in Int32(tokenToId[String(ByteAlphabet.character(of: UInt8(b)))] ?? -1) }
    }

    var isByteLevel: Bool { !byteLevelIds.isEmpty }

    // MARK: tokenize

    /// Token ids for one pre-tokenized word given as UTF-8 bytes (raw bytes for byte-level vocabularies).
    func tokenize(_ word: [UInt8], into out: inout [Int]) {
        if word.isEmpty { return }
        let cacheable = word.count < Self.maxCachedLength
        if cacheable {
            cacheLock.lock()
            let hit = cache[word]
            cacheLock.unlock()
            if let hit {
                for id in hit { out.append(Int(id)) }
                return
            }
        }
        let ids = computeTokens(word)
        if cacheable {
            cacheLock.lock()
            if cache.count < Self.cacheCapacity { cache[word] = ids }
            cacheLock.unlock()
        }
        for id in ids { out.append(Int(id)) }
    }

    private func computeTokens(_ word: [UInt8]) -> [Int32] {
        if ignoreMerges, let id = tokenToId[spelling(of: word)] { return [Int32(id)] }
        var symbols = initialSymbols(word)
        if symbols.count > 1 { mergeAll(&symbols) }
        return symbols
    }

    /// The word as the vocabulary spells it.
    private func spelling(of word: [UInt8]) -> String {
        if isByteLevel {
            var s = ""
            s.reserveCapacity(word.count * 2)
            for b in word { s.append(ByteAlphabet.character(of: b)) }
            return s
        }
        return String(decoding: word, as: UTF8.self)
    }

    private func initialSymbols(_ word: [UInt8]) -> [Int32] {
        if isByteLevel && continuingSubwordPrefix == nil && endOfWordSuffix == nil {
            var symbols = [Int32]()
            symbols.reserveCapacity(word.count)
            var pendingUnk: Int32? = nil
            for b in word {
                let id = byteLevelIds[Int(b)]
                if id >= 0 {
                    if let u = pendingUnk { symbols.append(u); pendingUnk = nil }
                    symbols.append(id)
                } else {
                    addUnknown(&symbols, &pendingUnk)
                }
            }
            if let u = pendingUnk { symbols.append(u) }
            return symbols
        }
        // One symbol per character (Unicode scalar), with byte fallback or <unk> for characters not in the vocabulary.
        let text = spelling(of: word)
        let scalars = Array(text.unicodeScalars)
        var symbols = [Int32]()
        symbols.reserveCapacity(scalars.count)
        var pendingUnk: Int32? = nil
        for (index, scalar) in scalars.enumerated() {
            var id: Int32? = nil
            if continuingSubwordPrefix == nil && endOfWordSuffix == nil {
                let v = scalar.value
                if v < 0x10000 { let b = bmpIds[Int(v)]; id = b >= 0 ? b : nil } else { id = scalarIds[v] }
            } else {
                var piece = String(scalar)
                if index > 0, let prefix = continuingSubwordPrefix { piece = prefix + piece }
                if index == scalars.count - 1, let suffix = endOfWordSuffix { piece += suffix }
                id = tokenToId[piece].map(Int32.init)
            }
            if let id {
                if let u = pendingUnk { symbols.append(u); pendingUnk = nil }
                symbols.append(id)
                continue
            }
            if byteFallback {
                // `tokenizers` tries the character's bytes without any prefix or suffix around them.
                var piece = String(scalar)
                if index > 0, let prefix = continuingSubwordPrefix { piece = prefix + piece }
                if index == scalars.count - 1, let suffix = endOfWordSuffix { piece += suffix }
                let bytes = Array(piece.utf8)
                if bytes.allSatisfy({ byteFallbackIds[Int($0)] >= 0 }) {
                    for b in bytes { symbols.append(byteFallbackIds[Int(b)]) }
                    continue
                }
            }
            addUnknown(&symbols, &pendingUnk)
        }
        if let u = pendingUnk { symbols.append(u) }
        return symbols
    }

    @inline(__always)
    private func addUnknown(_ symbols: inout [Int32], _ pendingUnk: inout Int32?) {
        guard let unkId else { return }  // `tokenizers` fails here; dropping the character is the closest safe choice
        if pendingUnk != nil && fuseUnk { return }
        if let u = pendingUnk { symbols.append(u) }
        pendingUnk = Int32(unkId)
    }

    @inline(__always)
    private func merge(_ left: Int32, _ right: Int32) -> UInt64? {
        merges.find(UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right)))
    }

    private func mergeAll(_ symbols: inout [Int32]) {
        let n = symbols.count
        if n < 2 { return }
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        var heap = MergeHeap()
        for i in 0..<(n - 1) {
            if let m = merge(symbols[i], symbols[i + 1]) {
                heap.push(rank: UInt32(m >> 32), pos: Int32(i), newId: Int32(truncatingIfNeeded: m))
            }
        }
        while let top = heap.pop() {
            let pos = Int(top.pos)
            if !alive[pos] { continue }
            let nextPos = Int(next[pos])
            if nextPos < 0 { continue }
            // Skip entries made stale by earlier merges: the pair there must still merge into the same token.
            guard let m = merge(symbols[pos], symbols[nextPos]), Int32(truncatingIfNeeded: m) == top.newId else { continue }
            symbols[pos] = top.newId
            alive[nextPos] = false
            let after = next[nextPos]
            next[pos] = after
            if after >= 0 { prev[Int(after)] = Int32(pos) }
            let before = prev[pos]
            if before >= 0, let m = merge(symbols[Int(before)], symbols[pos]) {
                heap.push(rank: UInt32(m >> 32), pos: before, newId: Int32(truncatingIfNeeded: m))
            }
            if after >= 0, let m = merge(symbols[pos], symbols[Int(after)]) {
                heap.push(rank: UInt32(m >> 32), pos: Int32(pos), newId: Int32(truncatingIfNeeded: m))
            }
        }
        var out = [Int32]()
        out.reserveCapacity(n)
        var i = 0
        while i >= 0 && i < n {
            out.append(symbols[i])
            i = Int(next[i])
        }
        symbols = out
    }
}

/// Min-heap on (rank, position): the lowest rank first, the leftmost among equals.
private struct MergeHeap {
    struct Entry { var key: UInt64; var newId: Int32 }
    private var items: [Entry] = []

    mutating func push(rank: UInt32, pos: Int32, newId: Int32) {
        items.append(Entry(key: UInt64(rank) << 32 | UInt64(UInt32(bitPattern: pos)), newId: newId))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent].key <= items[i].key { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> (pos: Int32, newId: Int32)? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && items[l].key < items[m].key { m = l }
                if r < n && items[r].key < items[m].key { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return (Int32(truncatingIfNeeded: first.key), first.newId)
    }
}

/// GPT-2's reversible byte ↔ printable character map: printable bytes map to themselves, the others to
/// U+0100 and up, in byte order.
enum ByteAlphabet {
    static let characters: [Character] = {
        var printable = Set<Int>()
        for b in 0x21...0x7E { printable.insert(b) }
        for b in 0xA1...0xAC { printable.insert(b) }
        for b in 0xAE...0xFF { printable.insert(b) }
        var table = [Character](repeating: " ", count: 256)
        var n = 0
        for b in 0..<256 {
            if printable.contains(b) {
                table[b] = Character(Unicode.Scalar(UInt32(b))!)
            } else {
                table[b] = Character(Unicode.Scalar(UInt32(256 + n))!)
                n += 1
            }
        }
        return table
    }()
    static let byteOfScalar: [UInt32: UInt8] = {
        var map = [UInt32: UInt8]()
        for (b, c) in characters.enumerated() { map[c.unicodeScalars.first!.value] = UInt8(b) }
        return map
    }()

    @inline(__always) static func character(of byte: UInt8) -> Character { characters[Int(byte)] }

    /// The bytes a vocabulary entry spells, or nil when it has a character outside the alphabet.
    static func bytes(of token: String) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            guard let b = byteOfScalar[s.value] else { return nil }
            out.append(b)
        }
        return out
    }
}

/// Open-addressing hash map from a token pair to (rank, merged id): the merge loop's hot lookup, several
/// times cheaper than Dictionary's seeded SipHash.
struct MergeTable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private let shift: UInt64
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        var bits: UInt64 = 4
        while size < capacity * 2 { size <<= 1; bits += 1 }
        keys = [UInt64](repeating: Self.empty, count: size)
        values = [UInt64](repeating: 0, count: size)
        mask = size - 1
        shift = 64 - bits
    }

    @inline(__always) private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    mutating func insert(_ key: UInt64, _ value: UInt64) {
        var i = slot(key)
        while keys[i] != Self.empty && keys[i] != key { i = (i + 1) & mask }
        keys[i] = key
        values[i] = value
    }

    @inline(__always) func find(_ key: UInt64) -> UInt64? {
        var i = slot(key)
        while true {
            let k = keys[i]
            if k == key { return values[i] }
            if k == Self.empty { return nil }
            i = (i + 1) & mask
        }
    }
}
