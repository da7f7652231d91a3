import Foundation

/// Keys and values of one sequence, for every layer: per layer a [capacity, kvHeads·headDim]
/// fp32 buffer on the model's backend (keys already normed and rotated). Grows by doubling.
///
/// Several continuations of one prompt share its computation two ways: `fork` copies a prefix
/// (the copy is independent), and `child` reads the parent's first `base` positions in place and
/// stores only its own positions, so 101 judge candidates cost no copies of the prompt. A parent
/// must not be truncated below a child's base or written concurrently with the child's use.
/// Growing, forking and siblings copy on the backend.
public final class KVCache: @unchecked Sendable {
    let backend: Backend
    public let layers: Int
    public let kvDim: Int
    /// Positions 0..<length hold valid keys/values in every layer (counting the parent's `base`).
    public internal(set) var length: Int = 0
    /// The cache whose positions 0..<base this one reads in place (nil: all positions are own).
    public let parent: KVCache?
    /// Positions read from the parent; own storage holds positions base..<length at base 0.
    public let base: Int
    private(set) var capacity: Int = 0
    private(set) var keys: [BackendBuffer] = []
    private(set) var values: [BackendBuffer] = []

    init(layers: Int, kvDim: Int, capacity: Int = 64, backend: Backend) {
        self.backend = backend
        self.layers = layers
        self.kvDim = kvDim
        parent = nil
        base = 0
        reserve(max(capacity, 1))
    }

    private init(parent: KVCache, extra: Int) {
        precondition(parent.parent == nil, "KVCache.child: the parent must own all its positions")
        backend = parent.backend
        layers = parent.layers
        kvDim = parent.kvDim
        self.parent = parent
        base = parent.length
        length = parent.length
        reserve(base + max(extra, 1))
    }

    /// Makes room for `total` positions (parent's included).
    public func reserve(_ total: Int) {
        let own = total - base
        guard own > capacity else { return }
        let newCap = max(own, capacity * 2)
        let used = length - base
        let recorder = capacity > 0 && used > 0 ? backend.makeRecorder() : nil
        for l in 0..<layers {
            let k = backend.buffer(count: newCap * kvDim)
            let v = backend.buffer(count: newCap * kvDim)
            if capacity > 0 {
                recorder?.copy(keys[l].at(), into: k.at(), count: used * kvDim)
                recorder?.copy(values[l].at(), into: v.at(), count: used * kvDim)
                keys[l] = k
                values[l] = v
            } else {
                keys.append(k)
                values.append(v)
            }
        }
        recorder?.submit()
        capacity = newCap
    }

    /// An independent copy of the first `prefix` positions (default: all), with room for `extra`
    /// more. With `recorder` the copies are recorded there (the caller submits: many forks, one
    /// submission); otherwise they are submitted now.
    public func fork(prefix: Int? = nil, extra: Int = 0, on recorder: StepRecorder? = nil) -> KVCache {
        let n = min(prefix ?? length, length)
        let c = KVCache(layers: layers, kvDim: kvDim, capacity: n + max(extra, 1), backend: backend)
        let fromParent = min(n, base)
        let r = recorder ?? backend.makeRecorder()
        for l in 0..<layers {
            if let p = parent, fromParent > 0 {
                r.copy(p.keys[l].at(), into: c.keys[l].at(), count: fromParent * kvDim)
                r.copy(p.values[l].at(), into: c.values[l].at(), count: fromParent * kvDim)
            }
            if n > base {
                r.copy(keys[l].at(), into: c.keys[l].at(base * kvDim), count: (n - base) * kvDim)
                r.copy(values[l].at(), into: c.values[l].at(base * kvDim), count: (n - base) * kvDim)
            }
        }
        if recorder == nil { r.submit() }
        c.length = n
        return c
    }

    /// A cache that continues this one without copying it: it reads this cache's current
    /// positions in place and stores only what is appended to it (room for `extra` positions).
    public func child(extra: Int = 0) -> KVCache {
        if parent != nil { return fork(extra: extra) }  // one level of sharing: flatten first
        return KVCache(parent: self, extra: extra)
    }

    /// A sibling that continues this child's first `count` own positions: a new child of the same
    /// parent holding a copy of just those positions (a trie of continuations shares each node's
    /// keys/values with its descendants at the cost of a few rows, not of the prompt).
    public func sibling(keeping count: Int, extra: Int = 0) -> KVCache {
        guard let p = parent else { return fork(prefix: count, extra: extra) }
        let n = max(0, min(count, length - base))
        let c = KVCache(parent: p, extra: n + extra)
        if n > 0 {
            let r = backend.makeRecorder()
            for l in 0..<layers {
                r.copy(keys[l].at(), into: c.keys[l].at(), count: n * kvDim)
                r.copy(values[l].at(), into: c.values[l].at(), count: n * kvDim)
            }
            r.submit()
        }
        c.length = base + n
        return c
    }

    /// Forgets positions ≥ `length` (never below the parent's `base`).
    public func truncate(to newLength: Int) {
        length = max(base, min(length, newLength))
    }

    /// Layer `l`'s keys/values as the attention kernel reads them: the parent's positions
    /// 0..<base, then own storage (whose row 0 is position `base`).
    func segments(layer l: Int) -> (prefixKeys: BufferSlice?, prefixValues: BufferSlice?, keys: BufferSlice, values: BufferSlice) {
        (parent.map { $0.keys[l].at() }, parent.map { $0.values[l].at() }, keys[l].at(), values[l].at())
    }

    /// Bytes held by this cache (not counting its parent).
    public var byteCount: Int { 2 * layers * capacity * kvDim * MemoryLayout<Float>.size }
}
