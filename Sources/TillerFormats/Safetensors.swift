import Foundation
import TillerTensor

// safetensors (huggingface/safetensors docs): 8-byte little-endian header length N, N bytes of
// JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
// data section; offsets are relative to its start. The reader maps the file and checks every
// entry against the file before handing out bytes; the writer replaces files atomically.

public enum SafetensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8", bool = "BOOL"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
        }
    }

    /// The matching element type of TillerTensor, where there is one.
    public var ggmlType: GGMLType? {
        switch self {
        case .f64: return .f64
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .i64: return .i64
        case .i32: return .i32
        case .i16: return .i16
        case .i8: return .i8
        default: return nil
        }
    }
}

public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// Byte range relative to the start of the data section.
    public let begin: Int
    public let end: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let metadata: [String: String]
    /// Tensors in data order.
    public let tensorInfos: [SafetensorsTensorInfo]
    public let dataOffset: Int
    private let file: MappedFile
    private let index: [String: Int]

    /// The safetensors library refuses headers above 100 MB; so do we, before allocating.
    public static let maxHeaderBytes = 100_000_000

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        path = file.path
        guard let lengthBytes = file.bytes(at: 0, length: 8) else {
            throw FileError(path: path, "too short for a safetensors header (\(file.count) bytes)")
        }
        let headerLength = UInt64(littleEndian: lengthBytes.loadUnaligned(as: UInt64.self))
        guard headerLength >= 2, headerLength <= UInt64(Self.maxHeaderBytes),
              let headerBytes = file.bytes(at: 8, length: Int(headerLength)) else {
            throw FileError(path: path, "header length \(headerLength) is impossible for a file of \(file.count) bytes")
        }
        dataOffset = 8 + Int(headerLength)
        let dataSize = file.count - dataOffset

        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes), options: [])
        } catch {
            throw FileError(path: path, "header is not valid JSON")
        }
        guard let root = json as? [String: Any] else {
            throw FileError(path: path, "header is not a JSON object")
        }
        var meta: [String: String] = [:]
        var infos: [SafetensorsTensorInfo] = []
        for (name, value) in root {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw FileError(path: path, "__metadata__ is not an object")
                }
                for (k, v) in m {
                    guard let s = v as? String else { throw FileError(path: path, "__metadata__[\(k)] is not a string") }
                    meta[k] = s
                }
                continue
            }
            infos.append(try Self.parseEntry(name: name, value: value, path: path, dataSize: dataSize))
        }
        infos.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var previous: SafetensorsTensorInfo?
        for info in infos {
            // Zero-sized tensors occupy no bytes and cannot overlap anything.
            guard info.begin < info.end else { continue }
            if let p = previous, info.begin < p.end {
                throw FileError(path: path, "tensor \(info.name): bytes \(info.begin)..<\(info.end) overlap tensor \(p.name) (\(p.begin)..<\(p.end))")
            }
            previous = info
        }
        metadata = meta
        tensorInfos = infos
        index = Dictionary(uniqueKeysWithValues: infos.enumerated().map { ($1.name, $0) })
    }

    private static func parseEntry(name: String, value: Any, path: String, dataSize: Int) throws -> SafetensorsTensorInfo {
        func bad(_ what: String) -> FileError { FileError(path: path, "tensor \(name): \(what)") }
        guard let entry = value as? [String: Any] else { throw bad("entry is not an object") }
        guard let dtypeName = entry["dtype"] as? String else { throw bad("missing dtype") }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw bad("unknown dtype \(dtypeName) (known: \(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let shapeValues = entry["shape"] as? [Any], shapeValues.count <= 8 else { throw bad("shape is not a list of at most 8 dimensions") }
        var shape: [Int] = []
        var elements = 1
        for v in shapeValues {
            guard let d = exactInt(v), d >= 0 else { throw bad("shape \(shapeValues) has a dimension that is not a non-negative integer") }
            let (e, o) = elements.multipliedReportingOverflow(by: d)
            guard !o, e <= Int(Int32.max) * 64 else { throw bad("element count of shape \(shapeValues) overflows") }
            elements = e
            shape.append(d)
        }
        guard let offsets = entry["data_offsets"] as? [Any], offsets.count == 2,
              let begin = exactInt(offsets[0]), let end = exactInt(offsets[1]) else {
            throw bad("data_offsets is not a pair of integers")
        }
        guard begin >= 0, begin <= end, end <= dataSize else {
            throw bad("data_offsets [\(begin), \(end)] lie outside the data section (\(dataSize) bytes); the file is truncated or corrupt")
        }
        guard end - begin == elements * dtype.byteSize else {
            throw bad("\(end - begin) bytes stored, but shape \(shape) of \(dtype.rawValue) needs \(elements * dtype.byteSize)")
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    public var names: [String] { tensorInfos.map(\.name) }

    public func info(_ name: String) -> SafetensorsTensorInfo? { index[name].map { tensorInfos[$0] } }

    private func infoOrThrow(_ name: String) throws -> SafetensorsTensorInfo {
        guard let info = info(name) else { throw FileError(path: path, "no tensor named \(name)") }
        return info
    }

    /// The stored bytes of a tensor, whatever its dtype.
    public func bytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let info = try infoOrThrow(name)
        // Bounds were checked at open.
        return file.bytes(at: dataOffset + info.begin, length: info.end - info.begin)!
    }

    /// The tensor in place (no copy), for dtypes TillerTensor knows (floats and signed integers).
    public func tensor(_ name: String) throws -> RawTensor {
        let info = try infoOrThrow(name)
        guard let type = info.dtype.ggmlType else {
            throw FileError(path: path, "tensor \(name): dtype \(info.dtype.rawValue) cannot be used as a weight")
        }
        return RawTensor(name: name, type: type, shape: info.shape, data: try bytes(name), owner: file)
    }

    /// The tensor converted to Float (from F32, F16, BF16 or F64).
    public func floats(_ name: String) throws -> [Float] {
        let info = try infoOrThrow(name)
        let b = try bytes(name)
        let n = info.elementCount
        switch info.dtype {
        case .f32: return (0..<n).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        case .f64: return (0..<n).map { Float(b.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self)) }
        case .f16: return (0..<n).map { halfToFloat(b.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
        case .bf16: return (0..<n).map { Float(bitPattern: UInt32(b.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16) }
        default: throw FileError(path: path, "tensor \(name): dtype \(info.dtype.rawValue) is not a floating-point type")
        }
    }

    /// The tensor as Int32 (from I32, or I64 whose values fit).
    public func int32s(_ name: String) throws -> [Int32] {
        let info = try infoOrThrow(name)
        let b = try bytes(name)
        let n = info.elementCount
        switch info.dtype {
        case .i32: return (0..<n).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) }
        case .i64:
            return try (0..<n).map {
                let v = b.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)
                guard let small = Int32(exactly: v) else { throw FileError(path: path, "tensor \(name): value \(v) does not fit in Int32") }
                return small
            }
        default: throw FileError(path: path, "tensor \(name): dtype \(info.dtype.rawValue) is not I32 or I64")
        }
    }
}

/// A JSON number that is an exact integer (JSONSerialization hands out NSNumber/Int/Double).
private func exactInt(_ v: Any) -> Int? {
    if let i = v as? Int { return i }
    if let d = v as? Double, d.rounded() == d, abs(d) < 9e15 { return Int(d) }
    return nil
}

func halfToFloat(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }

func floatToHalf(_ v: Float) -> UInt16 { Float16(v).bitPattern }

/// Round-to-nearest-even Float → BF16 (NaN stays NaN), as torch does.
func floatToBF16(_ v: Float) -> UInt16 {
    let bits = v.bitPattern
    if v.isNaN { return UInt16(bits >> 16) | 0x40 }
    let rounding = 0x7FFF + ((bits >> 16) & 1)
    return UInt16((bits &+ rounding) >> 16)
}

// MARK: - Writer

/// Collects named tensors and writes a safetensors file. The file is written next to its
/// destination under a temporary name and renamed over it only when complete, so a failure
/// never leaves a half-written file or destroys the previous one.
public struct SafetensorsWriter: Sendable {
    struct Entry: Sendable {
        let name: String
        let dtype: SafetensorsDType
        let shape: [Int]
        let data: [UInt8]
    }
    private var entries: [Entry] = []
    private var names: Set<String> = []
    public var metadata: [String: String]

    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    public var count: Int { entries.count }

    private mutating func append(_ name: String, _ dtype: SafetensorsDType, _ shape: [Int], count: Int, _ data: [UInt8]) throws {
        guard !name.isEmpty, name != "__metadata__" else {
            throw FileError(path: "safetensors writer", "invalid tensor name \"\(name)\"")
        }
        guard !names.contains(name) else { throw FileError(path: "safetensors writer", "tensor \(name) added twice") }
        guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == count else {
            throw FileError(path: "safetensors writer", "tensor \(name): shape \(shape) does not hold \(count) values")
        }
        names.insert(name)
        entries.append(Entry(name: name, dtype: dtype, shape: shape, data: data))
    }

    /// Adds Float values stored as F32, F16 or BF16.
    public mutating func add(_ name: String, floats values: [Float], shape: [Int], dtype: SafetensorsDType = .f32) throws {
        var data: [UInt8]
        switch dtype {
        case .f32:
            data = values.withUnsafeBytes { Array($0) }
        case .f16:
            let h = values.map { floatToHalf($0).littleEndian }
            data = h.withUnsafeBytes { Array($0) }
        case .bf16:
            let h = values.map { floatToBF16($0).littleEndian }
            data = h.withUnsafeBytes { Array($0) }
        default:
            throw FileError(path: "safetensors writer", "tensor \(name): floats cannot be stored as \(dtype.rawValue) (F32, F16, BF16)")
        }
        try append(name, dtype, shape, count: values.count, data)
    }

    public mutating func add(_ name: String, int32s values: [Int32], shape: [Int]) throws {
        try append(name, .i32, shape, count: values.count, values.withUnsafeBytes { Array($0) })
    }

    public mutating func add(_ name: String, int64s values: [Int64], shape: [Int]) throws {
        try append(name, .i64, shape, count: values.count, values.withUnsafeBytes { Array($0) })
    }

    /// Adds stored bytes of a plain (non-quantised) tensor unchanged.
    public mutating func add(_ name: String, raw: RawTensor) throws {
        let map: [GGMLType: SafetensorsDType] = [.f32: .f32, .f16: .f16, .bf16: .bf16, .f64: .f64,
                                                  .i64: .i64, .i32: .i32, .i16: .i16, .i8: .i8]
        guard let dtype = map[raw.type] else {
            throw FileError(path: "safetensors writer", "tensor \(name): a \(raw.type) tensor cannot be stored in safetensors")
        }
        try append(name, dtype, raw.shape, count: raw.data.count / dtype.byteSize, Array(raw.data))
    }

    /// The header and data in file order: larger elements first so every tensor stays aligned
    /// to its element size (as the Python library does), then by name for a stable layout.
    public func serialized() -> [UInt8] {
        let ordered = entries.sorted { ($1.dtype.byteSize, $0.name) < ($0.dtype.byteSize, $1.name) }
        var json = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let m = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(m.joined(separator: ","))}")
        }
        var offset = 0
        for e in ordered {
            let shape = e.shape.map(String.init).joined(separator: ",")
            parts.append("\(jsonString(e.name)):{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.data.count)]}")
            offset += e.data.count
        }
        json += parts.joined(separator: ",") + "}"
        var header = Array(json.utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) } // spaces keep the data 8-aligned
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out += header
        for e in ordered { out += e.data }
        return out
    }

    public func write(to path: String) throws {
        try writeAtomically(serialized(), to: path)
    }
}

/// JSON string literal with the escapes RFC 8259 requires, spelled as Python's json.dumps spells
/// them (\b, \f, \uXXXX for other controls; non-ASCII kept): the Jinja `tojson` filter relies on that.
public func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

/// Writes to a temporary file in the destination's directory, flushes it, then renames it over
/// the destination (rename is atomic within a file system).
public func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    let tmp = dir + "/.\(url.lastPathComponent).tmp-\(getpid())-\(UUID().uuidString.prefix(8))"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
    guard fd >= 0 else { throw FileError(path: path, "cannot create temporary file \(tmp): \(String(cString: strerror(errno)))") }
    var ok = false
    defer {
        if !ok { unlink(tmp) }
    }
    var written = 0
    let failure: String? = bytes.withUnsafeBytes { buf -> String? in
        while written < buf.count {
            let n = Foundation.write(fd, buf.baseAddress! + written, buf.count - written)
            if n < 0 {
                if errno == EINTR { continue }
                return String(cString: strerror(errno))
            }
            written += n
        }
        return nil
    }
    if let failure {
        close(fd)
        throw FileError(path: path, "write failed: \(failure)")
    }
    guard fsync(fd) == 0 else {
        let e = String(cString: strerror(errno))
        close(fd)
        throw FileError(path: path, "fsync failed: \(e)")
    }
    close(fd)
    guard rename(tmp, path) == 0 else {
        throw FileError(path: path, "cannot rename \(tmp) into place: \(String(cString: strerror(errno)))")
    }
    ok = true
}
