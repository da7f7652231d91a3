import COpenBLAS
import Foundation

/// How a `WeightMatrix` stores its weights.
public enum WeightPrecision: Sendable {
    /// The stored blocks as they are (quantized, bf16, f16 or f32), dequantized inside the kernels.
    case native
    /// Converted to f32 once at load: 4 bytes per weight, no dequantization per call.
    case f32
}

/// A 2-D weight `[outFeatures, inFeatures]` (PyTorch order) and the engine's only way to multiply
/// by one.
///
/// Results equal an f32 matmul with the dequantized weights up to summation order (transformers
/// dequantizes GGUF checkpoints to f32, and that is the parity reference): weights are turned into
/// f32 inside the kernels and activations are never quantized. (The CPU backend's batch-1 decode
/// may instead read a `VNNIMatrix`, whose integer digits of the input are fp32-accurate.)
///
/// Two paths: with few input rows (decode) a fused dequantize-and-dot kernel streams the weight
/// bytes once, spread over `WorkerPool.shared`; with many rows (prefill, batches) panels of the
/// weight are dequantized into a cache-sized scratch and multiplied with OpenBLAS `sgemm`.
public final class WeightMatrix: @unchecked Sendable {
    public let name: String
    public let outFeatures: Int
    public let inFeatures: Int
    /// The type the weights are kept in (`.f32` after a `.f32` conversion).
    public let type: GGMLType
    /// Bytes of one output row in `type`.
    public let rowBytes: Int

    let base: UnsafeRawPointer
    // Keeps `base` alive: the mapped file or heap bytes it points into.
    private let owner: AnyObject?

    public init(_ raw: RawTensor, keep: WeightPrecision = .native) throws {
        guard raw.shape.count == 2 else {
            throw TensorShapeError(tensor: raw.name, "a weight matrix must be 2-D, shape is \(raw.shape)")
        }
        let (out, inF) = (raw.shape[0], raw.shape[1])
        guard out > 0, inF > 0 else {
            throw TensorShapeError(tensor: raw.name, "a weight matrix must not be empty, shape is \(raw.shape)")
        }
        guard raw.type.isDequantizable else {
            throw UnsupportedTypeError(tensor: raw.name, type: raw.type, operation: "matrix multiplication")
        }
        guard let rowBytes = raw.type.byteCount(elements: inF) else {
            throw TensorShapeError(tensor: raw.name, "row length \(inF) is not a multiple of the \(raw.type) block size \(raw.type.blockSize)")
        }
        let (total, overflow) = rowBytes.multipliedReportingOverflow(by: out)
        guard !overflow, total <= raw.data.count, let src = raw.data.baseAddress else {
            throw TensorShapeError(tensor: raw.name, "shape \(raw.shape) of \(raw.type) needs \(total) bytes, data has \(raw.data.count)")
        }
        name = raw.name
        outFeatures = out
        inFeatures = inF
        switch keep {
        case .native:
            type = raw.type
            self.rowBytes = rowBytes
            base = src
            owner = raw.owner
        case .f32:
            let owned = OwnedBytes(count: out * inF * 4)
            let dst = owned.pointer.assumingMemoryBound(to: Float.self)
            WorkerPool.shared.parallelFor((out + 63) / 64) { chunk in
                for o in (chunk * 64)..<min(out, chunk * 64 + 64) {
                    TillerTensor.dequantizeRow(raw.type, src + o * rowBytes, count: inF, into: dst + o * inF)
                }
            }
            type = .f32
            self.rowBytes = inF * 4
            base = UnsafeRawPointer(owned.pointer)
            owner = owned
        }
    }

    /// Bytes of weight data (what a matvec streams from memory).
    public var byteCount: Int { rowBytes * outFeatures }

    /// Output row `o` as Float (an embedding lookup).
    public func dequantizeRow(_ o: Int, into dst: UnsafeMutablePointer<Float>) {
        precondition(o >= 0 && o < outFeatures, "\(name): row \(o) out of 0..<\(outFeatures)")
        TillerTensor.dequantizeRow(type, base + o * rowBytes, count: inFeatures, into: dst)
    }

    /// y[r, o] = Σ_i W[o, i] · x[r, i] for r in 0..<rows; x is row-major rows×inFeatures,
    /// y row-major rows×outFeatures. `x` and `y` must not overlap. The kernel is
    /// `CPUKernelChoice`'s for a matrix without copies.
    public func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        apply(x, rows: rows, into: y,
              kernel: CPUKernelChoice.kernel(type: type, inFeatures: inFeatures, rows: rows, copies: .none, features: .current))
    }

    /// `apply` through a given kernel on the stored blocks (`panelsSgemm`,
    /// `dequantizedPanelsPacked`, `fusedOneRow` or `fusedRows`; the copies' kernels are not this
    /// matrix's and run as `panelsSgemm` or `fusedRows`).
    public func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, kernel: CPUKernel) {
        guard rows > 0 else { return }
        switch kernel {
        case .dequantizedPanelsPacked:
            if type != .f32, PackedMatrix.applyDequantizingPanels(self, x, rows: rows, into: y) { return }
            applyPanels(x, rows: rows, into: y)
        case .panelsSgemm, .packedCopy, .fp32CopySgemm:
            applyPanels(x, rows: rows, into: y)
        case .fusedOneRow:
            for r in 0..<rows { applyFused(x + r * inFeatures, rows: 1, into: y + r * outFeatures) }
        case .fusedRows, .vnniOneRow, .vnniRows:
            applyFused(x, rows: rows, into: y)
        }
    }

    // MARK: - Many rows: dequantized panels × sgemm

    /// Output rows per GEMM task and the number of tasks: a quantized panel is dequantized into a
    /// scratch of about 512 KiB, so that it is still in L2 when sgemm reads it; there are at least
    /// as many tasks as threads, and a multiple of them, so that the threads finish together.
    func panelPlan(threads: Int) -> (rows: Int, tasks: Int) {
        let panelBytes = 512 * 1024
        var tasks = type == .f32 ? threads : max(threads, (outFeatures * inFeatures * 4 + panelBytes - 1) / panelBytes)
        tasks = (tasks + threads - 1) / threads * threads
        let rows = min(outFeatures, max(16, ((outFeatures + tasks - 1) / tasks + 15) / 16 * 16))
        return (rows, (outFeatures + rows - 1) / rows)
    }

    private func applyPanels(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        BLASThreads.configure()
        let pool = WorkerPool.shared
        let (panel, tasks) = panelPlan(threads: pool.threadCount)
        let inF = inFeatures
        pool.parallelFor(tasks) { t in
            let start = t * panel
            let n = min(panel, outFeatures - start)
            if type == .f32 {
                sgemmPanel(x, rows: rows, weights: base.assumingMemoryBound(to: Float.self) + start * inF, count: n, into: y + start)
                return
            }
            let scratch = ScratchPool.shared.take(floats: n * inF)
            defer { ScratchPool.shared.give(scratch) }
            for o in 0..<n {
                TillerTensor.dequantizeRow(type, base + (start + o) * rowBytes, count: inF, into: scratch.pointer + o * inF)
            }
            sgemmPanel(x, rows: rows, weights: scratch.pointer, count: n, into: y + start)
        }
    }

    /// y[r, 0..<count] (row stride outFeatures) = x · Wpanelᵀ, for a panel of `count` f32 rows.
    private func sgemmPanel(_ x: UnsafePointer<Float>, rows: Int, weights: UnsafePointer<Float>, count: Int,
                            into y: UnsafeMutablePointer<Float>) {
        tiller_sgemm(Int32(TillerBlasNoTrans), Int32(TillerBlasTrans),
                     Int32(rows), Int32(count), Int32(inFeatures),
                     1, x, Int32(inFeatures),
                     weights, Int32(inFeatures),
                     0, y, Int32(outFeatures))
    }

    // MARK: - Few rows: fused dequantize + dot

    private func applyFused(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        let pool = WorkerPool.shared
        let tile = matvecTileRows(pool: pool)
        let tiles = (outFeatures + tile - 1) / tile
        let sumsNeeded = rows == 1 && matvecNeedsGroupSums(type)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: sumsNeeded ? inFeatures / 32 : 0) { sums in
            if sumsNeeded { groupSums32(x, count: inFeatures, into: sums.baseAddress!) }
            let groupSums = sumsNeeded ? UnsafePointer(sums.baseAddress!) : nil
            pool.parallelFor(tiles) { t in
                let o0 = t * tile
                matvecTile(x, rows: rows, groupSums: groupSums, into: y, outRange: o0..<min(outFeatures, o0 + tile))
            }
        }
    }

    /// Output rows per parallel task: enough tasks for load balance, each big enough to amortize
    /// the hand-off.
    func matvecTileRows(pool: WorkerPool) -> Int {
        let tasks = pool.threadCount * 8
        let rowsPerTask = (outFeatures + tasks - 1) / tasks
        return max(4, (rowsPerTask + 3) / 4 * 4)
    }

    func matvecTile(_ x: UnsafePointer<Float>, rows: Int, groupSums: UnsafePointer<Float>?,
                    into y: UnsafeMutablePointer<Float>, outRange: Range<Int>) {
        if rows == 1, fusedMatvec(type, base, rowBytes: rowBytes, inFeatures: inFeatures, x, groupSums: groupSums, y, outRange) {
            return
        }
        // Several input rows: dequantize each weight row once into L1 and share it among them.
        let inF = inFeatures
        withUnsafeTemporaryAllocation(of: Float.self, capacity: inF) { buffer in
            let w = buffer.baseAddress!
            for o in outRange {
                TillerTensor.dequantizeRow(type, base + o * rowBytes, count: inF, into: w)
                multiRowDot(w, count: inF, x, xStride: inF, rows: rows, y + o, yStride: outFeatures)
            }
        }
    }
}

/// OpenBLAS runs single-threaded: GEMMs are split into panels over `WorkerPool.shared`, so there
/// is one set of threads. Two pools on the same cores (OpenBLAS's spin-waiting threads and ours)
/// oversubscribe them, and on a busy machine that made a 64-row GEMM ~300× slower.
/// Code that calls cblas directly on large problems should split the work over the pool likewise.
public enum BLASThreads {
    private static let configured: Bool = {
        tiller_blas_set_threads(1)
        return true
    }()
    public static func configure() { _ = configured }
    /// The BLAS kernel family in use (OpenBLAS's core name, e.g. "Haswell").
    public static var core: String { String(cString: tiller_blas_core()) }
}

/// Reusable f32 scratch buffers for GEMM panels, so a call does not fault in fresh pages.
final class ScratchPool: @unchecked Sendable {
    static let shared = ScratchPool()

    final class Buffer {
        let pointer: UnsafeMutablePointer<Float>
        let capacity: Int
        init(capacity: Int) {
            self.capacity = capacity
            pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64).bindMemory(to: Float.self, capacity: capacity)
        }
        deinit { pointer.deallocate() }
    }

    private let lock = NSLock()
    private var free: [Buffer] = []

    func take(floats: Int) -> Buffer {
        lock.lock()
        defer { lock.unlock() }
        if let i = free.firstIndex(where: { $0.capacity >= floats }) {
            return free.remove(at: i)
        }
        return Buffer(capacity: floats)
    }

    func give(_ buffer: Buffer) {
        lock.lock()
        defer { lock.unlock() }
        if free.count < 8 { free.append(buffer) }
    }
}
