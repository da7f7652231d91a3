import Foundation
import TillerFormats
import TillerModels
import TillerTensor

// TillerModels' Backend seam on a Vulkan device: weights and every buffer device-resident, each
// forward step recorded into one command buffer (VulkanStep) and submitted once, the reads it
// asked for copied out after the fence.

extension VulkanBuffer: BackendBuffer {}
extension VulkanMatrix: MatrixOperator {}

extension BufferSlice {
    /// The Vulkan slice behind a slice of a VulkanBackend buffer.
    @inline(__always)
    var vk: VulkanSlice { VulkanSlice(unsafeDowncast(buffer, to: VulkanBuffer.self), offset: offset) }
}

public final class VulkanBackend: Backend, @unchecked Sendable {
    public let device: VulkanDevice
    public var name: String { "vulkan:\(device.info.index)" }

    public init(device: VulkanDevice) {
        self.device = device
    }

    /// The backend on Vulkan device `index` (`vulkan:N`).
    public static func open(_ index: Int) throws -> VulkanBackend {
        VulkanBackend(device: try VulkanDevice.open(index))
    }

    public func matrix(_ raw: RawTensor, modelBytesFP32: Int) throws -> MatrixOperator {
        let need = raw.type.byteCount(elements: raw.elementCount) ?? raw.data.count
        let have = device.info.deviceLocalBytes, used = device.allocatedBytes
        // The smallest stored form Tiller reads is about a seventh of fp32 (4.5 bits): a model whose
        // fp32 size is over 7× the device's memory cannot fit, whatever its types; say so at the
        // first matrix, before anything is uploaded. Past that, each matrix is checked against what is left.
        if modelBytesFP32 / 7 > have {
            throw VulkanError("the model needs at least \((modelBytesFP32 / 7) >> 20) MiB of device memory (\(modelBytesFP32 >> 20) MiB in fp32); "
                              + "\(device.info.name) has \(have >> 20) MiB")
        }
        if used + need > have {
            throw VulkanError("the model does not fit \(device.info.name): \(have >> 20) MiB of device memory, "
                              + "\(used >> 20) MiB already used, tensor '\(raw.name)' needs \(need >> 20) MiB more")
        }
        return try VulkanMatrix(device: device, raw)
    }

    public func upload(_ values: [Float]) throws -> BackendBuffer {
        let b = try device.upload(values)
        b.hostCopy = values
        return b
    }

    public func buffer(count: Int) -> BackendBuffer {
        do {
            return try device.buffer(count: count)
        } catch {
            VulkanRecorder.stop("allocating a buffer of \(count) floats", error)
        }
    }

    /// The kernel choice here depends on the row count (mat-vec or tiled) and has no row-invariant
    /// form yet: on Vulkan a row's bits may depend on the rows beside it (within fp32 rounding).
    public func makeRecorder(rowInvariant: Bool) -> StepRecorder { VulkanRecorder(device: device) }

    public func kernel(for matrix: MatrixOperator, rows: Int) -> String {
        let m = unsafeDowncast(matrix, to: VulkanMatrix.self)
        return VulkanKernelChoice.decide(type: m.type, rows: rows, subgroupArithmetic: device.info.features.subgroupArithmetic).description
    }
}

/// A reusable recorder: one VulkanStep per step, made at the first op after a submit. The seam's
/// ops do not throw; a device failure mid-step (out of memory for staging, a lost device at
/// submit or fence wait) stops the process with an error naming the device, the op, the failing
/// call and its result (exit status 1, not a crash). A run's stored rows survive: `tiller run`
/// resumes from them.
final class VulkanRecorder: StepRecorder {
    let device: VulkanDevice
    private var step: VulkanStep?

    init(device: VulkanDevice) { self.device = device }

    /// Nothing recorded after a failed op or step can be trusted, and the seam cannot throw:
    /// the error goes to standard error and the process exits (stdio flushed, status 1).
    static func stop(_ what: String, _ error: Error) -> Never {
        FileHandle.standardError.write(Data("error: Vulkan \(what) failed: \(error)\n".utf8))
        exit(1)
    }

    private func run(_ what: String, _ body: (VulkanStep) throws -> Void) {
        do {
            if step == nil { step = try VulkanStep(device: device) }
            try body(step!)
        } catch {
            Self.stop(what, error)
        }
    }

    func write(_ host: UnsafeBufferPointer<Float>, into dst: BufferSlice) { run("write") { try $0.write(host, into: dst.vk) } }

    func embed(_ table: MatrixOperator, tokens: [Int], scale: Float?, into x: BufferSlice) {
        run("embed") { try $0.embed(unsafeDowncast(table, to: VulkanMatrix.self), tokens: tokens, scale: scale, into: x.vk) }
    }

    func matmul(_ w: MatrixOperator, _ x: BufferSlice, rows: Int, into y: BufferSlice) {
        run("matmul") { try $0.matmul(unsafeDowncast(w, to: VulkanMatrix.self), x.vk, rows: rows, into: y.vk) }
    }

    func rmsNorm(_ x: BufferSlice, rows: Int, width: Int, weight: BufferSlice, eps: Float, into y: BufferSlice) {
        run("rmsNorm") { try $0.rmsNorm(x.vk, rows: rows, width: width, scale: weight.vk, eps: eps, into: y.vk) }
    }

    func ropeTables(positions: [Int], invFreq: BufferSlice, half: Int, cos: BufferSlice, sin: BufferSlice) {
        run("ropeTables") { step in
            let b = invFreq.vk.buffer
            if b.hostCopy == nil { b.hostCopy = try device.read(b, count: b.count) }
            let freqs = Array(b.hostCopy![invFreq.offset..<(invFreq.offset + half)])
            try step.ropeTables(positions: positions, invFreq: freqs, half: half, cos: cos.vk, sin: sin.vk)
        }
    }

    func rope(_ x: BufferSlice, rows: Int, heads: Int, headDim: Int, cos: BufferSlice, sin: BufferSlice) {
        run("rope") { try $0.rope(x.vk, rows: rows, heads: heads, headDim: headDim, cos: cos.vk, sin: sin.vk) }
    }

    func gatedActivation(_ gate: BufferSlice, _ up: BufferSlice, count: Int, kind: Activation) {
        let k: VulkanActivation
        switch kind {
        case .silu: k = .silu
        case .geluTanh: k = .geluTanh
        case .gelu: k = .gelu
        }
        run("gatedActivation") { try $0.gatedActivation(gate.vk, up.vk, count: count, kind: k) }
    }

    func add(_ x: BufferSlice, into y: BufferSlice, count: Int) { run("add") { try $0.add(x.vk, into: y.vk, count: count) } }

    func addBias(_ bias: BufferSlice, width: Int, rows: Int, into y: BufferSlice) {
        run("addBias") { try $0.addBias(bias.vk, width: width, rows: rows, into: y.vk) }
    }

    func addScaled(_ vector: BufferSlice, coef: Float, into x: BufferSlice, rows: Int, width: Int) {
        run("addScaled") { try $0.addScaled(vector: vector.vk, coef: coef, into: x.vk, rows: rows, width: width) }
    }

    func projectOut(_ direction: BufferSlice, from x: BufferSlice, rows: Int, width: Int) {
        run("projectOut") { try $0.projectOut(direction: direction.vk, from: x.vk, rows: rows, width: width) }
    }

    func softcap(_ x: BufferSlice, cap: Float, count: Int) { run("softcap") { try $0.softcap(x.vk, cap: cap, count: count) } }

    func copy(_ src: BufferSlice, into dst: BufferSlice, count: Int) { run("copy") { try $0.copy(src.vk, into: dst.vk, count: count) } }

    func attention(_ jobs: [AttentionJob]) { run("attention") { try $0.attention(jobs) } }

    func read(_ src: BufferSlice, count: Int, into host: UnsafeMutablePointer<Float>) {
        run("read") { try $0.read(src.vk, count: count, into: host) }
    }

    func submit() {
        guard let s = step else { return }
        step = nil
        do { try s.submit() } catch { Self.stop("step", error) }
    }
}
