import CVulkan
import Foundation

/// A Vulkan buffer with its own memory: device-local storage (weights, activations, the KV cache,
/// steering vectors) or host-visible staging (per-step uploads and read-backs).
public final class VulkanBuffer: @unchecked Sendable {
    public enum Placement: Sendable { case device, host }
    let device: VulkanDevice
    let buffer: VkBuffer
    let memory: VkDeviceMemory
    public let bytes: Int
    let placement: Placement
    /// Mapped memory of a host buffer.
    let mapped: UnsafeMutableRawPointer?
    /// The values of a buffer made from host values (norm weights, RoPE frequencies, steering
    /// vectors), for ops computed on the host (RoPE tables).
    var hostCopy: [Float]?
    /// An identity for hazard tracking.
    var id: ObjectIdentifier { ObjectIdentifier(self) }

    /// fp32 elements the buffer holds.
    public var count: Int { bytes / 4 }

    init(device: VulkanDevice, bytes: Int, placement: Placement) throws {
        self.device = device
        self.placement = placement
        // Shaders read whole 32-bit words: round up so the last block's bytes are inside.
        let size = max(4, (bytes + 3) & ~3)
        self.bytes = size
        if placement == .device && size > device.info.features.maxStorageBufferRange {
            throw VulkanError("a \(size)-byte buffer exceeds the device's storage buffer range "
                              + "(\(device.info.features.maxStorageBufferRange) bytes) on \(device.info.name)")
        }
        var info = VkBufferCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
        info.size = VkDeviceSize(size)
        info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT.rawValue | VK_BUFFER_USAGE_TRANSFER_SRC_BIT.rawValue
            | VK_BUFFER_USAGE_TRANSFER_DST_BIT.rawValue
        info.sharingMode = VK_SHARING_MODE_EXCLUSIVE
        var buf: VkBuffer?
        try check(tiller_vk.vkCreateBuffer(device.device, &info, nil, &buf), "vkCreateBuffer (\(size) bytes)")
        var req = VkMemoryRequirements()
        tiller_vk.vkGetBufferMemoryRequirements(device.device, buf, &req)
        let hostFlags = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT.rawValue
        let type: UInt32?
        switch placement {
        case .device:
            type = device.memoryType(bits: req.memoryTypeBits, required: VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue)
                ?? device.memoryType(bits: req.memoryTypeBits, required: 0)
        case .host:
            type = device.memoryType(bits: req.memoryTypeBits, required: hostFlags,
                                     preferred: hostFlags | VK_MEMORY_PROPERTY_HOST_CACHED_BIT.rawValue)
        }
        guard let memoryType = type else {
            tiller_vk.vkDestroyBuffer(device.device, buf, nil)
            throw VulkanError("Vulkan: no suitable memory type for a \(placement) buffer on \(device.info.name)")
        }
        var alloc = VkMemoryAllocateInfo()
        alloc.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO
        alloc.allocationSize = req.size
        alloc.memoryTypeIndex = memoryType
        var mem: VkDeviceMemory?
        let r = tiller_vk.vkAllocateMemory(device.device, &alloc, nil, &mem)
        if r != VK_SUCCESS {
            tiller_vk.vkDestroyBuffer(device.device, buf, nil)
            throw VulkanError("Vulkan: cannot allocate \(size) bytes of \(placement == .device ? "device" : "host-visible") memory "
                              + "on \(device.info.name) (VkResult \(r.rawValue)); "
                              + "\(VulkanBuffer.allocatedBytes(device)) bytes already allocated of \(device.info.deviceLocalBytes)")
        }
        try check(tiller_vk.vkBindBufferMemory(device.device, buf, mem, 0), "vkBindBufferMemory")
        buffer = buf!
        memory = mem!
        if placement == .host {
            var p: UnsafeMutableRawPointer?
            try check(tiller_vk.vkMapMemory(device.device, mem, 0, VkDeviceSize(size), 0, &p), "vkMapMemory")
            mapped = p
        } else {
            mapped = nil
        }
        VulkanBuffer.track(device, size)
    }

    deinit {
        if mapped != nil { tiller_vk.vkUnmapMemory(device.device, memory) }
        tiller_vk.vkDestroyBuffer(device.device, buffer, nil)
        tiller_vk.vkFreeMemory(device.device, memory, nil)
        VulkanBuffer.track(device, -bytes)
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var allocated: [ObjectIdentifier: Int] = [:]
    private static func track(_ d: VulkanDevice, _ delta: Int) {
        lock.lock()
        allocated[ObjectIdentifier(d), default: 0] += delta
        lock.unlock()
    }
    /// Bytes of buffers alive on `device`.
    static func allocatedBytes(_ d: VulkanDevice) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return allocated[ObjectIdentifier(d)] ?? 0
    }
}

extension VulkanDevice {
    /// A device-local buffer of `count` fp32 elements (contents undefined).
    public func buffer(count: Int) throws -> VulkanBuffer {
        try VulkanBuffer(device: self, bytes: count * 4, placement: .device)
    }

    /// A device-local buffer holding `values`.
    public func upload(_ values: [Float]) throws -> VulkanBuffer {
        let b = try buffer(count: values.count)
        try values.withUnsafeBytes { try write(bytes: $0, into: b, at: 0) }
        return b
    }

    /// Bytes of device buffers alive on this device.
    public var allocatedBytes: Int { VulkanBuffer.allocatedBytes(self) }

    /// Copies host bytes into `dst` at byte `offset` through a staging buffer, in chunks; waits.
    func write(bytes: UnsafeRawBufferPointer, into dst: VulkanBuffer, at offset: Int) throws {
        if bytes.isEmpty { return }
        let chunk = min(bytes.count, 64 << 20)
        let staging = try VulkanBuffer(device: self, bytes: chunk, placement: .host)
        var done = 0
        while done < bytes.count {
            let n = min(chunk, bytes.count - done)
            staging.mapped!.copyMemory(from: bytes.baseAddress! + done, byteCount: n)
            try oneShot { cmd in
                var region = VkBufferCopy(srcOffset: 0, dstOffset: VkDeviceSize(offset + done), size: VkDeviceSize(n))
                tiller_vk.vkCmdCopyBuffer(cmd, staging.buffer, dst.buffer, 1, &region)
            }
            done += n
        }
    }

    /// `count` fp32 elements of `src` from element `offset` (tests; a step reads through its recorder).
    public func read(_ src: VulkanBuffer, offset: Int = 0, count: Int) throws -> [Float] {
        if count == 0 { return [] }
        let staging = try VulkanBuffer(device: self, bytes: count * 4, placement: .host)
        try oneShot { cmd in
            var region = VkBufferCopy(srcOffset: VkDeviceSize(offset * 4), dstOffset: 0, size: VkDeviceSize(count * 4))
            tiller_vk.vkCmdCopyBuffer(cmd, src.buffer, staging.buffer, 1, &region)
            hostReadBarrier(cmd)
        }
        return Array(UnsafeBufferPointer(start: staging.mapped!.assumingMemoryBound(to: Float.self), count: count))
    }
}

/// Makes transfer and shader writes visible to host reads after the fence.
func hostReadBarrier(_ cmd: VkCommandBuffer) {
    var b = VkMemoryBarrier()
    b.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
    b.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue
    b.dstAccessMask = VK_ACCESS_HOST_READ_BIT.rawValue
    tiller_vk.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT.rawValue,
                                   VK_PIPELINE_STAGE_HOST_BIT.rawValue, 0, 1, &b, 0, nil, 0, nil)
}

/// Makes every earlier compute/transfer write visible to later compute/transfer reads and writes
/// (the one barrier kind a step needs, placed only where a later op touches what an earlier one wrote).
func computeBarrier(_ cmd: VkCommandBuffer) {
    var b = VkMemoryBarrier()
    b.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
    b.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue
    b.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue
        | VK_ACCESS_SHADER_READ_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue
    let stages = VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT.rawValue
    tiller_vk.vkCmdPipelineBarrier(cmd, stages, stages, 0, 1, &b, 0, nil, 0, nil)
}
