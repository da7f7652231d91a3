import CTillerKernels
import Foundation

// Fused dequantize-and-dot kernels for one input row (decode): each weight block is decoded into
// registers, 32 elements at a time, and multiplied into the accumulators without touching memory
// again, so the kernel streams the weight bytes once.
//
// A group's weights are computed the way `Dequantize.swift` computes them (the same f32 values
// for Q8_0/Q4_0/Q5_0/Q6_K; within one rounding, by a fused multiply-add, for the forms
// `d*q + m`), so the result is an f32 dot product with the dequantized weights.

/// A stored block type, decoded 32 elements at a time.
protocol GroupDecoder {
    /// Elements and bytes of one block; a block holds `elements / 32` groups.
    static var elements: Int { get }
    static var bytes: Int { get }
    /// Group `g` of the block at `block`, as four vectors of 8 consecutive elements.
    static func group(_ block: UnsafeRawPointer, _ g: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)
}

typealias Group = (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)

enum F32Groups: GroupDecoder {
    static var elements: Int { 32 }
    static var bytes: Int { 128 }
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        (b.loadUnaligned(as: SIMD8<Float>.self), b.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self),
         b.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self), b.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self))
    }
}

enum F16Groups: GroupDecoder {
    static var elements: Int { 32 }
    static var bytes: Int { 64 }
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        (floats(b.loadUnaligned(as: SIMD8<UInt16>.self)),
         floats(b.loadUnaligned(fromByteOffset: 16, as: SIMD8<UInt16>.self)),
         floats(b.loadUnaligned(fromByteOffset: 32, as: SIMD8<UInt16>.self)),
         floats(b.loadUnaligned(fromByteOffset: 48, as: SIMD8<UInt16>.self)))
    }
}

enum BF16Groups: GroupDecoder {
    static var elements: Int { 32 }
    static var bytes: Int { 64 }
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        (bf16Floats(b.loadUnaligned(as: SIMD8<UInt16>.self)),
         bf16Floats(b.loadUnaligned(fromByteOffset: 16, as: SIMD8<UInt16>.self)),
         bf16Floats(b.loadUnaligned(fromByteOffset: 32, as: SIMD8<UInt16>.self)),
         bf16Floats(b.loadUnaligned(fromByteOffset: 48, as: SIMD8<UInt16>.self)))
    }
}

enum Q8_0Groups: GroupDecoder {
    static var elements: Int { 32 }
    static var bytes: Int { 34 }
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        let d = loadF16(b)
        return (floats(b.loadUnaligned(fromByteOffset: 2, as: SIMD8<Int8>.self)) * d,
                floats(b.loadUnaligned(fromByteOffset: 10, as: SIMD8<Int8>.self)) * d,
                floats(b.loadUnaligned(fromByteOffset: 18, as: SIMD8<Int8>.self)) * d,
                floats(b.loadUnaligned(fromByteOffset: 26, as: SIMD8<Int8>.self)) * d)
    }
}

enum Q4_0Groups: GroupDecoder {
    static var elements: Int { 32 }
    static var bytes: Int { 18 }
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        let d = loadF16(b)
        let qs = b.loadUnaligned(fromByteOffset: 2, as: SIMD16<UInt8>.self)
        let lo = qs & 0x0F, hi = qs &>> 4
        return (d * (floats(lo.lowHalf) - 8), d * (floats(lo.highHalf) - 8),
                d * (floats(hi.lowHalf) - 8), d * (floats(hi.highHalf) - 8))
    }
}

enum Q4_1Groups: GroupDecoder {
    static var elements: Int { 32 }
    static var bytes: Int { 20 }
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        let d = SIMD8<Float>(repeating: loadF16(b)), m = SIMD8<Float>(repeating: loadF16(b, 2))
        let qs = b.loadUnaligned(fromByteOffset: 4, as: SIMD16<UInt8>.self)
        let lo = qs & 0x0F, hi = qs &>> 4
        return (m.addingProduct(d, floats(lo.lowHalf)), m.addingProduct(d, floats(lo.highHalf)),
                m.addingProduct(d, floats(hi.lowHalf)), m.addingProduct(d, floats(hi.highHalf)))
    }
}

// Byte vectors here are SIMD16 at most: wider ones (SIMD32) fall back to one lane at a time in
// some operations.

/// The fifth bits of elements 16h ..< 16h+16 of a Q5 block as 0/16 bytes (bit i of `qh` belongs
/// to element i).
@inline(__always) func q5HighBits16(_ qh: UInt32, _ h: Int) -> SIMD16<UInt8> {
    let lo = UInt8(truncatingIfNeeded: qh &>> UInt32(16 &* h))
    let hi = UInt8(truncatingIfNeeded: qh &>> UInt32(16 &* h &+ 8))
    let bytes = SIMD16<UInt8>(lowHalf: SIMD8(repeating: lo), highHalf: SIMD8(repeating: hi))
    let lanes = SIMD16<UInt8>(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128)
    return SIMD16<UInt8>(repeating: 0).replacing(with: 16, where: (bytes & lanes) .== lanes)
}

enum Q5_0Groups: GroupDecoder {
    static var elements: Int { 32 }
    static var bytes: Int { 22 }
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        let d = loadF16(b)
        let qh = b.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
        let qs = b.loadUnaligned(fromByteOffset: 6, as: SIMD16<UInt8>.self)
        let q0 = (qs & 0x0F) | q5HighBits16(qh, 0), q1 = (qs &>> 4) | q5HighBits16(qh, 1)
        return (d * (floats(q0.lowHalf) - 16), d * (floats(q0.highHalf) - 16),
                d * (floats(q1.lowHalf) - 16), d * (floats(q1.highHalf) - 16))
    }
}

enum Q5_1Groups: GroupDecoder {
    static var elements: Int { 32 }
    static var bytes: Int { 24 }
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        let d = SIMD8<Float>(repeating: loadF16(b)), m = SIMD8<Float>(repeating: loadF16(b, 2))
        let qh = b.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        let qs = b.loadUnaligned(fromByteOffset: 8, as: SIMD16<UInt8>.self)
        let q0 = (qs & 0x0F) | q5HighBits16(qh, 0), q1 = (qs &>> 4) | q5HighBits16(qh, 1)
        return (m.addingProduct(d, floats(q0.lowHalf)), m.addingProduct(d, floats(q0.highHalf)),
                m.addingProduct(d, floats(q1.lowHalf)), m.addingProduct(d, floats(q1.highHalf)))
    }
}

enum Q4_KGroups: GroupDecoder {
    static var elements: Int { 256 }
    static var bytes: Int { 144 }
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        let (sc, mn) = kScaleMin(b + 4, g)
        let dl = SIMD8<Float>(repeating: loadF16(b) * Float(sc))
        let ml = SIMD8<Float>(repeating: -(loadF16(b, 2) * Float(mn)))
        let p = b + (16 &+ 32 &* (g &>> 1))
        let q0 = nibbles(p.loadUnaligned(as: SIMD16<UInt8>.self), high: g & 1 == 1)
        let q1 = nibbles(p.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self), high: g & 1 == 1)
        return (ml.addingProduct(dl, floats(q0.lowHalf)), ml.addingProduct(dl, floats(q0.highHalf)),
                ml.addingProduct(dl, floats(q1.lowHalf)), ml.addingProduct(dl, floats(q1.highHalf)))
    }
}

enum Q5_KGroups: GroupDecoder {
    static var elements: Int { 256 }
    static var bytes: Int { 176 }
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        let (sc, mn) = kScaleMin(b + 4, g)
        let dl = SIMD8<Float>(repeating: loadF16(b) * Float(sc))
        let ml = SIMD8<Float>(repeating: -(loadF16(b, 2) * Float(mn)))
        let p = b + (48 &+ 32 &* (g &>> 1))
        let q0 = nibbles(p.loadUnaligned(as: SIMD16<UInt8>.self), high: g & 1 == 1)
            | bitAsSixteen((b + 16).loadUnaligned(as: SIMD16<UInt8>.self), g)
        let q1 = nibbles(p.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self), high: g & 1 == 1)
            | bitAsSixteen((b + 32).loadUnaligned(as: SIMD16<UInt8>.self), g)
        return (ml.addingProduct(dl, floats(q0.lowHalf)), ml.addingProduct(dl, floats(q0.highHalf)),
                ml.addingProduct(dl, floats(q1.lowHalf)), ml.addingProduct(dl, floats(q1.highHalf)))
    }
}

enum Q6_KGroups: GroupDecoder {
    static var elements: Int { 256 }
    static var bytes: Int { 210 }
    // Group g covers elements 32g ..< 32g+32: half h = g/4, quarter s = g%4; its low nibbles are
    // nibble s/2 of ql[64h + 32(s%2) ..< +32], its high bits field s of qh[32h ..< +32], and it
    // spans two 16-element scales.
    @inline(__always) static func group(_ b: UnsafeRawPointer, _ g: Int) -> Group {
        let d = loadF16(b, 208)
        let h = g &>> 2, s = g & 3
        let scales = (b + 192).assumingMemoryBound(to: Int8.self)
        let d0 = d * Float(scales[2 &* g]), d1 = d * Float(scales[2 &* g &+ 1])
        let ql = b + (64 &* h &+ 32 &* (s & 1)), qh = b + (128 &+ 32 &* h)
        let q0 = nibbles(ql.loadUnaligned(as: SIMD16<UInt8>.self), high: s >= 2)
            | twoBitField(qh.loadUnaligned(as: SIMD16<UInt8>.self), s) &<< 4
        let q1 = nibbles(ql.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self), high: s >= 2)
            | twoBitField(qh.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self), s) &<< 4
        return (d0 * (floats(q0.lowHalf) - 32), d0 * (floats(q0.highHalf) - 32),
                d1 * (floats(q1.lowHalf) - 32), d1 * (floats(q1.highHalf) - 32))
    }
}

/// Σ_i W[i]·x[i] over one stored row of `blocks` blocks.
@inline(__always)
func fusedDot<D: GroupDecoder>(_: D.Type, _ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, blocks: Int) -> Float {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
    let groups = D.elements / 32
    var xp = x
    for b in 0..<blocks {
        let block = row + b &* D.bytes
        for g in 0..<groups {
            let (w0, w1, w2, w3) = D.group(block, g)
            a0.addProduct(w0, vload(xp))
            a1.addProduct(w1, vload(xp + 8))
            a2.addProduct(w2, vload(xp + 16))
            a3.addProduct(w3, vload(xp + 24))
            xp += 32
        }
    }
    return horizontalSum((a0 + a1) + (a2 + a3))
}

/// A block type whose weights are a scale times small integers: the kernel sums q·x first and
/// scales once per 16 elements, which saves a multiply per weight vector. The first two vectors
/// of a group share `scales.0`, the last two `scales.1`.
protocol ScaledGroupDecoder {
    static var elements: Int { get }
    static var bytes: Int { get }
    static func scaledGroup(_ block: UnsafeRawPointer, _ g: Int) -> (scales: (Float, Float), quants: Group)
}

extension Q8_0Groups: ScaledGroupDecoder {
    @inline(__always) static func scaledGroup(_ b: UnsafeRawPointer, _ g: Int) -> (scales: (Float, Float), quants: Group) {
        let d = loadF16(b)
        return ((d, d), (floats(b.loadUnaligned(fromByteOffset: 2, as: SIMD8<Int8>.self)),
                         floats(b.loadUnaligned(fromByteOffset: 10, as: SIMD8<Int8>.self)),
                         floats(b.loadUnaligned(fromByteOffset: 18, as: SIMD8<Int8>.self)),
                         floats(b.loadUnaligned(fromByteOffset: 26, as: SIMD8<Int8>.self))))
    }
}

extension Q4_0Groups: ScaledGroupDecoder {
    @inline(__always) static func scaledGroup(_ b: UnsafeRawPointer, _ g: Int) -> (scales: (Float, Float), quants: Group) {
        let d = loadF16(b)
        let qs = b.loadUnaligned(fromByteOffset: 2, as: SIMD16<UInt8>.self)
        let lo = qs & 0x0F, hi = qs &>> 4
        return ((d, d), (floats(lo.lowHalf) - 8, floats(lo.highHalf) - 8, floats(hi.lowHalf) - 8, floats(hi.highHalf) - 8))
    }
}

extension Q5_0Groups: ScaledGroupDecoder {
    @inline(__always) static func scaledGroup(_ b: UnsafeRawPointer, _ g: Int) -> (scales: (Float, Float), quants: Group) {
        let d = loadF16(b)
        let qh = b.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
        let qs = b.loadUnaligned(fromByteOffset: 6, as: SIMD16<UInt8>.self)
        let q0 = (qs & 0x0F) | q5HighBits16(qh, 0), q1 = (qs &>> 4) | q5HighBits16(qh, 1)
        return ((d, d), (floats(q0.lowHalf) - 16, floats(q0.highHalf) - 16, floats(q1.lowHalf) - 16, floats(q1.highHalf) - 16))
    }
}

extension Q6_KGroups: ScaledGroupDecoder {
    @inline(__always) static func scaledGroup(_ b: UnsafeRawPointer, _ g: Int) -> (scales: (Float, Float), quants: Group) {
        let d = loadF16(b, 208)
        let h = g &>> 2, s = g & 3
        let scales = (b + 192).assumingMemoryBound(to: Int8.self)
        let ql = b + (64 &* h &+ 32 &* (s & 1)), qh = b + (128 &+ 32 &* h)
        let q0 = nibbles(ql.loadUnaligned(as: SIMD16<UInt8>.self), high: s >= 2)
            | twoBitField(qh.loadUnaligned(as: SIMD16<UInt8>.self), s) &<< 4
        let q1 = nibbles(ql.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self), high: s >= 2)
            | twoBitField(qh.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self), s) &<< 4
        return ((d * Float(scales[2 &* g]), d * Float(scales[2 &* g &+ 1])),
                (floats(q0.lowHalf) - 32, floats(q0.highHalf) - 32, floats(q1.lowHalf) - 32, floats(q1.highHalf) - 32))
    }
}

/// Σ_i W[i]·x[i] for a scale-times-integers type: Σ_blocks d·(Σ q·x).
@inline(__always)
func scaledFusedDot<D: ScaledGroupDecoder>(_: D.Type, _ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, blocks: Int) -> Float {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
    let groups = D.elements / 32
    var xp = x
    for b in 0..<blocks {
        let block = row + b &* D.bytes
        for g in 0..<groups {
            let ((d0, d1), (q0, q1, q2, q3)) = D.scaledGroup(block, g)
            var s0 = q0 * vload(xp)
            s0.addProduct(q1, vload(xp + 8))
            var s1 = q2 * vload(xp + 16)
            s1.addProduct(q3, vload(xp + 24))
            a0.addProduct(SIMD8(repeating: d0), s0)
            a1.addProduct(SIMD8(repeating: d1), s1)
            xp += 32
        }
    }
    return horizontalSum(a0 + a1)
}

func scaledFusedMatvec<D: ScaledGroupDecoder>(_ d: D.Type, _ base: UnsafeRawPointer, rowBytes: Int, blocks: Int,
                                              _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ outputs: Range<Int>) {
    for o in outputs {
        y[o] = scaledFusedDot(d, base + o &* rowBytes, x, blocks: blocks)
    }
}

/// A block type whose weights are `scale·q + offset` per 32-element group (Q4_1, Q5_1, and the
/// K-quants with mins): Σ w·x = scale·Σ q·x + offset·Σ x, with the group sums of x computed once
/// per call, which saves a multiply-add per weight vector.
protocol AffineGroupDecoder {
    static var elements: Int { get }
    static var bytes: Int { get }
    static func affineGroup(_ block: UnsafeRawPointer, _ g: Int) -> (scale: Float, offset: Float, quants: Group)
}

extension Q4_1Groups: AffineGroupDecoder {
    @inline(__always) static func affineGroup(_ b: UnsafeRawPointer, _ g: Int) -> (scale: Float, offset: Float, quants: Group) {
        let qs = b.loadUnaligned(fromByteOffset: 4, as: SIMD16<UInt8>.self)
        let lo = qs & 0x0F, hi = qs &>> 4
        return (loadF16(b), loadF16(b, 2), (floats(lo.lowHalf), floats(lo.highHalf), floats(hi.lowHalf), floats(hi.highHalf)))
    }
}

extension Q5_1Groups: AffineGroupDecoder {
    @inline(__always) static func affineGroup(_ b: UnsafeRawPointer, _ g: Int) -> (scale: Float, offset: Float, quants: Group) {
        let qh = b.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        let qs = b.loadUnaligned(fromByteOffset: 8, as: SIMD16<UInt8>.self)
        let q0 = (qs & 0x0F) | q5HighBits16(qh, 0), q1 = (qs &>> 4) | q5HighBits16(qh, 1)
        return (loadF16(b), loadF16(b, 2), (floats(q0.lowHalf), floats(q0.highHalf), floats(q1.lowHalf), floats(q1.highHalf)))
    }
}

extension Q4_KGroups: AffineGroupDecoder {
    @inline(__always) static func affineGroup(_ b: UnsafeRawPointer, _ g: Int) -> (scale: Float, offset: Float, quants: Group) {
        let (sc, mn) = kScaleMin(b + 4, g)
        let p = b + (16 &+ 32 &* (g &>> 1))
        let q0 = nibbles(p.loadUnaligned(as: SIMD16<UInt8>.self), high: g & 1 == 1)
        let q1 = nibbles(p.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self), high: g & 1 == 1)
        return (loadF16(b) * Float(sc), -(loadF16(b, 2) * Float(mn)),
                (floats(q0.lowHalf), floats(q0.highHalf), floats(q1.lowHalf), floats(q1.highHalf)))
    }
}

extension Q5_KGroups: AffineGroupDecoder {
    @inline(__always) static func affineGroup(_ b: UnsafeRawPointer, _ g: Int) -> (scale: Float, offset: Float, quants: Group) {
        let (sc, mn) = kScaleMin(b + 4, g)
        let p = b + (48 &+ 32 &* (g &>> 1))
        let q0 = nibbles(p.loadUnaligned(as: SIMD16<UInt8>.self), high: g & 1 == 1)
            | bitAsSixteen((b + 16).loadUnaligned(as: SIMD16<UInt8>.self), g)
        let q1 = nibbles(p.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self), high: g & 1 == 1)
            | bitAsSixteen((b + 32).loadUnaligned(as: SIMD16<UInt8>.self), g)
        return (loadF16(b) * Float(sc), -(loadF16(b, 2) * Float(mn)),
                (floats(q0.lowHalf), floats(q0.highHalf), floats(q1.lowHalf), floats(q1.highHalf)))
    }
}

/// Σ_i W[i]·x[i] for an affine type; `groupSums[k]` = Σ x[32k ..< 32k+32].
@inline(__always)
func affineFusedDot<D: AffineGroupDecoder>(_: D.Type, _ row: UnsafeRawPointer, _ x: UnsafePointer<Float>,
                                           groupSums: UnsafePointer<Float>, blocks: Int) -> Float {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
    var offsets: Float = 0
    let groups = D.elements / 32
    var xp = x, sums = groupSums
    for b in 0..<blocks {
        let block = row + b &* D.bytes
        for g in 0..<groups {
            let (d, m, (q0, q1, q2, q3)) = D.affineGroup(block, g)
            var s0 = q0 * vload(xp)
            s0.addProduct(q1, vload(xp + 8))
            var s1 = q2 * vload(xp + 16)
            s1.addProduct(q3, vload(xp + 24))
            let dv = SIMD8<Float>(repeating: d)
            a0.addProduct(dv, s0)
            a1.addProduct(dv, s1)
            offsets += m * sums.pointee
            xp += 32
            sums += 1
        }
    }
    return horizontalSum(a0 + a1) + offsets
}

func affineFusedMatvec<D: AffineGroupDecoder>(_ d: D.Type, _ base: UnsafeRawPointer, rowBytes: Int, blocks: Int,
                                              _ x: UnsafePointer<Float>, groupSums: UnsafePointer<Float>,
                                              _ y: UnsafeMutablePointer<Float>, _ outputs: Range<Int>) {
    for o in outputs {
        y[o] = affineFusedDot(d, base + o &* rowBytes, x, groupSums: groupSums, blocks: blocks)
    }
}

/// Whether the one-row kernel for `type` wants the 32-element group sums of x.
func matvecNeedsGroupSums(_ type: GGMLType) -> Bool {
    switch type {
    case .q4_1, .q5_1, .q4_K, .q5_K: return true
    default: return false
    }
}

/// sums[k] = Σ x[32k ..< 32k+32] for k in 0..<count/32.
func groupSums32(_ x: UnsafePointer<Float>, count: Int, into sums: UnsafeMutablePointer<Float>) {
    for k in 0..<(count / 32) {
        let p = x + 32 &* k
        sums[k] = horizontalSum((vload(p) + vload(p + 8)) + (vload(p + 16) + vload(p + 24)))
    }
}

/// y[o] = W[o]·x for o in `outputs`, one input row.
func fusedMatvec<D: GroupDecoder>(_ d: D.Type, _ base: UnsafeRawPointer, rowBytes: Int, blocks: Int,
                                  _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ outputs: Range<Int>) {
    for o in outputs {
        y[o] = fusedDot(d, base + o &* rowBytes, x, blocks: blocks)
    }
}

/// Which one-row kernels run: the AVX-512 ones in CTillerKernels where the CPU has AVX-512 (F, BW,
/// VL, DQ), else the portable Swift ones below. `TILLER_KERNELS=portable` forces the portable
/// path; tests switch between the two to compare them.
public enum MatvecKernels {
    /// Whether this CPU runs the AVX-512 kernels.
    public static let cpuHasAVX512 = tiller_kernels_avx512() != 0
    nonisolated(unsafe) public static var useAVX512: Bool = cpuHasAVX512
        && ProcessInfo.processInfo.environment["TILLER_KERNELS"] != "portable"
    /// "avx512" or "portable" (AVX2 on x86_64).
    public static var active: String { useAVX512 ? "avx512" : "portable" }

    /// One query's attention in AVX-512 (`tiller_attend_query_avx512`); false when the kernels are
    /// off or the head size has no kernel, and the caller's portable loop runs instead.
    @inline(__always)
    public static func attendQuery(_ q: UnsafePointer<Float>, keys kPre: UnsafePointer<Float>, _ kOwn: UnsafePointer<Float>,
                                   values vPre: UnsafePointer<Float>, _ vOwn: UnsafePointer<Float>, split: Int, kvDim: Int,
                                   headDim: Int, lo: Int, p: Int, scale: Float, scores: UnsafeMutablePointer<Float>,
                                   out: UnsafeMutablePointer<Float>) -> Bool {
        useAVX512 && tiller_attend_query_avx512(q, kPre, kOwn, vPre, vOwn, Int32(split), Int32(kvDim), Int32(headDim),
                                                Int32(lo), Int32(p), scale, scores, out) != 0
    }
}

/// The one-row kernel for the stored type: y[o] = W[o]·x for o in `outputs`. `groupSums` must be
/// given when `matvecNeedsGroupSums(type)`. False when the type has no fused kernel.
func fusedMatvec(_ type: GGMLType, _ base: UnsafeRawPointer, rowBytes: Int, inFeatures: Int,
                 _ x: UnsafePointer<Float>, groupSums: UnsafePointer<Float>?,
                 _ y: UnsafeMutablePointer<Float>, _ outputs: Range<Int>) -> Bool {
    if MatvecKernels.useAVX512, !outputs.isEmpty,
       tiller_matvec_avx512(Int32(type.rawValue), base, rowBytes, Int32(inFeatures), x, groupSums, y,
                            Int32(outputs.lowerBound), Int32(outputs.upperBound)) != 0 {
        return true
    }
    let blocks32 = inFeatures / 32, blocks256 = inFeatures / 256
    switch type {
    case .q8_0: scaledFusedMatvec(Q8_0Groups.self, base, rowBytes: rowBytes, blocks: blocks32, x, y, outputs)
    case .q4_0: scaledFusedMatvec(Q4_0Groups.self, base, rowBytes: rowBytes, blocks: blocks32, x, y, outputs)
    case .q5_0: scaledFusedMatvec(Q5_0Groups.self, base, rowBytes: rowBytes, blocks: blocks32, x, y, outputs)
    case .q6_K: scaledFusedMatvec(Q6_KGroups.self, base, rowBytes: rowBytes, blocks: blocks256, x, y, outputs)
    case .q4_1: affineFusedMatvec(Q4_1Groups.self, base, rowBytes: rowBytes, blocks: blocks32, x, groupSums: groupSums!, y, outputs)
    case .q5_1: affineFusedMatvec(Q5_1Groups.self, base, rowBytes: rowBytes, blocks: blocks32, x, groupSums: groupSums!, y, outputs)
    case .q4_K: affineFusedMatvec(Q4_KGroups.self, base, rowBytes: rowBytes, blocks: blocks256, x, groupSums: groupSums!, y, outputs)
    case .q5_K: affineFusedMatvec(Q5_KGroups.self, base, rowBytes: rowBytes, blocks: blocks256, x, groupSums: groupSums!, y, outputs)
    case .f32 where inFeatures % 32 == 0:
        fusedMatvec(F32Groups.self, base, rowBytes: rowBytes, blocks: blocks32, x, y, outputs)
    case .f16 where inFeatures % 32 == 0:
        fusedMatvec(F16Groups.self, base, rowBytes: rowBytes, blocks: blocks32, x, y, outputs)
    case .bf16 where inFeatures % 32 == 0:
        fusedMatvec(BF16Groups.self, base, rowBytes: rowBytes, blocks: blocks32, x, y, outputs)
    default: return false
    }
    return true
}

/// y[r·yStride + o] = w·x[r] for r in 0..<rows: one dequantized weight row against a few input
/// rows, loading each weight vector once for up to four rows.
func multiRowDot(_ w: UnsafePointer<Float>, count: Int, _ x: UnsafePointer<Float>, xStride: Int, rows: Int,
                 _ y: UnsafeMutablePointer<Float>, yStride: Int) {
    var r = 0
    while r &+ 4 <= rows {
        let x0 = x + r &* xStride, x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var b0 = SIMD8<Float>(), b1 = SIMD8<Float>(), b2 = SIMD8<Float>(), b3 = SIMD8<Float>()
        var i = 0
        while i &+ 16 <= count {
            let w0 = vload(w + i), w1 = vload(w + (i &+ 8))
            a0.addProduct(w0, vload(x0 + i)); b0.addProduct(w1, vload(x0 + (i &+ 8)))
            a1.addProduct(w0, vload(x1 + i)); b1.addProduct(w1, vload(x1 + (i &+ 8)))
            a2.addProduct(w0, vload(x2 + i)); b2.addProduct(w1, vload(x2 + (i &+ 8)))
            a3.addProduct(w0, vload(x3 + i)); b3.addProduct(w1, vload(x3 + (i &+ 8)))
            i &+= 16
        }
        var s0 = horizontalSum(a0 + b0), s1 = horizontalSum(a1 + b1)
        var s2 = horizontalSum(a2 + b2), s3 = horizontalSum(a3 + b3)
        while i < count {
            s0 += w[i] * x0[i]; s1 += w[i] * x1[i]; s2 += w[i] * x2[i]; s3 += w[i] * x3[i]
            i &+= 1
        }
        y[r &* yStride] = s0
        y[(r &+ 1) &* yStride] = s1
        y[(r &+ 2) &* yStride] = s2
        y[(r &+ 3) &* yStride] = s3
        r &+= 4
    }
    while r < rows {
        y[r &* yStride] = dotProduct(w, x + r &* xStride, count: count)
        r &+= 1
    }
}
