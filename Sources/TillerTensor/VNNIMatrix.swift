import CTillerKernels
import Foundation

/// A Q4_1, Q8_0, Q5_0, Q4_0 or Q4_K matrix re-laid in 16-row slabs for batch-1 decode on CPUs with
/// AVX-512 VNNI (`tiller_matvec_vnni`); Q5_0 and Q4_0, whose integers fit a byte, are re-laid
/// exactly as Q8_0 blocks, and Q4_K's sub-blocks as Q4_1 ones with fp32 scales
/// (`tiller_vnni_slab_type`). The fp32 one-row kernels spend most of their time turning weight
/// bytes into floats; here the weights stay integers and the input row is written once per call as four
/// base-128 int8 digits per 32-element block, so that one vpdpbusd multiplies four elements of 16
/// rows. The digits represent x to within 1.9e-9 of its block's largest |x| (below the fp32
/// rounding of that element), the integer sums are exact, and the result is the dequantized
/// matrix times x to fp32 precision: measured against an fp64 reference, the same error as the
/// fp32 kernels (about 5e-7 of the largest output on random blocks with a 300× massive dim).
///
/// The copy costs the bytes of the file's blocks again: the mapped blocks stay for embedding
/// lookups and many-row products.
public final class VNNIMatrix: @unchecked Sendable {
    public let type: GGMLType
    /// The slab layout and kernel: Q4_1, Q8_0 or Q4_K.
    public let layout: GGMLType
    public let outFeatures: Int
    public let inFeatures: Int
    let slabs: Int
    let slabBytes: Int
    private let storage: OwnedBytes

    /// Whether the CPU has the kernels (AVX-512 with VNNI).
    public static let cpuHasVNNI = tiller_kernels_vnni() != 0
    /// Whether decode copies are made and used: the AVX-512 kernels are in use
    /// (`TILLER_KERNELS=portable` turns them off with the rest), the CPU has VNNI, and `TILLER_VNNI`
    /// is not 0 (which keeps batch-1 decode on the fp32 one-row kernels).
    public static var available: Bool { MatvecKernels.useAVX512 && cpuHasVNNI && !disabledByEnvironment }
    static let disabledByEnvironment = ProcessInfo.processInfo.environment["TILLER_VNNI"] == "0"

    /// The slab layout (and kernel) of a stored type, nil for types without one.
    static func layout(of type: GGMLType) -> GGMLType? {
        let raw = tiller_vnni_slab_type(Int32(type.rawValue))
        return raw < 0 ? nil : GGMLType(rawValue: UInt32(raw))
    }

    /// The stored types with a slab layout.
    public static func supports(_ type: GGMLType) -> Bool { layout(of: type) != nil }

    /// Re-lays `matrix` over the worker pool; nil when its type has no layout or the kernels are off.
    public init?(_ matrix: WeightMatrix) {
        guard Self.available, let layout = Self.layout(of: matrix.type) else { return nil }
        let bytes = tiller_vnni_slab_bytes(Int32(matrix.type.rawValue), Int32(matrix.inFeatures))
        guard bytes > 0 else { return nil }
        type = matrix.type
        self.layout = layout
        outFeatures = matrix.outFeatures
        inFeatures = matrix.inFeatures
        slabs = (outFeatures + 15) / 16
        slabBytes = bytes
        storage = OwnedBytes(count: slabs * bytes)
        let dst = storage.pointer
        let (src, rowBytes, t, inF, out, total) = (matrix.base, matrix.rowBytes, Int32(type.rawValue), Int32(inFeatures), Int32(outFeatures), slabs)
        let tasks = min(total, WorkerPool.shared.threadCount * 4)
        WorkerPool.shared.parallelFor(tasks) { k in
            tiller_vnni_pack(t, src, rowBytes, inF, out, Int32(total * k / tasks), Int32(total * (k + 1) / tasks), dst)
        }
    }

    /// Bytes of the slabs.
    public var byteCount: Int { storage.count }

    /// y[r, o] = W[o]·x[r] for `rows` input rows (row-major, as `WeightMatrix.apply`), over the
    /// worker pool: the one-row kernel once per row when `kernel` is `.vnniOneRow`, else the
    /// multi-row kernel (`CPUKernelChoice` decides). False (nothing written) when the kernels are off.
    @discardableResult
    public func apply(_ x: UnsafePointer<Float>, rows: Int = 1, into y: UnsafeMutablePointer<Float>, kernel: CPUKernel) -> Bool {
        guard Self.available, rows > 0 else { return false }
        let blocks = inFeatures / 32
        let oneRow = kernel == .vnniOneRow
        return withUnsafeTemporaryAllocation(of: Int8.self, capacity: rows * 128 * blocks) { digits in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: rows * 3 * blocks) { scalesBuffer in
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: rows * 2 * blocks) { offsetsBuffer in
                    let (d, scales, offsets) = (digits.baseAddress!, scalesBuffer.baseAddress!, offsetsBuffer.baseAddress!)
                    for r in 0..<rows {
                        guard tiller_vnni_digits(x + r * inFeatures, Int32(inFeatures), d + r * 128 * blocks,
                                                 scales + r * 3 * blocks, offsets + r * 2 * blocks) != 0 else { return false }
                    }
                    let pool = WorkerPool.shared
                    // Several slabs a task, and a few tasks a thread so that a late thread does not
                    // hold the others up.
                    let tasks = min(slabs, pool.threadCount * 4)
                    let (t, inF, out, total, base) = (Int32(layout.rawValue), Int32(inFeatures), Int32(outFeatures), slabs, UnsafeRawPointer(storage.pointer))
                    pool.parallelFor(tasks) { k in
                        let (s0, s1) = (Int32(total * k / tasks), Int32(total * (k + 1) / tasks))
                        if oneRow {
                            for r in 0..<rows {
                                tiller_matvec_vnni(t, base, inF, d + r * 128 * blocks, scales + r * 3 * blocks,
                                                   offsets + r * 2 * blocks, y + r * outFeatures, out, s0, s1)
                            }
                        } else {
                            tiller_matmul_vnni(t, base, inF, Int32(rows), d, scales, offsets, y, outFeatures, out, s0, s1)
                        }
                    }
                    return true
                }
            }
        }
    }
}
