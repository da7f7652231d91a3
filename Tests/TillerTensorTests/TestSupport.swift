import Foundation
import TillerTensor

/// Deterministic generator for test data (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Byte offsets of the f16 scale fields inside one block, and whether each may be negative.
let f16ScaleFields: [GGMLType: [(offset: Int, signed: Bool)]] = [
    .q4_0: [(0, false)], .q4_1: [(0, false), (2, true)], .q5_0: [(0, false)], .q5_1: [(0, false), (2, true)],
    .q8_0: [(0, false)], .q4_K: [(0, false), (2, false)], .q5_K: [(0, false), (2, false)], .q6_K: [(208, false)],
]

/// A random tensor of `type` whose values are sane: random quant bits, scales in [1e-3, 0.1],
/// plain types drawn from a normal-ish distribution.
func randomTensor(_ type: GGMLType, rows: Int, cols: Int, seed: UInt64, name: String = "random") -> RawTensor {
    var rng = SeededGenerator(seed: seed)
    let bytes = type.byteCount(elements: rows * cols)!
    let owned = OwnedBytes(count: bytes)
    let p = owned.pointer
    func gaussian() -> Float {
        Float((0..<4).map { _ in Double.random(in: -1...1, using: &rng) }.reduce(0, +) * 0.5)
    }
    switch type {
    case .f32:
        for i in 0..<(rows * cols) { p.storeBytes(of: gaussian(), toByteOffset: i * 4, as: Float.self) }
    case .f16:
        for i in 0..<(rows * cols) { p.storeBytes(of: Float16(gaussian()).bitPattern, toByteOffset: i * 2, as: UInt16.self) }
    case .bf16:
        for i in 0..<(rows * cols) {
            p.storeBytes(of: UInt16(gaussian().bitPattern >> 16), toByteOffset: i * 2, as: UInt16.self)
        }
    default:
        for i in 0..<bytes { p.storeBytes(of: UInt8.random(in: 0...255, using: &rng), toByteOffset: i, as: UInt8.self) }
        let fields = f16ScaleFields[type]!
        for block in 0..<(bytes / type.blockBytes) {
            for field in fields {
                var v = Float(exp(Double.random(in: log(1e-3)...log(0.1), using: &rng)))
                if field.signed, Bool.random(using: &rng) { v = -v }
                p.storeBytes(of: Float16(v).bitPattern, toByteOffset: block * type.blockBytes + field.offset, as: UInt16.self)
            }
        }
    }
    return RawTensor(name: name, type: type, shape: [rows, cols], data: owned.buffer, owner: owned)
}

func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var rng = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float.random(in: -1...1, using: &rng) }
}
