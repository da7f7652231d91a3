import CVulkan
import Foundation

// A Vulkan instance, one compute-capable device, its queue and memory: everything the kernels and
// buffers need. One device per process (the device-level entry points live in one table, CVulkan).

public struct VulkanError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

@inline(__always) func check(_ result: VkResult, _ what: @autoclosure () -> String) throws {
    if result != VK_SUCCESS { throw VulkanError("Vulkan: \(what()) failed: \(vkResultName(result))") }
}

/// "VK_ERROR_DEVICE_LOST (-4)": the result codes a compute workload can meet, by name.
func vkResultName(_ r: VkResult) -> String {
    let names: [Int32: String] = [
        1: "VK_NOT_READY", 2: "VK_TIMEOUT", -1: "VK_ERROR_OUT_OF_HOST_MEMORY", -2: "VK_ERROR_OUT_OF_DEVICE_MEMORY",
        -3: "VK_ERROR_INITIALIZATION_FAILED", -4: "VK_ERROR_DEVICE_LOST", -5: "VK_ERROR_MEMORY_MAP_FAILED",
        -6: "VK_ERROR_LAYER_NOT_PRESENT", -7: "VK_ERROR_EXTENSION_NOT_PRESENT", -8: "VK_ERROR_FEATURE_NOT_PRESENT",
        -9: "VK_ERROR_INCOMPATIBLE_DRIVER", -10: "VK_ERROR_TOO_MANY_OBJECTS", -13: "VK_ERROR_UNKNOWN",
        -1_000_069_000: "VK_ERROR_OUT_OF_POOL_MEMORY",
    ]
    return "\(names[Int32(r.rawValue)] ?? "VkResult") (\(r.rawValue))"
}

extension VulkanError {
    /// A device that failed running submitted work: which device, which call, the result by
    /// name and what it means for the run.
    static func deviceFailure(_ info: VulkanDeviceInfo, call: String, result: VkResult) -> VulkanError {
        let meaning: String
        switch result.rawValue {
        case -4: meaning = "the device was lost (a driver reset, work that ran past the driver's timeout, or a hardware fault); "
            + "nothing the lost work computed is used"
        case -2: meaning = "the device ran out of memory; a smaller batch_size (or a smaller model) needs less"
        case -1: meaning = "the host ran out of memory for the driver"
        default: meaning = "the driver refused the work"
        }
        return VulkanError("Vulkan device vulkan:\(info.index) (\(info.name), \(info.driver)): \(call) failed: "
                           + "\(vkResultName(result)): \(meaning)")
    }
}

/// The device features Tiller's kernels use, after the environment's off switches.
public struct VulkanFeatures: Sendable, Equatable {
    /// Subgroup arithmetic in compute shaders: mat-vec reductions through subgroupAdd (else shared memory).
    public var subgroupArithmetic: Bool
    public var subgroupSize: Int
    /// fp16 arithmetic (shaderFloat16). Reported only: no kernel uses it yet (all arithmetic is fp32).
    public var fp16: Bool
    /// VK_KHR_cooperative_matrix. Reported only: no kernel uses it yet.
    public var cooperativeMatrix: Bool
    /// VK_KHR_shader_integer_dot_product. Reported only: no kernel uses it yet.
    public var integerDot: Bool
    public var sharedMemoryBytes: Int
    public var maxStorageBufferRange: Int

    /// "subgroup 8 (arithmetic), shared 32 KiB, fp16: no, …" for `tiller devices`.
    public var summary: String {
        func yn(_ b: Bool) -> String { b ? "yes" : "no" }
        return "subgroup \(subgroupSize)\(subgroupArithmetic ? " (arithmetic)" : " (no arithmetic: shared-memory reductions)"), "
            + "shared \(sharedMemoryBytes / 1024) KiB, max buffer range \(maxStorageBufferRange >> 20) MiB, "
            + "fp16 \(yn(fp16)), coopmat \(yn(cooperativeMatrix)), int-dot \(yn(integerDot)) (fp16/coopmat/int-dot not used by any kernel yet)"
    }
}

/// A physical device as Vulkan reports it (for `tiller devices` and device choice).
public struct VulkanDeviceInfo: Sendable {
    public enum Kind: String, Sendable { case discrete, integrated, virtual, cpu, other }
    public let index: Int
    public let name: String
    public let kind: Kind
    public let driver: String
    public let apiVersion: String
    /// Bytes of the largest device-local heap.
    public let deviceLocalBytes: Int
    public let features: VulkanFeatures
}

/// Environment off switches for fragile features (each with a working fallback).
enum VulkanSwitches {
    static func off(_ name: String) -> Bool {
        guard let v = ProcessInfo.processInfo.environment[name] else { return false }
        return !v.isEmpty && v != "0"
    }
    static var noSubgroup: Bool { off("TILLER_VULKAN_NO_SUBGROUP") }
    static var noFP16: Bool { off("TILLER_VULKAN_NO_FP16") }
    static var noCoopmat: Bool { off("TILLER_VULKAN_NO_COOPMAT") }
    static var noIntDot: Bool { off("TILLER_VULKAN_NO_INTDOT") }
    /// TILLER_VULKAN_PROFILE=1: device time per shader variant from timestamp queries, printed at
    /// exit (VulkanProfile).
    static let profile: Bool = off("TILLER_VULKAN_PROFILE")
}

/// The process's Vulkan instance (created once).
final class VulkanInstance: @unchecked Sendable {
    let instance: VkInstance
    let physicalDevices: [VkPhysicalDevice]

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cached: Result<VulkanInstance, VulkanError>?

    static func shared() throws -> VulkanInstance {
        lock.lock()
        defer { lock.unlock() }
        if let c = cached { return try c.get() }
        let r: Result<VulkanInstance, VulkanError>
        do { r = .success(try VulkanInstance()) } catch let e as VulkanError { r = .failure(e) } catch {
            r = .failure(VulkanError("\(error)"))
        }
        cached = r
        return try r.get()
    }

    private init() throws {
        if let why = tiller_vk_load() { throw VulkanError(String(cString: why)) }
        var app = VkApplicationInfo()
        app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO
        app.apiVersion = (1 << 22) | (2 << 12)  // Vulkan 1.2
        var inst: VkInstance?
        let result: VkResult = "tiller".withCString { name in
            app.pApplicationName = name
            return withUnsafePointer(to: &app) { appPtr in
                var info = VkInstanceCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
                info.pApplicationInfo = appPtr
                return tiller_vk.vkCreateInstance(&info, nil, &inst)
            }
        }
        guard result == VK_SUCCESS, let instance = inst else {
            throw VulkanError("Vulkan: no instance (VkResult \(result.rawValue)); the loader found no driver: "
                              + "install one (`apt-get install mesa-vulkan-drivers`, or your GPU vendor's driver)")
        }
        if let missing = tiller_vk_load_instance(instance) {
            throw VulkanError("Vulkan: the loader has no \(String(cString: missing)) (Vulkan 1.1 or later is needed)")
        }
        self.instance = instance
        var n: UInt32 = 0
        try check(tiller_vk.vkEnumeratePhysicalDevices(instance, &n, nil), "vkEnumeratePhysicalDevices")
        var devices = [VkPhysicalDevice?](repeating: nil, count: Int(n))
        try check(tiller_vk.vkEnumeratePhysicalDevices(instance, &n, &devices), "vkEnumeratePhysicalDevices")
        physicalDevices = devices.prefix(Int(n)).compactMap { $0 }
    }

    func info(_ index: Int) -> VulkanDeviceInfo {
        let pd = physicalDevices[index]
        var props = VkPhysicalDeviceProperties()
        tiller_vk.vkGetPhysicalDeviceProperties(pd, &props)
        var driverProps = VkPhysicalDeviceDriverProperties()
        driverProps.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES
        var subgroup = VkPhysicalDeviceSubgroupProperties()
        subgroup.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES
        var props2 = VkPhysicalDeviceProperties2()
        props2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
        withUnsafeMutablePointer(to: &driverProps) { dp in
            withUnsafeMutablePointer(to: &subgroup) { sp in
                sp.pointee.pNext = UnsafeMutableRawPointer(dp)
                props2.pNext = UnsafeMutableRawPointer(sp)
                tiller_vk.vkGetPhysicalDeviceProperties2(pd, &props2)
            }
        }
        var f16 = VkPhysicalDeviceShaderFloat16Int8Features()
        f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES
        var feats2 = VkPhysicalDeviceFeatures2()
        feats2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        withUnsafeMutablePointer(to: &f16) { fp in
            feats2.pNext = UnsafeMutableRawPointer(fp)
            tiller_vk.vkGetPhysicalDeviceFeatures2(pd, &feats2)
        }
        let extensions = deviceExtensions(pd)
        var mem = VkPhysicalDeviceMemoryProperties()
        tiller_vk.vkGetPhysicalDeviceMemoryProperties(pd, &mem)
        var largest = 0
        withUnsafeBytes(of: mem.memoryHeaps) { raw in
            let heaps = raw.bindMemory(to: VkMemoryHeap.self)
            for h in 0..<Int(mem.memoryHeapCount) where heaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT.rawValue != 0 {
                largest = max(largest, Int(heaps[h].size))
            }
        }
        let kind: VulkanDeviceInfo.Kind
        switch props.deviceType {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: kind = .discrete
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: kind = .integrated
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: kind = .virtual
        case VK_PHYSICAL_DEVICE_TYPE_CPU: kind = .cpu
        default: kind = .other
        }
        let arithmetic = subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT.rawValue != 0
            && subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT.rawValue != 0
        let features = VulkanFeatures(
            subgroupArithmetic: arithmetic && !VulkanSwitches.noSubgroup,
            subgroupSize: Int(subgroup.subgroupSize),
            fp16: f16.shaderFloat16 != 0 && !VulkanSwitches.noFP16,
            cooperativeMatrix: extensions.contains("VK_KHR_cooperative_matrix") && !VulkanSwitches.noCoopmat,
            integerDot: extensions.contains("VK_KHR_shader_integer_dot_product") && !VulkanSwitches.noIntDot,
            sharedMemoryBytes: Int(props.limits.maxComputeSharedMemorySize),
            maxStorageBufferRange: Int(props.limits.maxStorageBufferRange))
        let v = props.apiVersion
        return VulkanDeviceInfo(
            index: index, name: cString(props.deviceName), kind: kind,
            driver: "\(cString(driverProps.driverName)) \(cString(driverProps.driverInfo))".trimmingCharacters(in: .whitespaces),
            apiVersion: "\(v >> 22).\((v >> 12) & 0x3ff).\(v & 0xfff)",
            deviceLocalBytes: largest, features: features)
    }

    private func deviceExtensions(_ pd: VkPhysicalDevice) -> Set<String> {
        var n: UInt32 = 0
        guard tiller_vk.vkEnumerateDeviceExtensionProperties(pd, nil, &n, nil) == VK_SUCCESS else { return [] }
        var props = [VkExtensionProperties](repeating: VkExtensionProperties(), count: Int(n))
        guard tiller_vk.vkEnumerateDeviceExtensionProperties(pd, nil, &n, &props) == VK_SUCCESS else { return [] }
        return Set(props.prefix(Int(n)).map { cString($0.extensionName) })
    }
}

/// A fixed-size C char array (a tuple in Swift) as a String.
func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Every Vulkan device, in Vulkan's order (`vulkan:N` names index N). Throws when there is no
/// loader or no driver, with what to install.
public func vulkanDevices() throws -> [VulkanDeviceInfo] {
    let instance = try VulkanInstance.shared()
    return instance.physicalDevices.indices.map { instance.info($0) }
}

/// One opened device: its queue, memory types, kernels and the buffers made on it.
public final class VulkanDevice: @unchecked Sendable {
    public let info: VulkanDeviceInfo
    let physical: VkPhysicalDevice
    let device: VkDevice
    let queue: VkQueue
    let queueFamily: UInt32
    let memory: VkPhysicalDeviceMemoryProperties
    let queueLock = NSLock()
    /// Nanoseconds per timestamp tick.
    let timestampPeriod: Double
    private(set) var pipelines: VulkanPipelines!

    nonisolated(unsafe) private static var opened: [Int: VulkanDevice] = [:]
    private static let lock = NSLock()

    /// The device at Vulkan index `index`, opened once per process. Only one device can be open.
    public static func open(_ index: Int) throws -> VulkanDevice {
        lock.lock()
        defer { lock.unlock() }
        if let d = opened[index] { return d }
        if let other = opened.keys.first {
            throw VulkanError("Vulkan device \(other) is already open; Tiller uses one Vulkan device per process")
        }
        let instance = try VulkanInstance.shared()
        guard instance.physicalDevices.indices.contains(index) else {
            throw VulkanError(instance.physicalDevices.isEmpty
                ? "Vulkan reports no device; install a driver (`apt-get install mesa-vulkan-drivers`, or your GPU vendor's driver)"
                : "no Vulkan device \(index) (devices 0..<\(instance.physicalDevices.count); `tiller devices` lists them)")
        }
        let d = try VulkanDevice(instance: instance, index: index)
        opened[index] = d
        return d
    }

    private init(instance: VulkanInstance, index: Int) throws {
        info = instance.info(index)
        let physical = instance.physicalDevices[index]
        self.physical = physical
        var n: UInt32 = 0
        tiller_vk.vkGetPhysicalDeviceQueueFamilyProperties(physical, &n, nil)
        var families = [VkQueueFamilyProperties](repeating: VkQueueFamilyProperties(), count: Int(n))
        tiller_vk.vkGetPhysicalDeviceQueueFamilyProperties(physical, &n, &families)
        guard let family = families.firstIndex(where: { $0.queueFlags & VK_QUEUE_COMPUTE_BIT.rawValue != 0 }) else {
            throw VulkanError("Vulkan device \(index) (\(info.name)) has no compute queue")
        }
        queueFamily = UInt32(family)
        var priority: Float = 1
        var dev: VkDevice?
        let result: VkResult = withUnsafePointer(to: &priority) { pp in
            var q = VkDeviceQueueCreateInfo()
            q.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
            q.queueFamilyIndex = UInt32(family)
            q.queueCount = 1
            q.pQueuePriorities = pp
            return withUnsafePointer(to: &q) { qp in
                var info = VkDeviceCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
                info.queueCreateInfoCount = 1
                info.pQueueCreateInfos = qp
                return tiller_vk.vkCreateDevice(physical, &info, nil, &dev)
            }
        }
        guard result == VK_SUCCESS, let device = dev else {
            throw VulkanError("Vulkan: vkCreateDevice failed for \(info.name) (VkResult \(result.rawValue))")
        }
        if let missing = tiller_vk_load_device(device) {
            throw VulkanError("Vulkan: the driver has no \(String(cString: missing))")
        }
        self.device = device
        var q: VkQueue?
        tiller_vk.vkGetDeviceQueue(device, UInt32(family), 0, &q)
        queue = q!
        var mem = VkPhysicalDeviceMemoryProperties()
        tiller_vk.vkGetPhysicalDeviceMemoryProperties(physical, &mem)
        memory = mem
        var props = VkPhysicalDeviceProperties()
        tiller_vk.vkGetPhysicalDeviceProperties(physical, &props)
        timestampPeriod = Double(props.limits.timestampPeriod)
        pipelines = try VulkanPipelines(device: self)
    }

    /// A memory type allowed by `bits` with all of `required`, preferring those with `preferred` too.
    func memoryType(bits: UInt32, required: VkMemoryPropertyFlags, preferred: VkMemoryPropertyFlags = 0) -> UInt32? {
        var best: UInt32?
        withUnsafeBytes(of: memory.memoryTypes) { raw in
            let types = raw.bindMemory(to: VkMemoryType.self)
            for i in 0..<Int(memory.memoryTypeCount) where bits & (1 << UInt32(i)) != 0 {
                let f = types[i].propertyFlags
                guard f & required == required else { continue }
                if f & preferred == preferred { best = UInt32(i); return }
                if best == nil { best = UInt32(i) }
            }
        }
        return best
    }

    /// Runs `record` in a one-off command buffer and waits for it (load-time uploads).
    func oneShot(_ record: (VkCommandBuffer) throws -> Void) throws {
        let cmd = try CommandContext(device: self)
        defer { cmd.destroy() }
        try record(cmd.buffer)
        try cmd.submitAndWait()
    }
}

/// A command pool with one primary command buffer and a fence.
final class CommandContext {
    let device: VulkanDevice
    var pool: VkCommandPool?
    var buffer: VkCommandBuffer
    var fence: VkFence?

    init(device: VulkanDevice) throws {
        self.device = device
        var info = VkCommandPoolCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO
        info.queueFamilyIndex = device.queueFamily
        info.flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT.rawValue
        var pool: VkCommandPool?
        try check(tiller_vk.vkCreateCommandPool(device.device, &info, nil, &pool), "vkCreateCommandPool")
        self.pool = pool
        var alloc = VkCommandBufferAllocateInfo()
        alloc.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO
        alloc.commandPool = pool
        alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY
        alloc.commandBufferCount = 1
        var cb: VkCommandBuffer?
        try check(tiller_vk.vkAllocateCommandBuffers(device.device, &alloc, &cb), "vkAllocateCommandBuffers")
        buffer = cb!
        var fi = VkFenceCreateInfo()
        fi.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO
        try check(tiller_vk.vkCreateFence(device.device, &fi, nil, &fence), "vkCreateFence")
        var begin = VkCommandBufferBeginInfo()
        begin.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT.rawValue
        try check(tiller_vk.vkBeginCommandBuffer(buffer, &begin), "vkBeginCommandBuffer")
    }

    func submitAndWait() throws {
        try check(tiller_vk.vkEndCommandBuffer(buffer), "vkEndCommandBuffer")
        var cb: VkCommandBuffer? = buffer
        let result: VkResult = withUnsafePointer(to: &cb) { cbp in
            var submit = VkSubmitInfo()
            submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
            submit.commandBufferCount = 1
            submit.pCommandBuffers = cbp
            device.queueLock.lock()
            defer { device.queueLock.unlock() }
            return tiller_vk.vkQueueSubmit(device.queue, 1, &submit, fence)
        }
        if result != VK_SUCCESS { throw VulkanError.deviceFailure(device.info, call: "vkQueueSubmit", result: result) }
        var f = fence
        let waited = tiller_vk.vkWaitForFences(device.device, 1, &f, 1, UInt64.max)
        if waited != VK_SUCCESS { throw VulkanError.deviceFailure(device.info, call: "vkWaitForFences", result: waited) }
    }

    func destroy() {
        if let f = fence { tiller_vk.vkDestroyFence(device.device, f, nil) }
        if let p = pool { tiller_vk.vkDestroyCommandPool(device.device, p, nil) }
        fence = nil
        pool = nil
    }
}
