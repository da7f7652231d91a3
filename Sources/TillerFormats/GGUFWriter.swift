import Foundation
import TillerTensor

/// Writes GGUF v3 files: metadata in insertion order, tensor infos, then the tensors' bytes, each
/// aligned to `alignment`. Used for llama.cpp control vectors (`controlvector.*` keys,
/// `direction.N` tensors) and for the small test files that exercise the reader.
public struct GGUFWriter: Sendable {
    public let alignment: Int
    private var keys: [String] = []
    private var values: [String: GGUFValue] = [:]
    private var tensors: [(name: String, type: GGMLType, ggmlDims: [Int], data: [UInt8])] = []

    public init(alignment: Int = 32) {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment must be a power of two")
        self.alignment = alignment
        if alignment != 32 {
            keys.append("general.alignment")
            values["general.alignment"] = .uint32(UInt32(alignment))
        }
    }

    /// Sets a metadata value; a key set twice keeps its first position and the last value.
    public mutating func set(_ key: String, _ value: GGUFValue) {
        if values[key] == nil { keys.append(key) }
        values[key] = value
    }

    /// Adds a tensor whose `shape` is in PyTorch order (outermost first), as stored bytes of `type`.
    public mutating func addTensor(name: String, type: GGMLType, shape: [Int], data: [UInt8]) throws {
        guard !shape.isEmpty, shape.count <= 4, shape.allSatisfy({ $0 > 0 }) else {
            throw FileError(path: "GGUF writer", "tensor \(name): GGUF tensors need 1 to 4 positive dimensions, got \(shape)")
        }
        guard !tensors.contains(where: { $0.name == name }) else { throw FileError(path: "GGUF writer", "tensor \(name) added twice") }
        let dims = Array(shape.reversed())
        guard dims[0] % type.blockSize == 0, let bytes = type.byteCount(elements: shape.reduce(1, *)), bytes == data.count else {
            throw FileError(path: "GGUF writer", "tensor \(name): \(data.count) bytes do not hold a \(type) tensor of shape \(shape)")
        }
        tensors.append((name, type, dims, data))
    }

    public mutating func addTensor(name: String, floats: [Float], shape: [Int]) throws {
        try addTensor(name: name, type: .f32, shape: shape, data: floats.withUnsafeBytes { Array($0) })
    }

    public func serialized() throws -> [UInt8] {
        var out: [UInt8] = []
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func putString(_ s: String) {
            let u = Array(s.utf8)
            put(UInt64(u.count))
            out += u
        }
        func typeID(_ v: GGUFValue) -> UInt32 {
            switch v {
            case .uint8: return 0
            case .int8: return 1
            case .uint16: return 2
            case .int16: return 3
            case .uint32: return 4
            case .int32: return 5
            case .float32: return 6
            case .bool: return 7
            case .string: return 8
            case .array: return 9
            case .uint64: return 10
            case .int64: return 11
            case .float64: return 12
            }
        }
        func putValue(_ v: GGUFValue, key: String) throws {
            switch v {
            case .uint8(let x): put(x)
            case .int8(let x): put(x)
            case .uint16(let x): put(x)
            case .int16(let x): put(x)
            case .uint32(let x): put(x)
            case .int32(let x): put(x)
            case .float32(let x): put(x.bitPattern)
            case .bool(let x): put(UInt8(x ? 1 : 0))
            case .string(let s): putString(s)
            case .uint64(let x): put(x)
            case .int64(let x): put(x)
            case .float64(let x): put(x.bitPattern)
            case .array(let a):
                // GGUF arrays are homogeneous; an empty one is typed as strings, like gguf-py's.
                let element = a.first.map(typeID) ?? 8
                guard a.allSatisfy({ typeID($0) == element }) else {
                    throw FileError(path: "GGUF writer", "\(key): GGUF arrays must hold values of one type")
                }
                put(element)
                put(UInt64(a.count))
                for x in a { try putValue(x, key: key) }
            }
        }
        func pad() { while out.count % alignment != 0 { out.append(0) } }

        put(UInt32(0x4655_4747))
        put(UInt32(3))
        put(UInt64(tensors.count))
        put(UInt64(keys.count))
        for key in keys {
            let v = values[key]!
            putString(key)
            put(typeID(v))
            try putValue(v, key: key)
        }
        var offset = 0
        for t in tensors {
            putString(t.name)
            put(UInt32(t.ggmlDims.count))
            for d in t.ggmlDims { put(UInt64(d)) }
            put(t.type.rawValue)
            put(UInt64(offset))
            offset += (t.data.count + alignment - 1) / alignment * alignment
        }
        pad()
        for t in tensors {
            out += t.data
            pad()
        }
        return out
    }

    /// Writes atomically (temporary file + rename).
    public func write(to path: String) throws {
        try writeAtomically(serialized(), to: path)
    }
}
