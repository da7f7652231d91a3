import Foundation
import XCTest
import TillerTensor

/// Reference cases written by tools/reference/dequant_fixtures.py (gguf-py's dequantize).
struct DequantCase: Decodable {
    let name: String
    let type: String
    let count: Int
    let source: String
}

func fixturesDirectory() throws -> URL {
    guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
        throw FileError(path: "Fixtures", "test resources are missing from the bundle")
    }
    return url
}

func ggmlType(named name: String) -> GGMLType? {
    GGMLType.allCases.first { $0.description == name }
}

final class DequantizeTests: XCTestCase {
    func loadCases() throws -> (URL, [DequantCase]) {
        let dir = try fixturesDirectory().appendingPathComponent("dequant")
        let data = try Data(contentsOf: dir.appendingPathComponent("manifest.json"))
        return (dir, try JSONDecoder().decode([DequantCase].self, from: data))
    }

    func testFixturesMatchGGUFPyBitwise() throws {
        let (dir, cases) = try loadCases()
        XCTAssertGreaterThanOrEqual(cases.count, 20)
        var typesSeen = Set<GGMLType>()
        for c in cases {
            let type = try XCTUnwrap(ggmlType(named: c.type), "\(c.name): unknown type \(c.type)")
            typesSeen.insert(type)
            let raw = try Data(contentsOf: dir.appendingPathComponent(c.name + ".bin"))
            let expectedBytes = try Data(contentsOf: dir.appendingPathComponent(c.name + ".f32"))
            XCTAssertEqual(raw.count, type.byteCount(elements: c.count), c.name)
            XCTAssertEqual(expectedBytes.count, c.count * 4, c.name)
            let expected = expectedBytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }

            var got = [Float](repeating: .nan, count: c.count)
            raw.withUnsafeBytes { src in
                got.withUnsafeMutableBufferPointer { dst in
                    dequantizeRow(type, src.baseAddress!, count: c.count, into: dst.baseAddress!)
                }
            }
            var mismatches = 0
            for i in 0..<c.count where got[i].bitPattern != expected[i].bitPattern {
                if mismatches < 5 {
                    XCTFail("\(c.name) [\(c.source)] element \(i): got \(got[i]), expected \(expected[i])")
                }
                mismatches += 1
            }
            XCTAssertEqual(mismatches, 0, "\(c.name): \(mismatches) of \(c.count) elements differ")

            // The whole-tensor entry point agrees with the row one.
            let tensor = raw.withUnsafeBytes { src -> [Float] in
                let owned = OwnedBytes(count: src.count)
                owned.pointer.copyMemory(from: src.baseAddress!, byteCount: src.count)
                let t = RawTensor(name: c.name, type: type, shape: [c.count], data: owned.buffer, owner: owned)
                return (try? dequantize(t)) ?? []
            }
            XCTAssertEqual(tensor.map(\.bitPattern), expected.map(\.bitPattern), c.name)
        }
        let required: Set<GGMLType> = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]
        XCTAssertEqual(required.subtracting(typesSeen), [], "fixture types missing")
    }

    func testUnsupportedTypeErrorNamesTheTensor() {
        let owned = OwnedBytes(count: 84)
        let t = RawTensor(name: "blk.3.ffn_up.weight", type: .q2_K, shape: [256], data: owned.buffer, owner: owned)
        XCTAssertThrowsError(try dequantize(t)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("blk.3.ffn_up.weight"), text)
            XCTAssertTrue(text.contains("Q2_K"), text)
        }
    }

    func testShortDataIsRejected() {
        let owned = OwnedBytes(count: 33)
        let t = RawTensor(name: "short", type: .q8_0, shape: [2, 32], data: owned.buffer, owner: owned)
        XCTAssertThrowsError(try dequantize(t)) { error in
            XCTAssertTrue("\(error)".contains("short"), "\(error)")
        }
    }
}
