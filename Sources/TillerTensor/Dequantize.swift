// Conversion of stored element and block types to Float.
//
// Bit layouts follow ggml's `ggml-quants.c` and gguf-py's `gguf/quants.py`. The arithmetic is the
// one gguf-py does (which transformers uses when it loads a GGUF file), operation for operation and
// without fused multiply-adds, so the results are bitwise equal to it: e.g. Q4_1 is `d*q + m`
// rounded twice, Q4_K is `(d*sc)*q - (dmin*m)`.

/// Whether `dequantizeRow` and `WeightMatrix` can read this type.
public extension GGMLType {
    var isDequantizable: Bool {
        switch self {
        case .f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K: return true
        default: return false
        }
    }
}

public struct UnsupportedTypeError: Error, CustomStringConvertible, Sendable {
    public let tensor: String
    public let type: GGMLType
    public let operation: String
    public init(tensor: String, type: GGMLType, operation: String) {
        self.tensor = tensor
        self.type = type
        self.operation = operation
    }
    public var description: String { "tensor '\(tensor)': \(operation) is not supported for type \(type)" }
}

public struct TensorShapeError: Error, CustomStringConvertible, Sendable {
    public let tensor: String
    public let message: String
    public init(tensor: String, _ message: String) {
        self.tensor = tensor
        self.message = message
    }
    public var description: String { "tensor '\(tensor)': \(message)" }
}

/// Converts `count` consecutive elements of type `type` starting at `src` to Float.
/// `count` must be a multiple of `type.blockSize`, and `type.isDequantizable` must hold.
public func dequantizeRow(_ type: GGMLType, _ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
    precondition(count % type.blockSize == 0, "dequantizeRow: \(count) elements is not a whole number of \(type) blocks")
    let blocks = count / type.blockSize
    let bb = type.blockBytes
    switch type {
    case .f32:
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
    case .f16:
        convertF16(src, count: count, into: dst)
    case .bf16:
        convertBF16(src, count: count, into: dst)
    case .q8_0:
        for b in 0..<blocks { dequantizeQ8_0(src + b &* bb, dst + b &* 32) }
    case .q4_0:
        for b in 0..<blocks { dequantizeQ4_0(src + b &* bb, dst + b &* 32) }
    case .q4_1:
        for b in 0..<blocks { dequantizeQ4_1(src + b &* bb, dst + b &* 32) }
    case .q5_0:
        for b in 0..<blocks { dequantizeQ5_0(src + b &* bb, dst + b &* 32) }
    case .q5_1:
        for b in 0..<blocks { dequantizeQ5_1(src + b &* bb, dst + b &* 32) }
    case .q4_K:
        for b in 0..<blocks { dequantizeQ4_K(src + b &* bb, dst + b &* 256) }
    case .q5_K:
        for b in 0..<blocks { dequantizeQ5_K(src + b &* bb, dst + b &* 256) }
    case .q6_K:
        for b in 0..<blocks { dequantizeQ6_K(src + b &* bb, dst + b &* 256) }
    default:
        preconditionFailure("dequantizeRow: type \(type) is not supported")
    }
}

/// All elements of `t` as Float, in storage order.
public func dequantize(_ t: RawTensor) throws -> [Float] {
    guard t.type.isDequantizable else {
        throw UnsupportedTypeError(tensor: t.name, type: t.type, operation: "dequantization")
    }
    let count = t.elementCount
    guard let bytes = t.type.byteCount(elements: count) else {
        throw TensorShapeError(tensor: t.name, "\(count) elements is not a whole number of \(t.type) blocks of \(t.type.blockSize)")
    }
    guard bytes <= t.data.count else {
        throw TensorShapeError(tensor: t.name, "shape \(t.shape) of \(t.type) needs \(bytes) bytes, data has \(t.data.count)")
    }
    if count == 0 { return [] }
    return [Float](unsafeUninitializedCapacity: count) { out, initialized in
        dequantizeRow(t.type, t.data.baseAddress!, count: count, into: out.baseAddress!)
        initialized = count
    }
}

// MARK: - Element helpers (shared with the matmul kernels)

@inline(__always) func loadF16(_ p: UnsafeRawPointer, _ offset: Int = 0) -> Float {
    Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

// Element-wise loops: LLVM turns these into vpmovzxbd/vpmovsxbd + vcvtdq2ps, whereas the
// stdlib's generic SIMD conversions stay out-of-line calls.
@inline(__always) func floats(_ v: SIMD8<UInt8>) -> SIMD8<Float> {
    var f = SIMD8<Float>()
    for i in 0..<8 { f[i] = Float(v[i]) }
    return f
}

@inline(__always) func floats(_ v: SIMD8<Int8>) -> SIMD8<Float> {
    var f = SIMD8<Float>()
    for i in 0..<8 { f[i] = Float(v[i]) }
    return f
}

@inline(__always) func floats(_ v: SIMD8<UInt16>) -> SIMD8<Float> {
    var f = SIMD8<Float>()
    for i in 0..<8 { f[i] = Float(Float16(bitPattern: v[i])) }
    return f
}

@inline(__always) func bf16Floats(_ v: SIMD8<UInt16>) -> SIMD8<Float> {
    var f = SIMD8<Float>()
    for i in 0..<8 { f[i] = Float(bitPattern: UInt32(v[i]) &<< 16) }
    return f
}


// Byte vectors are only ever shifted by constants: a shift by a run-time amount is not
// vectorized (LLVM falls back to one lane at a time, ~50× slower), so the K-quant code picks
// among constant shifts instead.
//
// The helpers are generic over the vector width, and MatvecKernels.swift calls them too: debug
// builds compile file by file, where a caller in another file cannot specialise them (a generic
// SIMD operator loops lane by lane through the runtime, ~80× slower). `@_specialize` emits the
// widths in use here, and callers elsewhere in the module call those directly.

/// The low (`high == false`) or high nibbles of `v`.
@_specialize(where V == SIMD8<UInt8>)
@_specialize(where V == SIMD16<UInt8>)
@inline(__always) func nibbles<V: SIMD>(_ v: V, high: Bool) -> V where V.Scalar == UInt8 {
    high ? v &>> 4 : v & 0x0F
}

/// The 2-bit field `s` (bits 2s, 2s+1) of each byte of `v`.
@_specialize(where V == SIMD8<UInt8>)
@_specialize(where V == SIMD16<UInt8>)
@inline(__always) func twoBitField<V: SIMD>(_ v: V, _ s: Int) -> V where V.Scalar == UInt8 {
    switch s {
    case 0: return v & 3
    case 1: return (v &>> 2) & 3
    case 2: return (v &>> 4) & 3
    default: return v &>> 6
    }
}

/// 16 where bit `j` of a byte of `v` is set, else 0.
@_specialize(where V == SIMD8<UInt8>)
@_specialize(where V == SIMD16<UInt8>)
@inline(__always) func bitAsSixteen<V: SIMD>(_ v: V, _ j: Int) -> V where V.Scalar == UInt8 {
    let mask = V(repeating: UInt8(1) &<< UInt8(j))
    return V(repeating: 0).replacing(with: 16, where: (v & mask) .== mask)
}

// MARK: - Plain element types

func convertF16(_ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
    var i = 0
    while i &+ 8 <= count {
        vstore(floats(src.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt16>.self)), dst + i)
        i &+= 8
    }
    while i < count {
        dst[i] = loadF16(src, i &* 2)
        i &+= 1
    }
}

func convertBF16(_ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
    var i = 0
    while i &+ 8 <= count {
        vstore(bf16Floats(src.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt16>.self)), dst + i)
        i &+= 8
    }
    while i < count {
        dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)) &<< 16)
        i &+= 1
    }
}

// MARK: - 32-element blocks

// Q8_0: f16 d, 32 × int8 q; x = q * d.
@inline(__always) func dequantizeQ8_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = loadF16(b)
    for k in 0..<4 {
        let q = b.loadUnaligned(fromByteOffset: 2 &+ 8 &* k, as: SIMD8<Int8>.self)
        vstore(floats(q) * d, y + 8 &* k)
    }
}

// Q4_0: f16 d, 16 bytes; element i < 16 is the low nibble of byte i, element 16+i the high one.
// x = d * (q - 8).
@inline(__always) func dequantizeQ4_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = loadF16(b)
    let qs = b.loadUnaligned(fromByteOffset: 2, as: SIMD16<UInt8>.self)
    let lo = qs & 0x0F, hi = qs &>> 4
    vstore(d * (floats(lo.lowHalf) - 8), y)
    vstore(d * (floats(lo.highHalf) - 8), y + 8)
    vstore(d * (floats(hi.lowHalf) - 8), y + 16)
    vstore(d * (floats(hi.highHalf) - 8), y + 24)
}

// Q4_1: f16 d, f16 m, 16 bytes of nibbles as Q4_0; x = d*q + m.
@inline(__always) func dequantizeQ4_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = loadF16(b), m = loadF16(b, 2)
    let qs = b.loadUnaligned(fromByteOffset: 4, as: SIMD16<UInt8>.self)
    let lo = qs & 0x0F, hi = qs &>> 4
    vstore(d * floats(lo.lowHalf) + m, y)
    vstore(d * floats(lo.highHalf) + m, y + 8)
    vstore(d * floats(hi.lowHalf) + m, y + 16)
    vstore(d * floats(hi.highHalf) + m, y + 24)
}

/// The fifth bits of a Q5 block (bit i of the little-endian u32 belongs to element i) as
/// 0/16 values for elements 8k ..< 8k+8.
@inline(__always) func q5HighBits(_ qh: UInt32, _ k: Int) -> SIMD8<UInt8> {
    let bits = UInt8(truncatingIfNeeded: qh &>> UInt32(8 &* k))
    let lanes = SIMD8<UInt8>(1, 2, 4, 8, 16, 32, 64, 128)
    let set = (SIMD8<UInt8>(repeating: bits) & lanes) .== lanes
    return SIMD8<UInt8>(repeating: 0).replacing(with: 16, where: set)
}

// Q5_0: f16 d, u32 qh (fifth bits), 16 bytes of low nibbles as Q4_0; x = d * (q - 16).
@inline(__always) func dequantizeQ5_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = loadF16(b)
    let qh = b.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
    let qs = b.loadUnaligned(fromByteOffset: 6, as: SIMD16<UInt8>.self)
    let lo = qs & 0x0F, hi = qs &>> 4
    vstore(d * (floats(lo.lowHalf | q5HighBits(qh, 0)) - 16), y)
    vstore(d * (floats(lo.highHalf | q5HighBits(qh, 1)) - 16), y + 8)
    vstore(d * (floats(hi.lowHalf | q5HighBits(qh, 2)) - 16), y + 16)
    vstore(d * (floats(hi.highHalf | q5HighBits(qh, 3)) - 16), y + 24)
}

// Q5_1: f16 d, f16 m, u32 qh, 16 bytes; x = d*q + m.
@inline(__always) func dequantizeQ5_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = loadF16(b), m = loadF16(b, 2)
    let qh = b.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
    let qs = b.loadUnaligned(fromByteOffset: 8, as: SIMD16<UInt8>.self)
    let lo = qs & 0x0F, hi = qs &>> 4
    vstore(d * floats(lo.lowHalf | q5HighBits(qh, 0)) + m, y)
    vstore(d * floats(lo.highHalf | q5HighBits(qh, 1)) + m, y + 8)
    vstore(d * floats(hi.lowHalf | q5HighBits(qh, 2)) + m, y + 16)
    vstore(d * floats(hi.highHalf | q5HighBits(qh, 3)) + m, y + 24)
}

// MARK: - 256-element K blocks

/// Q4_K/Q5_K pack eight 6-bit scales and eight 6-bit mins in 12 bytes:
/// bytes 0–3 hold scales 0–3 (low 6 bits) and the top bits of scales 4–7, bytes 4–7 the same for
/// mins, bytes 8–11 the low nibbles of scales 4–7 (low half) and mins 4–7 (high half).
@inline(__always) func kScaleMin(_ s: UnsafeRawPointer, _ j: Int) -> (scale: UInt8, min: UInt8) {
    let b = s.assumingMemoryBound(to: UInt8.self)
    if j < 4 {
        return (b[j] & 63, b[j &+ 4] & 63)
    }
    let scale = (b[j &+ 4] & 0x0F) | ((b[j &- 4] &>> 6) &<< 4)
    let min = (b[j &+ 4] &>> 4) | ((b[j] &>> 6) &<< 4)
    return (scale, min)
}

// Q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles. Sub-block j (32 elements) reads
// bytes 32*(j/2) ..< +32, low nibbles for even j and high for odd; x = (d*sc)*q - (dmin*m).
@inline(__always) func dequantizeQ4_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = loadF16(b), dmin = loadF16(b, 2)
    let qs = b + 16
    for j in 0..<8 {
        let (sc, m) = kScaleMin(b + 4, j)
        let dl = d * Float(sc), ml = dmin * Float(m)
        let chunk = qs + 32 &* (j &>> 1)
        for k in 0..<4 {
            let q = nibbles(chunk.loadUnaligned(fromByteOffset: 8 &* k, as: SIMD8<UInt8>.self), high: j & 1 == 1)
            vstore(dl * floats(q) - ml, y + (32 &* j &+ 8 &* k))
        }
    }
}

// Q5_K: as Q4_K with 32 bytes of fifth bits after the scales: bit j of byte i belongs to
// element i of sub-block j.
@inline(__always) func dequantizeQ5_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = loadF16(b), dmin = loadF16(b, 2)
    let qh = b + 16
    let qs = b + 48
    for j in 0..<8 {
        let (sc, m) = kScaleMin(b + 4, j)
        let dl = d * Float(sc), ml = dmin * Float(m)
        let chunk = qs + 32 &* (j &>> 1)
        for k in 0..<4 {
            let lo = nibbles(chunk.loadUnaligned(fromByteOffset: 8 &* k, as: SIMD8<UInt8>.self), high: j & 1 == 1)
            let hi = bitAsSixteen(qh.loadUnaligned(fromByteOffset: 8 &* k, as: SIMD8<UInt8>.self), j)
            vstore(dl * floats(lo | hi) - ml, y + (32 &* j &+ 8 &* k))
        }
    }
}

// Q6_K: 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d. Element e of the block: half h = e/128,
// ql nibble (e%128)/64 of byte 64h + e%64, qh 2-bit field (e%128)/32 of byte 32h + e%32;
// x = (d*scale[e/16]) * (q - 32).
@inline(__always) func dequantizeQ6_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = loadF16(b, 208)
    let scales = (b + 192).assumingMemoryBound(to: Int8.self)
    for h in 0..<2 {
        let ql = b + 64 &* h
        let qh = b + (128 &+ 32 &* h)
        for g in 0..<8 {  // 16-element groups within the half
            let e0 = 16 &* g            // offset inside the half
            let dl = d * Float(scales[8 &* h &+ g])
            for k in 0..<2 {
                let e = e0 &+ 8 &* k
                let lo = nibbles(ql.loadUnaligned(fromByteOffset: e & 63, as: SIMD8<UInt8>.self), high: e & 64 != 0)
                let hi = twoBitField(qh.loadUnaligned(fromByteOffset: e & 31, as: SIMD8<UInt8>.self), e &>> 5) &<< 4
                vstore(dl * (floats(lo | hi) - 32), y + (128 &* h &+ e))
            }
        }
    }
}
