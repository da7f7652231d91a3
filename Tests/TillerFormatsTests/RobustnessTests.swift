import Foundation
import XCTest
import TillerTensor
@testable import TillerFormats

/// Little-endian byte builder for hand-made hostile files.
struct Bytes {
    var b: [UInt8] = []
    mutating func u8(_ v: UInt8) { b.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
    mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); b += Array(s.utf8) }
    mutating func pad(_ a: Int) { while b.count % a != 0 { b.append(0) } }
}

/// SplitMix64: a small seeded generator so failures reproduce.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Fuzz budget: 8000 mutations or 15 s per format by default; for a long local run set
/// TILLER_FUZZ_ITERATIONS (no time limit then) and optionally TILLER_FUZZ_SEED.
private let fuzzIterations = ProcessInfo.processInfo.environment["TILLER_FUZZ_ITERATIONS"].flatMap { Int($0) }
private let fuzzSeed = ProcessInfo.processInfo.environment["TILLER_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0
private let fuzzSeconds: TimeInterval = fuzzIterations == nil ? 15 : .infinity

final class RobustnessTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = dir.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Opens a GGUF as a model and touches every tensor; returns the error, if any.
    private func openGGUF(_ path: String) -> Error? {
        do {
            let f = try GGUFFile(path: path)
            for info in f.tensorInfos { _ = try f.tensor(info.name) }
            let source = try GGUFWeightSource(gguf: f)
            for name in source.names { _ = try source.tensor(name) }
            return nil
        } catch { return error }
    }

    private func openSafetensors(_ path: String) -> Error? {
        do {
            let f = try SafetensorsFile(path: path)
            for info in f.tensorInfos {
                _ = try f.bytes(info.name)
                if info.dtype.ggmlType != nil { _ = try f.tensor(info.name) }
                if [.f32, .f16, .bf16, .f64].contains(info.dtype) { _ = try f.floats(info.name) }
                if info.dtype == .i32 { _ = try f.int32s(info.name) }
            }
            return nil
        } catch { return error }
    }

    private func assertNamesFile(_ error: Error?, _ path: String, mentions: [String] = [],
                                 file: StaticString = #filePath, line: UInt = #line) {
        guard let error else { return XCTFail("expected an error for \(path)", file: file, line: line) }
        let text = "\(error)"
        XCTAssertTrue(text.contains(path), "error does not name the file: \(text)", file: file, line: line)
        for m in mentions { XCTAssertTrue(text.contains(m), "error does not mention \(m): \(text)", file: file, line: line) }
    }

    // MARK: GGUF

    func testGGUFTruncatedAnywhereIsAnError() throws {
        let good = try TinyGGUF(layers: 1, vocab: 4).writer().serialized()
        let goodPath = try write(good, "good.gguf")
        XCTAssertNil(openGGUF(goodPath))
        let f = try GGUFFile(path: goodPath)
        let dataEnd = f.dataOffset + f.tensorInfos.map { $0.offset + $0.byteCount }.max()!
        var cuts = Array(0..<f.dataOffset)                       // every byte of the header
        cuts += stride(from: f.dataOffset, to: dataEnd, by: 61)  // and across the data
        for cut in cuts {
            let path = try write(Array(good[..<cut]), "cut.gguf")
            let error = openGGUF(path)
            assertNamesFile(error, path)
            if cut >= f.dataOffset { assertNamesFile(error, path, mentions: ["tensor ", "truncated"]) }
        }
    }

    /// A minimal GGUF with one F32 tensor, with hooks to corrupt each field.
    private func handMade(tensorCount: UInt64 = 1, kvCount: UInt64 = 1, key: String = "general.architecture",
                          valueType: UInt32 = 8, value: (inout Bytes) -> Void = { $0.str("llama") },
                          nDims: UInt32 = 1, dims: [UInt64] = [4], type: UInt32 = 0, offset: UInt64 = 0,
                          second: (name: String, offset: UInt64)? = nil, dataBytes: Int = 32) -> [UInt8] {
        var b = Bytes()
        b.u32(0x4655_4747); b.u32(3); b.u64(tensorCount); b.u64(kvCount)
        b.str(key); b.u32(valueType); value(&b)
        b.str("w"); b.u32(nDims); for d in dims { b.u64(d) }; b.u32(type); b.u64(offset)
        if let s = second { b.str(s.name); b.u32(1); b.u64(4); b.u32(0); b.u64(s.offset) }
        b.pad(32)
        b.b += [UInt8](repeating: 0, count: dataBytes)
        return b.b
    }

    func testGGUFHostileHeaders() throws {
        XCTAssertEqual(try GGUFFile(path: write(handMade(), "ok.gguf")).info("w")?.shape, [4])
        let cases: [(String, [UInt8], [String])] = [
            ("magic", Array("GGUF".utf8.reversed()) + [UInt8](repeating: 0, count: 60), ["not a GGUF"]),
            ("tensor count", handMade(tensorCount: 1 << 62), ["tensor_count"]),
            ("kv count", handMade(kvCount: UInt64.max), ["metadata_kv_count"]),
            ("key length", { var b = handMade(); b.replaceSubrange(24..<32, with: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]); return b }(), ["length of metadata key"]),
            ("string value length", handMade(value: { $0.u64(1 << 60) }), ["general.architecture"]),
            ("array length", handMade(valueType: 9, value: { $0.u32(4); $0.u64(1 << 61) }), ["array length of general.architecture"]),
            ("nested arrays", handMade(valueType: 9, value: { b in for _ in 0..<6 { b.u32(9); b.u64(1) }; b.u32(4); b.u64(1); b.u32(0) }), ["nested too deeply"]),
            ("bool", handMade(valueType: 7, value: { $0.u8(2) }), ["bool value 2"]),
            ("value type", handMade(valueType: 13, value: { _ in }), ["unknown metadata value type 13"]),
            ("n_dims 0", handMade(nDims: 0, dims: []), ["tensor w", "dimensions"]),
            ("n_dims 5", handMade(nDims: 5, dims: [1, 1, 1, 1, 4]), ["tensor w", "dimensions"]),
            ("zero dim", handMade(dims: [0]), ["tensor w", "dimension 0"]),
            ("huge dims", handMade(nDims: 2, dims: [1 << 39, 1 << 39]), ["tensor w", "overflow"]),
            ("ggml type", handMade(type: 99), ["tensor w", "unknown ggml type 99"]),
            ("partial block", handMade(dims: [20], type: 8), ["tensor w", "Q8_0"]),
            ("misaligned offset", handMade(offset: 3), ["tensor w", "aligned"]),
            ("offset beyond file", handMade(offset: 1 << 20), ["tensor w", "beyond the end"]),
            ("overlap", handMade(tensorCount: 2, second: ("v", 0)), ["overlaps tensor"]),
            ("duplicate name", handMade(tensorCount: 2, second: ("w", 32), dataBytes: 64), ["duplicate tensor name w"]),
            ("alignment", handMade(key: "general.alignment", valueType: 4, value: { $0.u32(48) }), ["general.alignment"]),
        ]
        for (what, bytes, mentions) in cases {
            let path = try write(bytes, "\(what.replacingOccurrences(of: " ", with: "_")).gguf")
            let error: Error?
            do { _ = try GGUFFile(path: path); error = nil } catch let e { error = e }
            assertNamesFile(error, path, mentions: mentions)
        }
        // Sanity: the unmodified hand-made file is accepted, so the cases above test one field each.
        let ok = try GGUFFile(path: write(handMade(tensorCount: 2, second: ("v", 32), dataBytes: 64), "two.gguf"))
        XCTAssertEqual(ok.tensorInfos.map(\.name), ["w", "v"])
    }

    func testGGUFMutationFuzz() throws {
        // Gemma 3 exercises the norm rewrite, Llama the Q/K row permutation.
        var bases: [(bytes: [UInt8], headerEnd: Int)] = []
        for tiny in [TinyGGUF(arch: "gemma3", layers: 2, heads: 2, kvHeads: 1, headDim: 8), TinyGGUF(layers: 2)] {
            let bytes = try tiny.writer().serialized()
            let path = try write(bytes, "base.gguf")
            XCTAssertNil(openGGUF(path))
            bases.append((bytes, try GGUFFile(path: path).dataOffset))
        }
        var rng = SeededRNG(state: 0x7111_E5 ^ fuzzSeed)
        var accepted = 0, rejected = 0
        let start = Date()
        var iterations = 0
        // Bounded in time as well as count, so a loaded machine cannot make the suite crawl.
        for iteration in 0..<(fuzzIterations ?? 8000) where Date().timeIntervalSince(start) < fuzzSeconds {
            iterations += 1
            var (bytes, headerEnd) = bases[iteration % 2]
            mutate(&bytes, headerEnd: headerEnd, rng: &rng)
            let path = try write(bytes, "fuzz.gguf")
            if let error = openGGUF(path) {
                guard let fe = error as? FileError, fe.path == path else {
                    return XCTFail("iteration \(iteration): error does not name the file: \(error)")
                }
                rejected += 1
            } else {
                accepted += 1
            }
        }
        XCTAssertGreaterThanOrEqual(iterations, min(500, fuzzIterations ?? 500))
        XCTAssertGreaterThan(rejected, iterations / 5)
        XCTAssertGreaterThan(accepted, iterations / 50) // mutations of tensor data still parse
    }

    // MARK: safetensors

    private func safetensors(header: String, data: Int = 64, lengthOverride: UInt64? = nil) -> [UInt8] {
        var b = Bytes()
        b.u64(lengthOverride ?? UInt64(header.utf8.count))
        b.b += Array(header.utf8)
        b.b += (0..<data).map { UInt8($0 & 0xFF) }
        return b.b
    }

    func testSafetensorsHostileHeaders() throws {
        let ok = #"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{"k":"v"}}"#
        XCTAssertNil(openSafetensors(try write(safetensors(header: ok), "ok.safetensors")))
        let cases: [(String, [UInt8], [String])] = [
            ("short", [1, 2, 3], ["too short"]),
            ("length beyond file", safetensors(header: ok, lengthOverride: 1 << 40), ["header length"]),
            ("length max", safetensors(header: ok, lengthOverride: UInt64.max), ["header length"]),
            ("not json", safetensors(header: "{\"a\": [1, 2"), ["JSON"]),
            ("not object", safetensors(header: "[1, 2]"), ["JSON object"]),
            ("deep nesting", safetensors(header: String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)), []),
            ("dtype", safetensors(header: #"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}}"#), ["tensor a", "unknown dtype Q4"]),
            ("missing dtype", safetensors(header: #"{"a":{"shape":[2],"data_offsets":[0,8]}}"#), ["tensor a", "dtype"]),
            ("negative dim", safetensors(header: #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#), ["tensor a", "shape"]),
            ("fractional dim", safetensors(header: #"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#), ["tensor a", "shape"]),
            ("huge shape", safetensors(header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#), ["tensor a", "overflows"]),
            ("offsets outside", safetensors(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[60,68]}}"#), ["tensor a", "outside"]),
            ("offsets reversed", safetensors(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#), ["tensor a"]),
            ("offsets huge", safetensors(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}"#), ["tensor a"]),
            ("offsets strings", safetensors(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}}"#), ["tensor a", "data_offsets"]),
            ("byte count", safetensors(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#), ["tensor a", "needs 12"]),
            ("overlap", safetensors(header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[4],"data_offsets":[8,16]}}"#), ["overlap"]),
            ("metadata value", safetensors(header: #"{"__metadata__":{"k":3}}"#), ["__metadata__"]),
            ("metadata type", safetensors(header: #"{"__metadata__":"x"}"#), ["__metadata__"]),
            ("entry type", safetensors(header: #"{"a":7}"#), ["tensor a"]),
        ]
        for (what, bytes, mentions) in cases {
            let path = try write(bytes, "\(what.replacingOccurrences(of: " ", with: "_")).safetensors")
            assertNamesFile(openSafetensors(path), path, mentions: mentions)
        }
    }

    func testSafetensorsTruncatedAnywhereIsAnError() throws {
        var w = SafetensorsWriter(metadata: ["format": "pt"])
        try w.add("a", floats: (0..<40).map(Float.init), shape: [5, 8])
        try w.add("b", floats: [1, 2, 3], shape: [3], dtype: .bf16)
        try w.add("c", int32s: [1, 2], shape: [2])
        let good = w.serialized()
        XCTAssertNil(openSafetensors(try write(good, "good.safetensors")))
        for cut in 0..<good.count {
            let path = try write(Array(good[..<cut]), "cut.safetensors")
            assertNamesFile(openSafetensors(path), path)
        }
    }

    func testSafetensorsMutationFuzz() throws {
        var w = SafetensorsWriter(metadata: ["format": "pt", "trait": "honesty"])
        try w.add("layer.0", floats: (0..<64).map(Float.init), shape: [8, 8])
        try w.add("layer.1", floats: (0..<16).map(Float.init), shape: [16], dtype: .f16)
        try w.add("layer.2", floats: (0..<16).map(Float.init), shape: [4, 4], dtype: .bf16)
        try w.add("ids", int32s: [1, 2, 3, 4], shape: [2, 2])
        let base = w.serialized()
        let headerEnd = 8 + Int(base[0..<8].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var rng = SeededRNG(state: 0x5AFE ^ fuzzSeed)
        var rejected = 0
        let start = Date()
        var iterations = 0
        for iteration in 0..<(fuzzIterations ?? 8000) where Date().timeIntervalSince(start) < fuzzSeconds {
            iterations += 1
            var bytes = base
            mutate(&bytes, headerEnd: headerEnd, rng: &rng, text: true)
            let path = try write(bytes, "fuzz.safetensors")
            if let error = openSafetensors(path) {
                guard let fe = error as? FileError, fe.path == path else {
                    return XCTFail("iteration \(iteration): error does not name the file: \(error)")
                }
                rejected += 1
            }
        }
        XCTAssertGreaterThanOrEqual(iterations, min(500, fuzzIterations ?? 500))
        XCTAssertGreaterThan(rejected, iterations / 5)
    }

    /// One random corruption, mostly in the header where the parser's decisions are made.
    private func mutate(_ bytes: inout [UInt8], headerEnd: Int, rng: inout SeededRNG, text: Bool = false) {
        let inHeader = Int.random(in: 0..<10, using: &rng) < 8
        func position() -> Int {
            inHeader ? Int.random(in: 0..<max(1, min(headerEnd, bytes.count)), using: &rng)
                     : Int.random(in: 0..<bytes.count, using: &rng)
        }
        switch Int.random(in: 0..<7, using: &rng) {
        case 0: // flip a few bits
            for _ in 0..<Int.random(in: 1...4, using: &rng) { bytes[position()] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng)) }
        case 1: // random bytes
            for _ in 0..<Int.random(in: 1...8, using: &rng) { bytes[position()] = UInt8.random(in: 0...255, using: &rng) }
        case 2: // an extreme 64-bit value, as a count, length, dimension or offset would be
            let p = min(position(), bytes.count - 8)
            let extremes: [UInt64] = [0, 1, UInt64.max, 1 << 63, 1 << 32, UInt64(bytes.count), 0xFFFF_FFFF, 1 << 40]
            let v = Bool.random(using: &rng) ? extremes.randomElement(using: &rng)! : UInt64.random(in: 0...UInt64.max, using: &rng)
            withUnsafeBytes(of: v.littleEndian) { bytes.replaceSubrange(p..<(p + 8), with: $0) }
        case 3: // truncate
            bytes.removeSubrange(Int.random(in: 0..<bytes.count, using: &rng)...)
        case 4: // delete a chunk
            let p = position()
            bytes.removeSubrange(p..<min(bytes.count, p + Int.random(in: 1...16, using: &rng)))
        case 5: // duplicate a chunk
            let p = position()
            let chunk = Array(bytes[p..<min(bytes.count, p + Int.random(in: 1...16, using: &rng))])
            bytes.insert(contentsOf: chunk, at: p)
        default: // in text headers, swap in JSON-significant characters or digits
            let alphabet: [UInt8] = text ? Array("0123456789-.,:[]{}\"e".utf8) : [0, 0xFF, 0x80, 0x7F]
            for _ in 0..<Int.random(in: 1...3, using: &rng) { bytes[position()] = alphabet.randomElement(using: &rng)! }
        }
        if bytes.isEmpty { bytes = [0] }
    }
}
