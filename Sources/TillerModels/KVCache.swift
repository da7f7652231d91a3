import Foundation

/// Keys and values of one sequence, for every layer: per layer a [capacity, kvHeads·headDim]
/// fp32 buffer (keys already normed and rotated). Grows by doubling; `fork` copies a prefix so
/// several continuations can share one prompt computation.
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let kvDim: Int
    /// Positions 0..<length hold valid keys/values in every layer.
    public internal(set) var length: Int = 0
    private(set) var capacity: Int = 0
    private(set) var keys: [UnsafeMutablePointer<Float>] = []
    private(set) var values: [UnsafeMutablePointer<Float>] = []

    public init(layers: Int, kvDim: Int, capacity: Int = 64) {
        self.layers = layers
        self.kvDim = kvDim
        reserve(max(capacity, 1))
    }

    deinit {
        for p in keys { p.deallocate() }
        for p in values { p.deallocate() }
    }

    /// Makes room for `total` positions.
    public func reserve(_ total: Int) {
        guard total > capacity else { return }
        let newCap = max(total, capacity * 2)
        for l in 0..<layers {
            let k = UnsafeMutablePointer<Float>.allocate(capacity: newCap * kvDim)
            let v = UnsafeMutablePointer<Float>.allocate(capacity: newCap * kvDim)
            if capacity > 0 {
                k.update(from: keys[l], count: length * kvDim)
                v.update(from: values[l], count: length * kvDim)
                keys[l].deallocate()
                values[l].deallocate()
                keys[l] = k
                values[l] = v
            } else {
                keys.append(k)
                values.append(v)
            }
        }
        capacity = newCap
    }

    /// A copy of the first `prefix` positions (default: all), with room for `extra` more.
    public func fork(prefix: Int? = nil, extra: Int = 0) -> KVCache {
        let n = min(prefix ?? length, length)
        let c = KVCache(layers: layers, kvDim: kvDim, capacity: n + max(extra, 1))
        for l in 0..<layers {
            c.keys[l].update(from: keys[l], count: n * kvDim)
            c.values[l].update(from: values[l], count: n * kvDim)
        }
        c.length = n
        return c
    }

    /// Forgets positions ≥ `length`.
    public func truncate(to newLength: Int) {
        length = max(0, min(length, newLength))
    }

    /// Bytes held.
    public var byteCount: Int { 2 * layers * capacity * kvDim * MemoryLayout<Float>.size }
}
