import Foundation

/// FNV-1a 64: the fingerprint Tiller stores to tell whether data is the same as before (a
/// vector in the results database, a trait's extraction data, the data file of a resumed
/// projection). Stable across runs and platforms; not a cryptographic hash.
public struct Fingerprint: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func add<S: Sequence>(bytes: S) where S.Element == UInt8 {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x100_0000_01b3 }
    }

    /// The float's four bytes, least significant first.
    public mutating func add(_ floats: [Float]) {
        for x in floats {
            var b = x.bitPattern
            for _ in 0..<4 { value = (value ^ UInt64(b & 0xff)) &* 0x100_0000_01b3; b >>= 8 }
        }
    }

    /// Sixteen lower-case hex digits.
    public var hex: String { String(format: "%016llx", value) }
}
