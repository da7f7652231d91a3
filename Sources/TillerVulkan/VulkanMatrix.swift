import Foundation
import TillerTensor

/// Which kernel computes y = x·Wᵀ on the Vulkan backend: a pure decision, tested against a table.
public struct VulkanKernelChoice: Equatable, Sendable, CustomStringConvertible {
    public enum Kernel: String, Sendable {
        /// One subgroup per output feature, 64 / subgroup size of them per workgroup, and up to
        /// 4 rows (decode).
        case matvecSubgroup = "matvec_sg"
        /// One workgroup per output feature with shared-memory reductions (no subgroup
        /// arithmetic, or switched off).
        case matvecShared = "matvec_sh"
        /// 64 output features × `rowTile` rows staged through shared memory (prefill, batched rows).
        case tiled = "matmul"
    }
    public let kernel: Kernel
    public let type: GGMLType
    /// Rows per tile of the tiled kernel (its BN: 16, 32 or 64), the fewest that cover the rows up
    /// to 64; 0 for the mat-vec kernels.
    public let rowTile: Int

    public init(kernel: Kernel, type: GGMLType, rowTile: Int = 0) {
        self.kernel = kernel
        self.type = type
        self.rowTile = rowTile
    }

    /// Rows up to this many run the mat-vec kernel (two passes of 4 rows at most), more the tiled one.
    public static let matvecMaxRows = 8
    /// Stored types with kernels.
    public static let types: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q4_K, .q6_K]

    public static func decide(type: GGMLType, rows: Int, subgroupArithmetic: Bool) -> VulkanKernelChoice {
        if rows <= matvecMaxRows {
            return VulkanKernelChoice(kernel: subgroupArithmetic ? .matvecSubgroup : .matvecShared, type: type)
        }
        return VulkanKernelChoice(kernel: .tiled, type: type, rowTile: rowTiles.first { rows <= $0 } ?? rowTiles.last!)
    }

    /// The tiled kernel's row tiles (its specialisation constant BN).
    public static let rowTiles = [16, 32, 64]

    /// The shader variant's name (scripts/build-shaders.sh's naming).
    public var shader: String { "\(kernel.rawValue)_\(type)" }
    /// The variant, and the tiled kernel's tile (output features × rows).
    public var description: String { kernel == .tiled ? "\(shader) 64x\(rowTile)" : shader }
}

/// A weight matrix W [out, in] resident on the device in its stored blocks. Tables larger than
/// the device's storage-buffer range are split by rows into parts, each its own buffer.
public final class VulkanMatrix: @unchecked Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    public let type: GGMLType
    let rowBytes: Int
    struct Part { let buffer: VulkanBuffer; let firstRow: Int; let rows: Int }
    let parts: [Part]

    public convenience init(device: VulkanDevice, _ raw: RawTensor) throws {
        try self.init(device: device, raw, partBytes: min(device.info.features.maxStorageBufferRange, 1 << 31))
    }

    /// `partBytes`: the most bytes one part may hold (the tests split small matrices with it).
    init(device: VulkanDevice, _ raw: RawTensor, partBytes limit: Int) throws {
        guard raw.shape.count == 2 else {
            throw TensorShapeError(tensor: raw.name, "a matrix needs 2 dimensions, has shape \(raw.shape)")
        }
        guard VulkanKernelChoice.types.contains(raw.type) else {
            throw UnsupportedTypeError(tensor: raw.name, type: raw.type, operation: "the Vulkan backend")
        }
        let (out, inF) = (raw.shape[0], raw.shape[1])
        guard let rb = raw.type.byteCount(elements: inF) else {
            throw TensorShapeError(tensor: raw.name, "\(inF) columns is not a whole number of \(raw.type) blocks of \(raw.type.blockSize)")
        }
        guard rb * out <= raw.data.count else {
            throw TensorShapeError(tensor: raw.name, "shape \(raw.shape) of \(raw.type) needs \(rb * out) bytes, data has \(raw.data.count)")
        }
        outFeatures = out
        inFeatures = inF
        type = raw.type
        rowBytes = rb
        // Byte offsets in the shaders are 32-bit: parts stay below 2 GiB as well as the range.
        let perPart = max(1, limit / max(rb, 1))
        var parts: [Part] = []
        var row = 0
        while row < out || (out == 0 && parts.isEmpty) {
            let n = min(perPart, out - row)
            let buffer = try VulkanBuffer(device: device, bytes: max(n * rb, 4), placement: .device)
            if n > 0 {
                try device.write(bytes: UnsafeRawBufferPointer(rebasing: raw.data[(row * rb)..<((row + n) * rb)]), into: buffer, at: 0)
            }
            parts.append(Part(buffer: buffer, firstRow: row, rows: n))
            row += n
            if out == 0 { break }
        }
        self.parts = parts
    }

    /// Bytes on the device.
    public var bytes: Int { parts.reduce(0) { $0 + $1.buffer.bytes } }
}
