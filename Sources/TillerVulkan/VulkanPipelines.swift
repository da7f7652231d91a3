import CTillerShaders
import CVulkan
import Foundation

/// The compute pipelines, created lazily on first use: one per (shader variant, specialisation
/// constants). Every shader binds up to `bindings` storage buffers in set 0 and takes at most 128
/// bytes of push constants (element offsets and sizes), so they share one layout.
final class VulkanPipelines: @unchecked Sendable {
    static let bindings = 6
    static let pushBytes = 128

    unowned let device: VulkanDevice
    let setLayout: VkDescriptorSetLayout
    let layout: VkPipelineLayout
    private var cache: [String: VkPipeline] = [:]
    private let lock = NSLock()

    /// The embedded SPIR-V, by variant name.
    static let spirv: [String: UnsafeBufferPointer<UInt32>] = {
        var table: [String: UnsafeBufferPointer<UInt32>] = [:]
        for i in 0..<Int(tiller_shaders_count()) {
            let s = tiller_shader_at(Int32(i))!.pointee
            table[String(cString: s.name)] = UnsafeBufferPointer(start: s.words, count: s.count)
        }
        return table
    }()

    init(device: VulkanDevice) throws {
        self.device = device
        var bindings = (0..<VulkanPipelines.bindings).map { i -> VkDescriptorSetLayoutBinding in
            var b = VkDescriptorSetLayoutBinding()
            b.binding = UInt32(i)
            b.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
            b.descriptorCount = 1
            b.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT.rawValue
            return b
        }
        var setLayout: VkDescriptorSetLayout?
        try bindings.withUnsafeMutableBufferPointer { bp in
            var info = VkDescriptorSetLayoutCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO
            info.bindingCount = UInt32(bp.count)
            info.pBindings = UnsafePointer(bp.baseAddress)
            try check(tiller_vk.vkCreateDescriptorSetLayout(device.device, &info, nil, &setLayout), "vkCreateDescriptorSetLayout")
        }
        self.setLayout = setLayout!
        var range = VkPushConstantRange(stageFlags: VK_SHADER_STAGE_COMPUTE_BIT.rawValue, offset: 0,
                                        size: UInt32(VulkanPipelines.pushBytes))
        var sl: VkDescriptorSetLayout? = setLayout
        var layout: VkPipelineLayout?
        try withUnsafePointer(to: &sl) { slp in
            var info = VkPipelineLayoutCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO
            info.setLayoutCount = 1
            info.pSetLayouts = slp
            info.pushConstantRangeCount = 1
            info.pPushConstantRanges = withUnsafePointer(to: &range) { $0 }
            try check(tiller_vk.vkCreatePipelineLayout(device.device, &info, nil, &layout), "vkCreatePipelineLayout")
        }
        self.layout = layout!
    }

    /// The pipeline for `name` with specialisation constants `constants` (constant_id 0, 1, …).
    func pipeline(_ name: String, _ constants: [UInt32] = []) throws -> VkPipeline {
        let key = name + constants.map { ":\($0)" }.joined()
        lock.lock()
        defer { lock.unlock() }
        if let p = cache[key] { return p }
        guard let code = VulkanPipelines.spirv[name] else {
            throw VulkanError("Vulkan: no shader variant \(name) (scripts/build-shaders.sh builds them)")
        }
        let compileStart = Date()
        defer { if VulkanSwitches.profile { VulkanProfile.shared.compiled(key, seconds: Date().timeIntervalSince(compileStart)) } }
        var module: VkShaderModule?
        var mi = VkShaderModuleCreateInfo()
        mi.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO
        mi.codeSize = code.count * 4
        mi.pCode = code.baseAddress
        try check(tiller_vk.vkCreateShaderModule(device.device, &mi, nil, &module), "vkCreateShaderModule(\(name))")
        defer { tiller_vk.vkDestroyShaderModule(device.device, module, nil) }
        var entries = constants.indices.map {
            VkSpecializationMapEntry(constantID: UInt32($0), offset: UInt32($0 * 4), size: 4)
        }
        var values = constants
        var pipeline: VkPipeline?
        let result: VkResult = "main".withCString { entry in
            entries.withUnsafeMutableBufferPointer { ep in
                values.withUnsafeMutableBytes { vp in
                    var spec = VkSpecializationInfo(mapEntryCount: UInt32(ep.count), pMapEntries: UnsafePointer(ep.baseAddress),
                                                    dataSize: vp.count, pData: UnsafeRawPointer(vp.baseAddress))
                    return withUnsafePointer(to: &spec) { sp in
                        var stage = VkPipelineShaderStageCreateInfo()
                        stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO
                        stage.stage = VK_SHADER_STAGE_COMPUTE_BIT
                        stage.module = module
                        stage.pName = entry
                        stage.pSpecializationInfo = constants.isEmpty ? nil : sp
                        var info = VkComputePipelineCreateInfo()
                        info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO
                        info.stage = stage
                        info.layout = layout
                        return tiller_vk.vkCreateComputePipelines(device.device, nil, 1, &info, nil, &pipeline)
                    }
                }
            }
        }
        try check(result, "vkCreateComputePipelines(\(key))")
        cache[key] = pipeline!
        return pipeline!
    }
}

/// The SPIR-V's recorded fingerprint (see scripts/build-shaders.sh), for the staleness test.
public var vulkanShadersFingerprint: String { String(cString: tiller_shaders_fingerprint_string()) }

/// The names of the embedded shader variants.
public var vulkanShaderNames: [String] { VulkanPipelines.spirv.keys.sorted() }
