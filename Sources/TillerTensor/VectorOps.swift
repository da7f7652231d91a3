// Small SIMD loops over Float buffers, for the engine's per-token work (norms, residual adds,
// attention scores) and for the matmul kernels.

import Foundation

/// Σ a[i]·b[i] over `count` elements.
@inlinable @inline(__always)
public func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
    var i = 0
    while i &+ 32 <= count {
        s0.addProduct(vload(a + i), vload(b + i))
        s1.addProduct(vload(a + (i &+ 8)), vload(b + (i &+ 8)))
        s2.addProduct(vload(a + (i &+ 16)), vload(b + (i &+ 16)))
        s3.addProduct(vload(a + (i &+ 24)), vload(b + (i &+ 24)))
        i &+= 32
    }
    while i &+ 8 <= count {
        s0.addProduct(vload(a + i), vload(b + i))
        i &+= 8
    }
    var total = horizontalSum((s0 + s1) + (s2 + s3))
    while i < count {
        total += a[i] * b[i]
        i &+= 1
    }
    return total
}

/// y[i] += alpha · x[i] over `count` elements.
@inlinable @inline(__always)
public func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
    let a = SIMD8<Float>(repeating: alpha)
    var i = 0
    while i &+ 8 <= count {
        var v = vload(UnsafePointer(y + i))
        v.addProduct(a, vload(x + i))
        vstore(v, y + i)
        i &+= 8
    }
    while i < count {
        y[i] += alpha * x[i]
        i &+= 1
    }
}

/// x[i] *= alpha over `count` elements.
@inlinable @inline(__always)
public func scale(_ x: UnsafeMutablePointer<Float>, by alpha: Float, count: Int) {
    var i = 0
    while i &+ 8 <= count {
        vstore(vload(UnsafePointer(x + i)) * alpha, x + i)
        i &+= 8
    }
    while i < count {
        x[i] *= alpha
        i &+= 1
    }
}

/// Σ x[i] over `count` elements.
@inlinable @inline(__always)
public func sum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
    var i = 0
    while i &+ 16 <= count {
        s0 += vload(x + i)
        s1 += vload(x + (i &+ 8))
        i &+= 16
    }
    if i &+ 8 <= count {
        s0 += vload(x + i)
        i &+= 8
    }
    var total = horizontalSum(s0 + s1)
    while i < count {
        total += x[i]
        i &+= 1
    }
    return total
}

/// Σ x[i]² over `count` elements (for RMS norms).
@inlinable @inline(__always)
public func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Float {
    dotProduct(x, x, count: count)
}

/// The largest |x[i]| over `count` elements (0 when empty).
@inlinable @inline(__always)
public func maxMagnitude(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var m = SIMD8<Float>()
    var i = 0
    while i &+ 8 <= count {
        let v = vload(x + i)
        m = pointwiseMax(m, pointwiseMax(v, -v))
        i &+= 8
    }
    var result = m.max()
    while i < count {
        result = Swift.max(result, abs(x[i]))
        i &+= 1
    }
    return result
}

/// Unaligned 8-float load.
@inlinable @inline(__always)
public func vload(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

/// Unaligned 8-float store.
@inlinable @inline(__always)
public func vstore(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// Sum of the lanes in a fixed pairwise order (`SIMD.sum()` adds them one by one).
@inlinable @inline(__always)
public func horizontalSum(_ v: SIMD8<Float>) -> Float {
    let a = v.lowHalf + v.highHalf
    let b = a.lowHalf + a.highHalf
    return b[0] + b[1]
}

/// e^x lane by lane, within 2 ulp of `Foundation.exp` for x in [-87, 88] (Cephes' expf: x = n·ln 2 + r
/// with |r| ≤ ln 2 / 2, a degree-7 polynomial for e^r, then 2^n through the exponent bits).
/// Below -87 it returns about 1e-38 rather than 0, above 88 about 2^127.
@inlinable @inline(__always)
public func vexp(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let lo = SIMD8<Float>(repeating: -87.0), hi = SIMD8<Float>(repeating: 88.0)
    var v = x.replacing(with: lo, where: x .< lo)
    v = v.replacing(with: hi, where: v .> hi)
    // Round v·log2(e) to the nearest integer n by adding 1.5·2^23: the sum's low mantissa bits are n.
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let shifted = v * 1.442_695_040_888_963_4 + magic
    let n = shifted - magic
    let r = v - n * 0.693_359_375 - n * -2.121_944_400_546_905_8e-4
    var p = SIMD8<Float>(repeating: 1.987_569_150_0e-4)
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    let y = p * (r * r) + r + 1
    // n as an integer (two's complement, wrapping), then 2^n as the float with exponent n + 127.
    let nBits = unsafeBitCast(shifted, to: SIMD8<UInt32>.self) &- unsafeBitCast(magic, to: SIMD8<UInt32>.self)
    let scale = unsafeBitCast((nBits &+ 127) &<< 23, to: SIMD8<Float>.self)
    return y * scale
}

/// The largest of x[0..<n] (−∞ for none); NaN elements are passed over, as `Swift.max` does.
public func maxValue(_ x: UnsafePointer<Float>, count n: Int) -> Float {
    var i = 0
    var m = -Float.infinity
    if n >= 8 {
        var mv = SIMD8<Float>(repeating: -.infinity)
        while i + 8 <= n {
            let v = vload(x + i)
            mv = mv.replacing(with: v, where: v .> mv)
            i += 8
        }
        m = mv.max()
    }
    while i < n {
        m = Swift.max(m, x[i])
        i += 1
    }
    return m
}

/// tanh lane by lane, for the logit and attention soft-caps (Gemma 2): an odd Taylor polynomial
/// below |u| = 1/4 (truncation under 3e-10 relative), 1 − 2/(e^(2|u|) + 1) through `vexp` above
/// it, the sign put back. Within a few ulp of Foundation.tanh (the test bounds it); ±1 for large
/// |u|, NaN for NaN.
@inlinable @inline(__always)
public func vtanh(_ u: SIMD8<Float>) -> SIMD8<Float> {
    let bits = unsafeBitCast(u, to: SIMD8<UInt32>.self)
    let sign = bits & 0x8000_0000
    let a = unsafeBitCast(bits & 0x7FFF_FFFF, to: SIMD8<Float>.self)
    let z = a * a
    var p = SIMD8<Float>(repeating: 21844.0 / 6_081_075)
    p = p * z + -1382.0 / 155_925
    p = p * z + 62.0 / 2835
    p = p * z + -17.0 / 315
    p = p * z + 2.0 / 15
    p = p * z + -1.0 / 3
    let small = a + a * (z * p)
    let large = 1 - 2 / (vexp(a + a) + 1)
    let t = large.replacing(with: small, where: a .< 0.25)
    return unsafeBitCast(unsafeBitCast(t, to: SIMD8<UInt32>.self) | sign, to: SIMD8<Float>.self)
}

/// x[i] ← cap · tanh(x[i] / cap) (a logit or attention-score soft-cap), eight lanes at a time
/// through `vtanh`, the tail through Foundation.tanh.
public func softcapInPlace(_ x: UnsafeMutablePointer<Float>, cap: Float, count n: Int) {
    var i = 0
    let c = SIMD8<Float>(repeating: cap)
    while i + 8 <= n {
        vstore(c * vtanh(vload(x + i) / c), x + i)
        i += 8
    }
    while i < n {
        x[i] = cap * Foundation.tanh(x[i] / cap)
        i += 1
    }
}

/// log Σ exp(x) of a logits row: the maximum, then e^(x − max) eight lanes at a time (`vexp`),
/// summed in fp32 over blocks of 64 and the blocks in fp64, so that a 262k-entry vocabulary
/// keeps about 1e-7 relative error in the sum (≈ 1e-7 absolute in the result). NaN in, NaN out.
public func logSumExp(_ x: UnsafePointer<Float>, count n: Int) -> Double {
    guard n > 0 else { return -.infinity }
    var m = -Float.infinity
    var i = 0
    if n >= 8 {
        var mv = SIMD8<Float>(repeating: -.infinity)
        while i + 8 <= n {
            let v = vload(x + i)
            mv = mv.replacing(with: v, where: v .> mv)
            if any(v .!= v) { return .nan }
            i += 8
        }
        m = mv.max()
    }
    while i < n {
        if x[i].isNaN { return .nan }
        m = max(m, x[i])
        i += 1
    }
    guard m.isFinite else { return Double(m) }  // all −∞, or some +∞
    let mv = SIMD8<Float>(repeating: m)
    var total = 0.0
    i = 0
    while i + 64 <= n {
        var acc = vexp(vload(x + i) - mv)
        for k in stride(from: 8, to: 64, by: 8) { acc += vexp(vload(x + i + k) - mv) }
        total += Double(horizontalSum(acc))
        i += 64
    }
    while i + 8 <= n {
        total += Double(horizontalSum(vexp(vload(x + i) - mv)))
        i += 8
    }
    while i < n {
        total += Foundation.exp(Double(x[i] - m))
        i += 1
    }
    return Double(m) + Foundation.log(total)
}
