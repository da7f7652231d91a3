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
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 16 * inF) { rows in
                Self.packSlab(matrix, first: s * 16, count: min(16, out - s * 16), rows: rows.baseAddress!, into: dst + s * 16 * inF)
            }
        }
    }

    /// Dequantizes rows first ..< first + count (at most 16) of `matrix` into `rows` (16 rows of
    /// scratch) and packs them as one slab at `slab`, zero past `count`.
    static func packSlab(_ matrix: WeightMatrix, first: Int, count: Int, rows: UnsafeMutablePointer<Float>,
                         into slab: UnsafeMutablePointer<Float>) {
        let inF = matrix.inFeatures
        for j in 0..<count { matrix.dequantizeRow(first + j, into: rows + j * inF) }
        tiller_pack_slabs(rows, Int32(count), Int32(inF), slab)
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
        Self.withPackedInputs(x, rows: rows, inFeatures: inF) { xp in
            pool.parallelFor(tasks) { t in
                let p0 = pairs * t / tasks, p1 = pairs * (t + 1) / tasks
                let s0 = p0 * 2, s1 = min(slabCount, p1 * 2)
                guard s0 < s1 else { return }
                tiller_packed_gemm_avx512(x, xp, Int32(rows), Int32(inF), base, Int32(out), Int32(s0), Int32(s1), y, out)
            }
        }
        return true
    }

    /// Input rows from which the packed kernel reads its inputs packed (`tiller_pack_inputs`): from
    /// two chunks on, every chunk is read once per slab pair, and at prefill's thousands of rows a
    /// chunk's rows have left L1 by the next pair. 24 on Intel, 48 on AMD (measured; see
    /// `tiller_pack_inputs_min_rows`).
    static let packInputsMinRows = Int(tiller_pack_inputs_min_rows())

    /// Runs `body` with `x` packed for the kernel (packed over the pool), or with nil below
    /// `packInputsMinRows` rows.
    static func withPackedInputs(_ x: UnsafePointer<Float>, rows: Int, inFeatures: Int,
                                 _ body: (UnsafePointer<Float>?) -> Void) {
        guard rows >= packInputsMinRows else { body(nil); return }
        let buffer = ScratchPool.shared.take(floats: rows * inFeatures)
        defer { ScratchPool.shared.give(buffer) }
        let xp = buffer.pointer
        let chunks = Int(tiller_input_chunks(Int32(rows)))
        let pool = WorkerPool.shared
        let tasks = min(chunks, pool.threadCount)
        pool.parallelFor(tasks) { t in
            tiller_pack_inputs(x, Int32(rows), Int32(inFeatures), Int32(chunks * t / tasks), Int32(chunks * (t + 1) / tasks), xp)
        }
        body(UnsafePointer(xp))
    }

    /// The packed kernel on a quantized (or bf16/f16) matrix that has no packed copy, as
    /// `WeightMatrix.apply` for many rows: each task dequantizes its panel 16 rows at a time into
    /// slabs in a scratch (about 512 KiB, so still in L2 when the kernel reads it), then runs the
    /// kernel over every input row. This is the many-row path for models whose fp32 copy does not
    /// fit the copy limit (Gemma-2-2B on a 24 GiB machine); sgemm would pack each panel again.
    static func applyDequantizingPanels(_ matrix: WeightMatrix, _ x: UnsafePointer<Float>, rows: Int,
                                        into y: UnsafeMutablePointer<Float>) -> Bool {
        guard rows > 0, available else { return false }
        let pool = WorkerPool.shared
        let (panel, tasks) = matrix.panelPlan(threads: pool.threadCount)
        let (inF, out) = (matrix.inFeatures, matrix.outFeatures)
        withPackedInputs(x, rows: rows, inFeatures: inF) { xp in
            pool.parallelFor(tasks) { t in
                let start = t * panel
                let n = min(panel, out - start)
                guard n > 0 else { return }
                let slabCount = (n + 15) / 16
                let slabs = ScratchPool.shared.take(floats: slabCount * 16 * inF + 16 * inF)
                defer { ScratchPool.shared.give(slabs) }
                let rowsBuffer = slabs.pointer + slabCount * 16 * inF
                for s in 0..<slabCount {
                    packSlab(matrix, first: start + s * 16, count: min(16, n - s * 16), rows: rowsBuffer, into: slabs.pointer + s * 16 * inF)
                }
                tiller_packed_gemm_avx512(x, xp, Int32(rows), Int32(inF), slabs.pointer, Int32(n), 0, Int32(slabCount),
                                          y + start, out)
            }
        }
        return true
    }
}
