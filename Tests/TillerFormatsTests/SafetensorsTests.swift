import Foundation
import XCTest
import TillerTensor
@testable import TillerFormats

final class SafetensorsTests: XCTestCase {
    /// A file written by the safetensors library reads back with the library's values.
    func testReadsLibraryWrittenFile() throws {
        let file = try SafetensorsFile(path: Fixtures.directory.appendingPathComponent("reference.safetensors").path)
        let ref = try Fixtures.json("safetensors_reference.json")
        XCTAssertEqual(file.metadata, ref["metadata"] as! [String: String])
        let tensors = ref["tensors"] as! [String: [String: Any]]
        XCTAssertEqual(Set(file.names), Set(tensors.keys))
        for (name, t) in tensors {
            let info = try XCTUnwrap(file.info(name))
            XCTAssertEqual(info.shape, t["shape"] as! [Int], name)
            let values = t["values"] as! [NSNumber]
            switch t["dtype"] as! String {
            case "float32", "float16", "bfloat16", "float64":
                assertClose(try file.floats(name), values.map(\.doubleValue), name)
            case "int32":
                XCTAssertEqual(try file.int32s(name), values.map { Int32($0.int64Value) }, name)
            case "int64":
                XCTAssertThrowsError(try file.int32s(name)) // 1 << 40 does not fit
                let raw = try file.tensor(name)
                XCTAssertEqual(raw.type, .i64)
                XCTAssertEqual((0..<3).map { raw.data.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) },
                               values.map(\.int64Value))
            case "uint8":
                XCTAssertEqual(Array(try file.bytes(name)), values.map { UInt8($0.intValue) })
                XCTAssertThrowsError(try file.tensor(name)) { XCTAssertTrue("\($0)".contains(name)) }
            default:
                XCTFail("unexpected dtype in fixture: \(t["dtype"]!)")
            }
        }
        let bf = try file.tensor("c_bf16")
        XCTAssertEqual(bf.type, .bf16)
        XCTAssertEqual(bf.shape, [4])
        XCTAssertEqual(try file.tensor("b_f16").type, .f16)
        XCTAssertThrowsError(try file.floats("d_i32"))
        XCTAssertThrowsError(try file.floats("nope")) { XCTAssertTrue("\($0)".contains("nope")) }
    }

    func testWriterRoundTrip() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("out.safetensors").path
        var w = SafetensorsWriter(metadata: ["kind": "activations", "quote\"d": "line\nbreak\u{1}"])
        let values: [Float] = [0, 1.5, -2.25, 1e-3, 3.4e38, -0.0]
        try w.add("layer.3", floats: values, shape: [2, 3])
        try w.add("half", floats: values, shape: [6], dtype: .f16)
        try w.add("brain", floats: values, shape: [3, 2], dtype: .bf16)
        try w.add("ids", int32s: [1, -2, 3], shape: [3])
        try w.add("empty", floats: [], shape: [0, 5])
        XCTAssertThrowsError(try w.add("ids", int32s: [1], shape: [1])) // duplicate
        XCTAssertThrowsError(try w.add("bad", floats: [1, 2], shape: [3]))
        try w.write(to: path)

        let f = try SafetensorsFile(path: path)
        XCTAssertEqual(f.metadata, w.metadata)
        XCTAssertEqual(try f.floats("layer.3"), values)
        XCTAssertEqual(f.info("layer.3")?.shape, [2, 3])
        XCTAssertEqual(try f.floats("half"), values.map { Float(Float16($0)) })
        // torch: tensor([0, 1.5, -2.25, 1e-3, 3.4e38, -0.0]).bfloat16().float()
        XCTAssertEqual(try f.floats("brain"), [0, 1.5, -2.25, 0.00099945068359375, .infinity, -0.0])
        XCTAssertEqual(try f.int32s("ids"), [1, -2, 3])
        XCTAssertEqual(try f.floats("empty"), [])
        // Every tensor starts at a multiple of its element size within an 8-aligned data section.
        XCTAssertEqual(f.dataOffset % 8, 0)
        for info in f.tensorInfos { XCTAssertEqual(info.begin % info.dtype.byteSize, 0, info.name) }

        // Rewriting replaces the file whole; no temporary file is left behind.
        var w2 = SafetensorsWriter()
        try w2.add("x", floats: [7], shape: [1])
        try w2.write(to: path)
        XCTAssertEqual(try SafetensorsFile(path: path).names, ["x"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.safetensors"])

        // A write that cannot happen leaves the old file intact.
        XCTAssertThrowsError(try w.write(to: dir.appendingPathComponent("missing-dir/out.safetensors").path))
        XCTAssertEqual(try SafetensorsFile(path: path).floats("x"), [7])
    }

    func testBF16RoundsToNearestEven() {
        XCTAssertEqual(floatToBF16(1.0), 0x3F80)
        XCTAssertEqual(floatToBF16(Float(bitPattern: 0x3F80_8000)), 0x3F80) // tie → even
        XCTAssertEqual(floatToBF16(Float(bitPattern: 0x3F81_8000)), 0x3F82) // tie → even
        XCTAssertEqual(floatToBF16(Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertTrue(Float(bitPattern: UInt32(floatToBF16(.nan)) << 16).isNaN)
    }

    func testShardedCheckpoint() throws {
        let dir = Fixtures.directory.appendingPathComponent("tiny-llama-sharded").path
        let ckpt = try SafetensorsCheckpoint(directory: dir)
        XCTAssertEqual(ckpt.files.count, 12)
        XCTAssertEqual(ckpt.names.count, 2 * 9 + 3) // 9 per layer, embed, norm, lm_head
        XCTAssertNotNil(try ckpt.tensor("lm_head.weight"))
        XCTAssertNil(try ckpt.tensor("model.layers.2.mlp.up_proj.weight"))
    }
}
