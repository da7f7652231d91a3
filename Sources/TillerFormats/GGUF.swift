import Foundation
import TillerTensor

// GGUF v2/v3 container: header, metadata key/values, tensor infos, aligned data section.
// Layout per ggml's docs/gguf.md. Every count, length and offset is checked against the file
// before use, so a truncated or hostile file is an error that names the file and the field.

public indirect enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double), bool(Bool), string(String)
    case array([GGUFValue])

    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        case .int64(let v): return Int(v)
        case .bool(let v): return v ? 1 : 0
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return int.map(Double.init)
        }
    }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var bool: Bool? {
        if case .bool(let b) = self { return b }
        return int.map { $0 != 0 }
    }
    public var array: [GGUFValue]? { if case .array(let a) = self { return a } else { return nil } }
}

public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// Dimensions as GGUF stores them: `ne[0]` is the contiguous (innermost) one.
    public let ggmlDims: [Int]
    public let type: GGMLType
    /// Offset relative to the start of the data section.
    public let offset: Int
    public let byteCount: Int
    /// PyTorch order: outermost first.
    public var shape: [Int] { ggmlDims.reversed() }
}

public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Keys in file order.
    public let metadataKeys: [String]
    public let tensorInfos: [GGUFTensorInfo]
    public let alignment: Int
    public let dataOffset: Int
    private let file: MappedFile
    private let index: [String: Int]

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        self.path = file.path
        var r = GGUFCursor(file: file)
        let magic = try r.u32("magic")
        guard magic == 0x4655_4747 else { // "GGUF" little-endian
            throw FileError(path: file.path, "not a GGUF file (magic \(String(magic, radix: 16)))")
        }
        version = try r.u32("version")
        guard version == 2 || version == 3 else {
            throw FileError(path: file.path, "unsupported GGUF version \(version) (2 and 3 are supported)")
        }
        let tensorCount = try r.count("tensor_count", minBytesEach: 4 + 8 + 4 + 4 + 8)
        let kvCount = try r.count("metadata_kv_count", minBytesEach: 8 + 4)
        var meta: [String: GGUFValue] = [:]
        var keys: [String] = []
        keys.reserveCapacity(kvCount)
        for _ in 0..<kvCount {
            let key = try r.string("metadata key")
            let typeID = try r.u32("type of \(key)")
            meta[key] = try r.value(type: typeID, key: key, depth: 0)
            keys.append(key)
        }
        metadata = meta
        metadataKeys = keys
        var align = 32
        if let a = meta["general.alignment"] {
            guard let v = a.int, v > 0, v & (v - 1) == 0, v <= 1 << 20 else {
                throw FileError(path: file.path, "general.alignment must be a power of two, got \(a)")
            }
            align = v
        }
        alignment = align

        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(tensorCount)
        var idx: [String: Int] = [:]
        for _ in 0..<tensorCount {
            let name = try r.string("tensor name")
            let nDims = try r.u32("n_dims of \(name)")
            guard nDims >= 1, nDims <= 4 else {
                throw FileError(path: file.path, "tensor \(name): \(nDims) dimensions (1…4 allowed)")
            }
            var dims: [Int] = []
            var elements = 1
            for _ in 0..<nDims {
                let d = try r.u64("dimension of \(name)")
                guard d > 0, d < 1 << 40 else { throw FileError(path: file.path, "tensor \(name): dimension \(d) out of range") }
                dims.append(Int(d))
                let (e, o) = elements.multipliedReportingOverflow(by: Int(d))
                guard !o, e < 1 << 42 else { throw FileError(path: file.path, "tensor \(name): element count overflows") }
                elements = e
            }
            let typeID = try r.u32("type of \(name)")
            guard let type = GGMLType(rawValue: typeID) else {
                throw FileError(path: file.path, "tensor \(name): unknown ggml type \(typeID)")
            }
            guard dims[0] % type.blockSize == 0, let bytes = type.byteCount(elements: elements) else {
                throw FileError(path: file.path, "tensor \(name): row of \(dims[0]) elements is not a whole number of \(type) blocks")
            }
            let offset = try r.u64("offset of \(name)")
            guard offset < 1 << 50, Int(offset) % align == 0 else {
                throw FileError(path: file.path, "tensor \(name): data offset \(offset) is not aligned to \(align)")
            }
            guard idx[name] == nil else { throw FileError(path: file.path, "duplicate tensor name \(name)") }
            idx[name] = infos.count
            infos.append(GGUFTensorInfo(name: name, ggmlDims: dims, type: type, offset: Int(offset), byteCount: bytes))
        }
        let start = (r.offset + align - 1) / align * align
        dataOffset = start
        for info in infos {
            guard file.bytes(at: start + info.offset, length: info.byteCount) != nil else {
                throw FileError(path: file.path, "tensor \(info.name): data (\(info.byteCount) bytes at \(start + info.offset)) lies beyond the end of the file (\(file.count) bytes); the file is truncated")
            }
        }
        // Overlapping tensors would let one tensor's bytes masquerade as another's.
        var previous: GGUFTensorInfo?
        for info in infos.sorted(by: { $0.offset < $1.offset }) {
            if let p = previous, info.offset < p.offset + p.byteCount {
                throw FileError(path: file.path, "tensor \(info.name): data at offset \(info.offset) overlaps tensor \(p.name) (\(p.offset)..<\(p.offset + p.byteCount))")
            }
            previous = info
        }
        tensorInfos = infos
        index = idx
    }

    public func info(_ name: String) -> GGUFTensorInfo? { index[name].map { tensorInfos[$0] } }

    public func tensor(_ name: String) throws -> RawTensor {
        guard let info = info(name) else { throw FileError(path: path, "no tensor named \(name)") }
        // Bounds were checked at open.
        let data = file.bytes(at: dataOffset + info.offset, length: info.byteCount)!
        return RawTensor(name: name, type: info.type, shape: info.shape, data: data, owner: file)
    }

    public var architecture: String? { metadata["general.architecture"]?.string }
}

/// Bounds-checked little-endian reader over the mapped header.
struct GGUFCursor {
    let file: MappedFile
    var offset = 0

    private func fail(_ what: String) -> FileError {
        FileError(path: file.path, "truncated or corrupt header while reading \(what) at byte \(offset)")
    }

    mutating func raw<T: FixedWidthInteger>(_ what: String, as: T.Type) throws -> T {
        guard let b = file.bytes(at: offset, length: MemoryLayout<T>.size) else { throw fail(what) }
        offset += MemoryLayout<T>.size
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }
    mutating func u32(_ what: String) throws -> UInt32 { try raw(what, as: UInt32.self) }
    mutating func u64(_ what: String) throws -> UInt64 { try raw(what, as: UInt64.self) }

    /// A count whose items take at least `minBytesEach` bytes: it cannot exceed what is left.
    mutating func count(_ what: String, minBytesEach: Int) throws -> Int {
        let n = try u64(what)
        let left = UInt64(file.count - offset)
        guard n <= left / UInt64(max(minBytesEach, 1)) else {
            throw FileError(path: file.path, "\(what) = \(n) is impossible for a file of \(file.count) bytes")
        }
        return Int(n)
    }

    mutating func string(_ what: String) throws -> String {
        let n = try count("length of \(what)", minBytesEach: 1)
        guard let b = file.bytes(at: offset, length: n) else { throw fail(what) }
        offset += n
        return String(decoding: b, as: UTF8.self)
    }

    mutating func value(type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try raw(key, as: UInt8.self))
        case 1: return .int8(try raw(key, as: Int8.self))
        case 2: return .uint16(try raw(key, as: UInt16.self))
        case 3: return .int16(try raw(key, as: Int16.self))
        case 4: return .uint32(try raw(key, as: UInt32.self))
        case 5: return .int32(try raw(key, as: Int32.self))
        case 6: return .float32(Float(bitPattern: try raw(key, as: UInt32.self)))
        case 7:
            let b = try raw(key, as: UInt8.self)
            guard b <= 1 else { throw FileError(path: file.path, "\(key): bool value \(b)") }
            return .bool(b == 1)
        case 8: return .string(try string(key))
        case 9:
            guard depth < 4 else { throw FileError(path: file.path, "\(key): arrays nested too deeply") }
            let elemType = try u32("array type of \(key)")
            let n = try count("array length of \(key)", minBytesEach: elemType == 8 ? 8 : 1)
            var out: [GGUFValue] = []
            out.reserveCapacity(n)
            for _ in 0..<n { out.append(try value(type: elemType, key: key, depth: depth + 1)) }
            return .array(out)
        case 10: return .uint64(try raw(key, as: UInt64.self))
        case 11: return .int64(try raw(key, as: Int64.self))
        case 12: return .float64(Double(bitPattern: try raw(key, as: UInt64.self)))
        default: throw FileError(path: file.path, "\(key): unknown metadata value type \(type)")
        }
    }
}
