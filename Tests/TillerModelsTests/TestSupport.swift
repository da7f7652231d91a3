import Foundation
import TillerFormats
import TillerTensor
import XCTest
@testable import TillerModels
@_exported import TillerTestSupport

// Shared helpers: fixture locations, a reader for the fixture safetensors files, error metrics.

enum Fixtures {
    static var directory: String {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path
    }
    static func path(_ name: String) -> String { directory + "/" + name }
}

/// The three prompts (`tokens.0…2`) of a tiny checkpoint's fixture.
func fixturePrompts(_ name: String) throws -> [[Int]] {
    let f = try FixtureFile(Fixtures.path("\(name).expected.safetensors"))
    return try (0..<3).map { try f.ints("tokens.\($0)") }
}

/// Minimal safetensors reader for the fixture files (F32 and I32 tensors).
final class FixtureFile {
    let path: String
    let data: Data
    let header: [String: Any]
    let headerSize: Int

    init(_ path: String) throws {
        self.path = path
        data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        headerSize = Int(n)
        header = try JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< 8 + headerSize)) as! [String: Any]
    }

    var metadata: [String: Any] {
        guard let m = header["__metadata__"] as? [String: String], let s = m["tiller"],
              let obj = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] else { return [:] }
        return obj
    }

    private func entry(_ name: String) throws -> (dtype: String, shape: [Int], bytes: Data) {
        guard let e = header[name] as? [String: Any], let dtype = e["dtype"] as? String,
              let shape = e["shape"] as? [Int], let off = e["data_offsets"] as? [Int] else {
            throw ModelError("\(path): no tensor \(name)")
        }
        let base = 8 + headerSize
        return (dtype, shape, data.subdata(in: base + off[0] ..< base + off[1]))
    }

    func floats(_ name: String) throws -> [Float] {
        let e = try entry(name)
        guard e.dtype == "F32" else { throw ModelError("\(path): \(name) is \(e.dtype), expected F32") }
        return e.bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func ints(_ name: String) throws -> [Int] {
        let e = try entry(name)
        guard e.dtype == "I32" else { throw ModelError("\(path): \(name) is \(e.dtype), expected I32") }
        return e.bytes.withUnsafeBytes { $0.bindMemory(to: Int32.self).map { Int($0) } }
    }

    func shape(_ name: String) throws -> [Int] { try entry(name).shape }
    func has(_ name: String) -> Bool { header[name] != nil }
}

/// max|a−b| / max|b|
func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    var num: Float = 0, den: Float = 0
    for i in 0..<a.count {
        num = max(num, abs(a[i] - b[i]))
        den = max(den, abs(b[i]))
    }
    return den > 0 ? num / den : num
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a[i] - b[i])) }
    return m
}

/// log softmax(row)[index] in fp64.
func logSoftmax(_ row: ArraySlice<Float>, at index: Int) -> Double {
    Double(row[row.startIndex + index]) - logSumExp(row)
}

func argmax(_ v: ArraySlice<Float>) -> Int {
    var best = v.startIndex
    for i in v.indices where v[i] > v[best] { best = i }
    return best - v.startIndex
}

