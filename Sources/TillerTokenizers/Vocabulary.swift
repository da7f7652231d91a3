// Token text compared code point by code point. Swift's String equality is canonical equivalence, under
// which "\u{37E}" (Greek question mark) equals ";" and "\u{341}" equals "\u{301}"; real vocabularies hold both
// as different tokens, and Python (transformers) tells them apart. Every map keyed by token text uses this.

struct RawKey: Hashable {
    let string: String
    init(_ string: String) { self.string = string }

    static func == (a: RawKey, b: RawKey) -> Bool { a.string.utf8.elementsEqual(b.string.utf8) }

    func hash(into hasher: inout Hasher) {
        var s = string
        s.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

/// token text → id, exact.
struct Vocabulary {
    private(set) var ids: [RawKey: Int] = [:]

    init() {}
    init(minimumCapacity: Int) { ids = [RawKey: Int](minimumCapacity: minimumCapacity) }

    subscript(token: String) -> Int? {
        get { ids[RawKey(token)] }
        set { ids[RawKey(token)] = newValue }
    }
    var count: Int { ids.count }
    var pairs: [(String, Int)] { ids.map { ($0.key.string, $0.value) } }
}

/// Exact (code point) equality of two texts.
@inline(__always) func sameText(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }
