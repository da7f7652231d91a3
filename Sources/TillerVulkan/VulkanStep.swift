import CVulkan
import Foundation
import TillerModels
import TillerTensor

/// A range of a device buffer: `offset` fp32 elements in.
public struct VulkanSlice {
    public let buffer: VulkanBuffer
    public let offset: Int
    public init(_ buffer: VulkanBuffer, offset: Int = 0) {
        self.buffer = buffer
        self.offset = offset
    }
}

/// The gated activation's kind (ACT in act.comp).
public enum VulkanActivation: UInt32, Sendable { case silu = 0, geluTanh = 1, gelu = 2 }

/// One forward step recorded into one command buffer and submitted once. Ops are recorded in
/// order; a memory barrier goes in only where an op reads or writes a range that an op since the
/// last barrier wrote (or writes a range one of them read). Host data for the step (token ids,
/// residual rows, RoPE tables) is copied into host-visible staging at record time; `read`s copy
/// into host-visible staging and are copied out to their destinations when `submit` returns.
public final class VulkanStep {
    let device: VulkanDevice
    private let ctx: CommandContext
    private var cmd: VkCommandBuffer { ctx.buffer }
    private var descriptorPools: [VkDescriptorPool] = []
    private var staging: [VulkanBuffer] = []
    private var stagingUsed = 0
    private var readbacks: [(from: UnsafeRawPointer, to: UnsafeMutablePointer<Float>, count: Int)] = []
    /// Buffers the commands use, kept alive until the step has run.
    private var retained: [VulkanBuffer] = []
    private var pendingReads: [(ObjectIdentifier, Range<Int>)] = []
    private var pendingWrites: [(ObjectIdentifier, Range<Int>)] = []
    private var submitted = false
    /// Barriers recorded (for the tests of the hazard tracking).
    public private(set) var barriers = 0
    public private(set) var dispatches = 0
    /// Timestamps around each command when TILLER_VULKAN_PROFILE is set.
    private let timestamps: StepTimestamps?
    private let started = Date()

    public init(device: VulkanDevice) throws {
        self.device = device
        ctx = try CommandContext(device: device)
        timestamps = VulkanSwitches.profile ? StepTimestamps(device: device) : nil
    }

    /// Records one command, bracketed by timestamps named `name` when profiling.
    private func command(_ name: String, _ body: () -> Void) throws {
        if let t = timestamps { try t.bracket(cmd, name, body) } else { body() }
    }

    deinit {
        for p in descriptorPools { tiller_vk.vkDestroyDescriptorPool(device.device, p, nil) }
        ctx.destroy()
    }

    // MARK: - Hazards

    private typealias Access = (buffer: VulkanBuffer, range: Range<Int>)

    private static func overlaps(_ a: [(ObjectIdentifier, Range<Int>)], _ b: Access) -> Bool {
        a.contains { $0.0 == b.buffer.id && $0.1.overlaps(b.range) }
    }

    /// Puts a barrier in when this op's accesses conflict with un-barriered earlier ones.
    private func order(reads: [Access], writes: [Access]) {
        let conflict = reads.contains { Self.overlaps(pendingWrites, $0) }
            || writes.contains { Self.overlaps(pendingWrites, $0) || Self.overlaps(pendingReads, $0) }
        if conflict {
            computeBarrier(cmd)
            barriers += 1
            pendingReads.removeAll(keepingCapacity: true)
            pendingWrites.removeAll(keepingCapacity: true)
        }
        for r in reads { pendingReads.append((r.buffer.id, r.range)); retained.append(r.buffer) }
        for w in writes { pendingWrites.append((w.buffer.id, w.range)); retained.append(w.buffer) }
    }

    private func span(_ s: VulkanSlice, _ count: Int) -> Access { (s.buffer, s.offset..<(s.offset + max(count, 1))) }
    private func whole(_ b: VulkanBuffer) -> Access { (b, 0..<b.count) }

    // MARK: - Dispatch

    private func descriptorSet() throws -> VkDescriptorSet {
        if let pool = descriptorPools.last, let set = allocate(from: pool) { return set }
        var size = VkDescriptorPoolSize(type: VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount: UInt32(512 * VulkanPipelines.bindings))
        var info = VkDescriptorPoolCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
        info.maxSets = 512
        info.poolSizeCount = 1
        var pool: VkDescriptorPool?
        try withUnsafePointer(to: &size) { sp in
            info.pPoolSizes = sp
            try check(tiller_vk.vkCreateDescriptorPool(device.device, &info, nil, &pool), "vkCreateDescriptorPool")
        }
        descriptorPools.append(pool!)
        guard let set = allocate(from: pool!) else { throw VulkanError("Vulkan: a new descriptor pool gave no set") }
        return set
    }

    private func allocate(from pool: VkDescriptorPool) -> VkDescriptorSet? {
        var layout: VkDescriptorSetLayout? = device.pipelines.setLayout
        var set: VkDescriptorSet?
        let r: VkResult = withUnsafePointer(to: &layout) { lp in
            var info = VkDescriptorSetAllocateInfo()
            info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO
            info.descriptorPool = pool
            info.descriptorSetCount = 1
            info.pSetLayouts = lp
            return tiller_vk.vkAllocateDescriptorSets(device.device, &info, &set)
        }
        return r == VK_SUCCESS ? set : nil
    }

    /// Records one dispatch of `shader` over `groups` workgroups with `buffers` at bindings 0, 1, …
    /// (whole buffers; offsets travel in `push`).
    /// `label`: the profile's name for it (default the variant's).
    private func dispatch(_ shader: String, spec: [UInt32] = [], label: String? = nil, buffers: [VulkanBuffer], push: [UInt32],
                          groups: (UInt32, UInt32, UInt32), reads: [Access], writes: [Access]) throws {
        if groups.0 == 0 || groups.1 == 0 || groups.2 == 0 { return }
        let pipeline = try device.pipelines.pipeline(shader, spec)
        order(reads: reads, writes: writes)
        let set = try descriptorSet()
        var infos = (0..<VulkanPipelines.bindings).map { i -> VkDescriptorBufferInfo in
            VkDescriptorBufferInfo(buffer: buffers[min(i, buffers.count - 1)].buffer, offset: 0, range: VkDeviceSize(UInt64.max))
        }
        infos.withUnsafeMutableBufferPointer { ip in
            var writes = (0..<VulkanPipelines.bindings).map { i -> VkWriteDescriptorSet in
                var w = VkWriteDescriptorSet()
                w.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
                w.dstSet = set
                w.dstBinding = UInt32(i)
                w.descriptorCount = 1
                w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                w.pBufferInfo = UnsafePointer(ip.baseAddress! + i)
                return w
            }
            tiller_vk.vkUpdateDescriptorSets(device.device, UInt32(writes.count), &writes, 0, nil)
        }
        tiller_vk.vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline)
        var s: VkDescriptorSet? = set
        tiller_vk.vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, device.pipelines.layout, 0, 1, &s, 0, nil)
        var p = push
        precondition(p.count * 4 <= VulkanPipelines.pushBytes)
        tiller_vk.vkCmdPushConstants(cmd, device.pipelines.layout, VK_SHADER_STAGE_COMPUTE_BIT.rawValue, 0, UInt32(p.count * 4), &p)
        try command(label ?? shader) { tiller_vk.vkCmdDispatch(cmd, groups.0, groups.1, groups.2) }
        dispatches += 1
    }

    /// n workgroups as an x × y grid (x ≤ 65535); shaders flatten it with group_index().
    private static func grid(_ n: Int) -> (UInt32, UInt32, UInt32) {
        if n <= 0 { return (0, 0, 0) }
        let x = min(n, 65535)
        return (UInt32(x), UInt32((n + x - 1) / x), 1)
    }

    private static func u(_ i: Int) -> UInt32 { UInt32(truncatingIfNeeded: i) }
    private static func f(_ x: Float) -> UInt32 { x.bitPattern }

    // MARK: - Staging

    /// Host bytes copied into host-visible staging now; the returned buffer and byte offset stay
    /// valid until the step has run.
    private func stage(_ bytes: UnsafeRawBufferPointer) throws -> (VulkanBuffer, Int) {
        let n = (bytes.count + 15) & ~15
        if staging.isEmpty || stagingUsed + n > staging.last!.bytes {
            staging.append(try VulkanBuffer(device: device, bytes: max(n, 1 << 20), placement: .host))
            stagingUsed = 0
        }
        let b = staging.last!
        let at = stagingUsed
        if let base = bytes.baseAddress, bytes.count > 0 { b.mapped!.advanced(by: at).copyMemory(from: base, byteCount: bytes.count) }
        stagingUsed += n
        return (b, at)
    }

    private func copy(from src: VulkanBuffer, byteOffset so: Int, to dst: VulkanBuffer, byteOffset doff: Int, bytes: Int) throws {
        var region = VkBufferCopy(srcOffset: VkDeviceSize(so), dstOffset: VkDeviceSize(doff), size: VkDeviceSize(bytes))
        try command("copy") { tiller_vk.vkCmdCopyBuffer(cmd, src.buffer, dst.buffer, 1, &region) }
    }

    // MARK: - Ops

    /// dst[0 ..< host.count] = host (residual rows in, tables computed on the host).
    public func write(_ host: UnsafeBufferPointer<Float>, into dst: VulkanSlice) throws {
        if host.isEmpty { return }
        let (b, at) = try stage(UnsafeRawBufferPointer(host))
        order(reads: [], writes: [span(dst, host.count)])
        try copy(from: b, byteOffset: at, to: dst.buffer, byteOffset: dst.offset * 4, bytes: host.count * 4)
    }

    /// x[r] = table row tokens[r] (· scale), dequantised from the stored blocks.
    public func embed(_ table: VulkanMatrix, tokens: [Int], scale: Float?, into x: VulkanSlice) throws {
        if tokens.isEmpty { return }
        for t in tokens where t < 0 || Int(t) >= table.outFeatures {
            throw VulkanError("token id \(t) is outside the embedding table's \(table.outFeatures) rows")
        }
        let ids = tokens.map { UInt32($0) }
        let (tb, at) = try ids.withUnsafeBytes { try stage($0) }
        let width = table.inFeatures, n = tokens.count * width
        for part in table.parts {
            try dispatch("embed_\(table.type)", buffers: [part.buffer, tb, x.buffer],
                         push: [Self.u(at / 4), Self.u(x.offset), Self.u(tokens.count), Self.u(width), Self.u(table.rowBytes),
                                scale == nil ? 0 : 1, Self.u(part.firstRow), Self.u(part.rows), Self.f(scale ?? 1)],
                         groups: Self.grid((n + 255) / 256), reads: [whole(part.buffer)], writes: [span(x, n)])
        }
    }

    /// y[rows, out] = x[rows, in] · Wᵀ (x and y must not overlap).
    public func matmul(_ w: VulkanMatrix, _ x: VulkanSlice, rows: Int, into y: VulkanSlice) throws {
        let choice = VulkanKernelChoice.decide(type: w.type, rows: rows, subgroupArithmetic: device.info.features.subgroupArithmetic)
        try matmul(w, x, rows: rows, into: y, choice: choice)
    }

    /// The product through a named mat-vec variant (the tests run both reductions).
    func matvec(shader: String, _ w: VulkanMatrix, _ x: VulkanSlice, rows: Int, into y: VulkanSlice) throws {
        let kernel: VulkanKernelChoice.Kernel = shader.hasPrefix("matvec_sg") ? .matvecSubgroup : .matvecShared
        try matmul(w, x, rows: rows, into: y, choice: VulkanKernelChoice(kernel: kernel, type: w.type))
    }

    private func matmul(_ w: VulkanMatrix, _ x: VulkanSlice, rows: Int, into y: VulkanSlice, choice: VulkanKernelChoice) throws {
        if rows == 0 || w.outFeatures == 0 { return }
        let reads = [span(x, rows * w.inFeatures)]
        for part in w.parts where part.rows > 0 {
            let push = [Self.u(x.offset), Self.u(y.offset + part.firstRow), Self.u(rows), Self.u(part.rows), Self.u(w.inFeatures),
                        Self.u(w.rowBytes), Self.u(w.outFeatures)]
            let groups: (UInt32, UInt32, UInt32)
            var spec: [UInt32] = []
            switch choice.kernel {
            case .matvecSubgroup:
                // One output feature per subgroup of the 64 invocations (the shader covers all
                // OUTS whatever subgroup size the compiler picks).
                let outs = max(1, 64 / max(device.info.features.subgroupSize, 1))
                let g = Self.grid((part.rows + outs - 1) / outs)
                groups = (g.0, g.1, UInt32((rows + 3) / 4))
                spec = [64, UInt32(outs)]
            case .matvecShared:
                let g = Self.grid(part.rows)
                groups = (g.0, g.1, UInt32((rows + 3) / 4))
                spec = [64]
            case .tiled:
                groups = (UInt32((part.rows + 63) / 64), UInt32((rows + choice.rowTile - 1) / choice.rowTile), 1)
                spec = [UInt32(choice.rowTile)]
            }
            try dispatch(choice.shader, spec: spec, label: choice.description, buffers: [part.buffer, x.buffer, y.buffer], push: push, groups: groups,
                         reads: reads + [whole(part.buffer)], writes: [span(y, rows * w.outFeatures)])
        }
    }

    /// y[r] = x[r] · 1/sqrt(mean(x[r]²) + eps) · scale (in place allowed: x == y).
    public func rmsNorm(_ x: VulkanSlice, rows: Int, width: Int, scale: VulkanSlice, eps: Float, into y: VulkanSlice) throws {
        try dispatch("rmsnorm", buffers: [x.buffer, y.buffer, scale.buffer],
                     push: [Self.u(x.offset), Self.u(y.offset), Self.u(scale.offset), Self.u(rows), Self.u(width), Self.f(eps)],
                     groups: Self.grid(rows), reads: [span(x, rows * width), span(scale, width)], writes: [span(y, rows * width)])
    }

    /// Rotate-half RoPE in place on `heads` heads of `headDim` per row (rows `heads·headDim` apart);
    /// cos/sin are [rows, headDim/2].
    public func rope(_ x: VulkanSlice, rows: Int, heads: Int, headDim: Int, cos: VulkanSlice, sin: VulkanSlice) throws {
        let half = headDim / 2, n = rows * heads * half
        try dispatch("rope", buffers: [x.buffer, cos.buffer, sin.buffer],
                     push: [Self.u(x.offset), Self.u(cos.offset), Self.u(sin.offset), Self.u(rows), Self.u(heads), Self.u(headDim),
                            Self.u(heads * headDim)],
                     groups: Self.grid((n + 255) / 256), reads: [span(cos, rows * half), span(sin, rows * half)],
                     writes: [span(x, rows * heads * headDim)])
    }

    /// RoPE tables for rows at `positions`: cos/sin [positions.count, half] of float(position)·invFreq[i],
    /// computed on the host in fp32 exactly as the CPU backend does, then copied to the device.
    public func ropeTables(positions: [Int], invFreq: [Float], half: Int, cos: VulkanSlice, sin: VulkanSlice) throws {
        var c = [Float](repeating: 0, count: positions.count * half), s = c
        c.withUnsafeMutableBufferPointer { cp in
            s.withUnsafeMutableBufferPointer { sp in
                writeRopeTables(positions: positions, invFreq: invFreq, half: half, cos: cp.baseAddress!, sin: sp.baseAddress!)
            }
        }
        try c.withUnsafeBufferPointer { try write($0, into: cos) }
        try s.withUnsafeBufferPointer { try write($0, into: sin) }
    }

    /// gate[i] ← act(gate[i]) · up[i] for `count` elements.
    public func gatedActivation(_ gate: VulkanSlice, _ up: VulkanSlice, count: Int, kind: VulkanActivation) throws {
        try dispatch("act", spec: [kind.rawValue], buffers: [gate.buffer, up.buffer],
                     push: [Self.u(gate.offset), Self.u(up.offset), Self.u(count), Self.u(count), Self.u(count), Self.u(max(count, 1))],
                     groups: Self.grid((count + 255) / 256), reads: [span(up, count)], writes: [span(gate, count)])
    }

    private func ewise(_ op: UInt32, x: VulkanSlice?, y: VulkanSlice, count: Int, width: Int, a: Float, xCount: Int) throws {
        let xs = x ?? y
        try dispatch("ewise", spec: [op], buffers: [xs.buffer, y.buffer],
                     push: [Self.u(xs.offset), Self.u(y.offset), Self.u(count), Self.u(max(width, 1)), Self.f(a)],
                     groups: Self.grid((count + 255) / 256), reads: x.map { [span($0, xCount)] } ?? [],
                     writes: [span(y, count)])
    }

    /// y[i] += x[i]
    public func add(_ x: VulkanSlice, into y: VulkanSlice, count: Int) throws {
        try ewise(1, x: x, y: y, count: count, width: count, a: 1, xCount: count)
    }

    /// y[r·width + i] += b[i] for `rows` rows (a projection's bias).
    public func addBias(_ b: VulkanSlice, width: Int, rows: Int, into y: VulkanSlice) throws {
        try ewise(2, x: b, y: y, count: rows * width, width: width, a: 1, xCount: width)
    }

    /// x[r·width + i] += coef · vector[i] for `rows` rows (a steering vector already on the device).
    public func addScaled(vector: VulkanSlice, coef: Float, into x: VulkanSlice, rows: Int, width: Int) throws {
        try ewise(2, x: vector, y: x, count: rows * width, width: width, a: coef, xCount: width)
    }

    /// x[r] ← x[r] − (x[r]·d) d for a unit direction d, on `rows` rows (directional ablation).
    public func projectOut(direction: VulkanSlice, from x: VulkanSlice, rows: Int, width: Int) throws {
        try dispatch("projout", buffers: [direction.buffer, x.buffer],
                     push: [Self.u(direction.offset), Self.u(x.offset), Self.u(rows), Self.u(width)],
                     groups: Self.grid(rows), reads: [span(direction, width)], writes: [span(x, rows * width)])
    }

    /// x[i] ← s · x[i]
    public func scale(_ x: VulkanSlice, by s: Float, count: Int) throws {
        try ewise(3, x: nil, y: x, count: count, width: count, a: s, xCount: 0)
    }

    /// x[i] ← cap · tanh(x[i] / cap)
    public func softcap(_ x: VulkanSlice, cap: Float, count: Int) throws {
        try ewise(4, x: nil, y: x, count: count, width: count, a: cap, xCount: 0)
    }

    /// dst[i] = src[i] (KV-cache writes, gathers).
    public func copy(_ src: VulkanSlice, into dst: VulkanSlice, count: Int) throws {
        if count == 0 { return }
        order(reads: [span(src, count)], writes: [span(dst, count)])
        try copy(from: src.buffer, byteOffset: src.offset * 4, to: dst.buffer, byteOffset: dst.offset * 4, bytes: count * 4)
    }

    /// Causal attention of each job's new queries against its cached keys/values (the seam's
    /// AttentionJob, its slices naming VulkanBuffers).
    public func attention(_ jobs: [AttentionJob]) throws {
        for job in jobs {
            let j = (q: job.q.vk, keys: job.keys.vk, values: job.values.vk, prefixKeys: job.prefixKeys?.vk,
                     prefixValues: job.prefixValues?.vk, out: job.out.vk, qStride: job.qStride, queries: job.queries,
                     firstPosition: job.firstPosition, heads: job.heads, kvHeads: job.kvHeads, headDim: job.headDim,
                     prefixLength: job.prefixLength, window: job.window, scale: job.scale, softcap: job.softcap)
            guard j.headDim <= 256, j.headDim % 4 == 0, j.kvHeads > 0, j.heads % j.kvHeads == 0 else {
                throw VulkanError("attention: headDim \(j.headDim) (a multiple of 4, at most 256), heads \(j.heads), kvHeads \(j.kvHeads) are not supported")
            }
            let kvStride = j.kvHeads * j.headDim
            let own = j.firstPosition + j.queries - j.prefixLength
            let pk = j.prefixKeys ?? j.keys, pv = j.prefixValues ?? j.values
            var reads = [span(j.q, (j.queries - 1) * j.qStride + j.heads * j.headDim),
                         span(j.keys, max(own, 0) * kvStride), span(j.values, max(own, 0) * kvStride)]
            if j.prefixLength > 0 { reads += [span(pk, j.prefixLength * kvStride), span(pv, j.prefixLength * kvStride)] }
            // Keys and values as vec4s when every row they read starts on a 16-byte boundary.
            let aligned = [j.keys.offset, j.values.offset, pk.offset, pv.offset, kvStride].allSatisfy { $0 % 4 == 0 }
            try dispatch("attention", spec: [64, aligned ? 1 : 0], buffers: [j.q.buffer, j.keys.buffer, j.values.buffer, pk.buffer, pv.buffer, j.out.buffer],
                         push: [Self.u(j.q.offset), Self.u(j.keys.offset), Self.u(j.values.offset), Self.u(pk.offset), Self.u(pv.offset),
                                Self.u(j.out.offset), Self.u(j.qStride), Self.u(j.queries), Self.u(j.firstPosition), Self.u(j.heads),
                                Self.u(j.kvHeads), Self.u(j.headDim), Self.u(j.prefixLength), Self.u(j.window ?? 0),
                                Self.f(j.scale), Self.f(j.softcap ?? 0)],
                         groups: Self.grid(j.queries * j.heads), reads: reads,
                         writes: [span(j.out, (j.queries - 1) * j.qStride + j.heads * j.headDim)])
        }
    }

    /// host[0 ..< count] = src, filled when `submit` returns.
    public func read(_ src: VulkanSlice, count: Int, into host: UnsafeMutablePointer<Float>) throws {
        if count == 0 { return }
        let n = count * 4
        if staging.isEmpty || stagingUsed + n > staging.last!.bytes {
            staging.append(try VulkanBuffer(device: device, bytes: max(n, 1 << 20), placement: .host))
            stagingUsed = 0
        }
        let b = staging.last!
        let at = stagingUsed
        stagingUsed += (n + 15) & ~15
        order(reads: [span(src, count)], writes: [(b, (at / 4)..<(at / 4 + count))])
        try copy(from: src.buffer, byteOffset: src.offset * 4, to: b, byteOffset: at, bytes: n)
        readbacks.append((UnsafeRawPointer(b.mapped! + at), host, count))
    }

    /// Runs the recorded step and fills every `read` destination. A step is submitted once.
    public func submit() throws {
        precondition(!submitted, "a VulkanStep is submitted once")
        submitted = true
        hostReadBarrier(cmd)
        let submitted = Date()
        try ctx.submitAndWait()
        if let t = timestamps {
            try t.collect()
            VulkanProfile.shared.step(barriers: barriers, record: submitted.timeIntervalSince(started),
                                      submit: Date().timeIntervalSince(submitted))
        }
        for r in readbacks { r.to.update(from: r.from.assumingMemoryBound(to: Float.self), count: r.count) }
        readbacks.removeAll()
        retained.removeAll()
    }
}
