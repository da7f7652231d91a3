import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct FileError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

/// A read-only memory mapping of a whole file. Model weights are read in place from it, so
/// loading a multi-gigabyte checkpoint costs no copy until a tensor is converted.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer
    public let count: Int

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FileError(path: path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(path: path, "cannot stat: \(String(cString: strerror(errno)))") }
        let size = Int(st.st_size)
        guard size > 0 else { throw FileError(path: path, "file is empty") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FileError(path: path, "cannot map: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
        count = size
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), count) }

    /// The bytes in `offset ..< offset+length`, or nil when that range is not inside the file.
    public func bytes(at offset: Int, length: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else { return nil }
        return UnsafeRawBufferPointer(start: base + offset, count: length)
    }
}

/// A tensor as stored in a file: type, shape in PyTorch order (outermost first, last dimension
/// contiguous) and its bytes, kept alive by `owner` (usually a `MappedFile`).
public struct RawTensor: @unchecked Sendable {
    public let name: String
    public let type: GGMLType
    public let shape: [Int]
    public let data: UnsafeRawBufferPointer
    public let owner: AnyObject?

    public init(name: String, type: GGMLType, shape: [Int], data: UnsafeRawBufferPointer, owner: AnyObject?) {
        self.name = name
        self.type = type
        self.shape = shape
        self.data = data
        self.owner = owner
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// Heap bytes that a `RawTensor` can point into (for tensors a loader had to rewrite).
public final class OwnedBytes: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let count: Int
    public init(count: Int) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
    }
    deinit { pointer.deallocate() }
    public var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }

    /// A RawTensor holding a copy of `values` as F32.
    public static func f32Tensor(name: String, shape: [Int], values: [Float]) -> RawTensor {
        let owned = OwnedBytes(count: values.count * 4)
        values.withUnsafeBytes { owned.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return RawTensor(name: name, type: .f32, shape: shape, data: owned.buffer, owner: owned)
    }
}
