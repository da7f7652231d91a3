import Foundation
import XCTest
import TillerTensor
@testable import TillerFormats
import TillerTestSupport

enum Fixtures {
    static var directory: URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    }
    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }
}

/// Path of a cached model (TillerTestSupport's lookup: a missing model fails, never skips).
func cachedModel(_ file: String, line: UInt = #line) throws -> String {
    try realModelPath(file, line: line)
}

func temporaryDirectory() throws -> URL {
    // Memory-backed when available: the fuzz tests write thousands of small files.
    let shm = URL(fileURLWithPath: "/dev/shm")
    let base = FileManager.default.isWritableFile(atPath: shm.path) ? shm : FileManager.default.temporaryDirectory
    let url = base.appendingPathComponent("tiller-formats-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func floats(_ t: RawTensor) -> [Float] {
    switch t.type {
    case .f32: return (0..<t.elementCount).map { t.data.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
    case .f16: return (0..<t.elementCount).map { Float(Float16(bitPattern: t.data.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
    case .bf16: return (0..<t.elementCount).map { Float(bitPattern: UInt32(t.data.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16) }
    default: fatalError("floats(): \(t.type) not handled in tests")
    }
}

/// Q4_1 rows, decoded independently of TillerTensor so this test checks only the row mapping:
/// block = f16 scale d, f16 minimum m, 16 bytes of nibbles (low nibbles first, then high).
func dequantizeQ4_1Row(_ t: RawTensor, row: Int) -> [Float] {
    precondition(t.type == .q4_1)
    let cols = t.shape.last!
    let rowBytes = cols / 32 * 20
    var out: [Float] = []
    for b in 0..<(cols / 32) {
        let base = row * rowBytes + b * 20
        let d = Float(Float16(bitPattern: t.data.loadUnaligned(fromByteOffset: base, as: UInt16.self)))
        let m = Float(Float16(bitPattern: t.data.loadUnaligned(fromByteOffset: base + 2, as: UInt16.self)))
        var block = [Float](repeating: 0, count: 32)
        for j in 0..<16 {
            let q = t.data[base + 4 + j]
            block[j] = Float(q & 0xF) * d + m
            block[j + 16] = Float(q >> 4) * d + m
        }
        out += block
    }
    return out
}

/// Float32 values against reference values read from JSON. Foundation's JSON parser on Linux may
/// be off in the last bits of a double, so equality is checked to a relative 1e-6.
func assertClose(_ got: [Float], _ expected: [Double], _ what: String, tolerance: Double = 1e-6,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.count, expected.count, "\(what): count", file: file, line: line)
    var worst = 0.0, at = -1
    for (i, (g, e)) in zip(got, expected).enumerated() {
        let err = abs(Double(g) - e) / max(1, abs(e))
        if err > worst { worst = err; at = i }
    }
    XCTAssertLessThanOrEqual(worst, tolerance, "\(what): element \(at) differs (got \(at >= 0 ? Double(got[at]) : 0), expected \(at >= 0 ? expected[at] : 0))", file: file, line: line)
}
