import CTillerKernels
import Foundation

/// An fp32 copy of a weight matrix in 16-output slabs, for many-row products on AVX-512 CPUs
/// (`tiller_packed_gemm_avx512`): sgemm packs the whole matrix on every call, which at batched
/// decode's 32 rows costs as much as the arithmetic; these weights are packed once, at load.
/// Same values as the dequantized matrix, fp32 accumulation; only the summation order differs.
public final class PackedMatrix: @unchecked Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    let slabs: Int
    private let storage: OwnedBytes

    /// Whether packed copies are made and used: the AVX-512 kernels are in use
    /// (`TILLER_KERNELS=portable` turns them off with the rest) and `TILLER_PACKED` is not 0
    /// (which sends many-row products to sgemm on a row-major copy instead).
    public static var available: Bool { MatvecKernels.useAVX512 && !disabledByEnvironment }
    static let disabledByEnvironment = ProcessInfo.processInfo.environment["TILLER_PACKED"] == "0"

    /// Dequantizes and packs `matrix`, 16 rows at a time, over the worker pool.
    public init(_ matrix: WeightMatrix) {
        outFeatures = matrix.outFeatures
        inFeatures = matrix.inFeatures
        slabs = (outFeatures + 15) / 16
        storage = OwnedBytes(count: slabs * 16 * inFeatures * 4)
        let dst = storage.pointer.assumingMemoryBound(to: Float.self)
        let (out, inF) = (outFeatures, inFeatures)
        WorkerPool.shared.parallelFor(slabs) { s in
            var rows = [Float](repeating: 0, count: 16 * inF)
            let n = min(16, out - s * 16)
            rows.withUnsafeMutableBufferPointer { b in
                for j in 0..<n { matrix.dequantizeRow(s * 16 + j, into: b.baseAddress! + j * inF) }
                tiller_pack_slabs(b.baseAddress!, Int32(n), Int32(inF), dst + s * 16 * inF)
            }
        }
    }

    /// Bytes of the packed copy.
    public var byteCount: Int { storage.count }

    /// y[r, o] = Σ_i W[o, i] · x[r, i], as `WeightMatrix.apply`. False (nothing written) when the
    /// CPU lacks the kernel.
    @discardableResult
    public func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) -> Bool {
        guard rows > 0, Self.available else { return false }
        let pool = WorkerPool.shared
        // Slab pairs split evenly over the threads (more tasks than threads when there are many slabs,
        // so that a late thread does not hold the others up).
        let pairs = (slabs + 1) / 2
        let tasks = min(pairs, pool.threadCount * (pairs >= 8 * pool.threadCount ? 2 : 1))
        let base = UnsafePointer(storage.pointer.assumingMemoryBound(to: Float.self))
        let (inF, out, slabCount) = (inFeatures, outFeatures, slabs)
        pool.parallelFor(tasks) { t in
            let p0 = pairs * t / tasks, p1 = pairs * (t + 1) / tasks
            let s0 = p0 * 2, s1 = min(slabCount, p1 * 2)
            guard s0 < s1 else { return }
            tiller_packed_gemm_avx512(x, Int32(rows), Int32(inF), base, Int32(out), Int32(s0), Int32(s1), y, out)
        }
        return true
    }
}
