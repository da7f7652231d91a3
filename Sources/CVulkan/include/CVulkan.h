// The Vulkan API without linking the loader: <vulkan/vulkan.h> with VK_NO_PROTOTYPES, and a table
// of the entry points Tiller calls, filled by dlopen-ing libvulkan.so.1 at first use (see vulkan.c).
// A machine without a Vulkan loader still runs `tiller` on the CPU; only asking for Vulkan fails,
// with a message that says what to install.
#ifndef TILLER_CVULKAN_H
#define TILLER_CVULKAN_H

#define VK_NO_PROTOTYPES 1
#include <vulkan/vulkan.h>

#define TILLER_VK_GLOBAL_FUNCTIONS(X) \
    X(vkCreateInstance) X(vkEnumerateInstanceVersion) X(vkEnumerateInstanceExtensionProperties)

#define TILLER_VK_INSTANCE_FUNCTIONS(X) \
    X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties) \
    X(vkGetPhysicalDeviceProperties2) X(vkGetPhysicalDeviceFeatures2) X(vkGetPhysicalDeviceMemoryProperties) \
    X(vkGetPhysicalDeviceQueueFamilyProperties) X(vkEnumerateDeviceExtensionProperties) X(vkCreateDevice) \
    X(vkGetDeviceProcAddr)

#define TILLER_VK_DEVICE_FUNCTIONS(X) \
    X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkDeviceWaitIdle) X(vkQueueSubmit) X(vkQueueWaitIdle) \
    X(vkAllocateMemory) X(vkFreeMemory) X(vkMapMemory) X(vkUnmapMemory) X(vkInvalidateMappedMemoryRanges) \
    X(vkFlushMappedMemoryRanges) X(vkCreateBuffer) X(vkDestroyBuffer) X(vkGetBufferMemoryRequirements) \
    X(vkBindBufferMemory) X(vkCreateShaderModule) X(vkDestroyShaderModule) X(vkCreateDescriptorSetLayout) \
    X(vkDestroyDescriptorSetLayout) X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout) \
    X(vkCreateComputePipelines) X(vkDestroyPipeline) X(vkCreateDescriptorPool) X(vkDestroyDescriptorPool) \
    X(vkResetDescriptorPool) X(vkAllocateDescriptorSets) X(vkUpdateDescriptorSets) X(vkCreateCommandPool) \
    X(vkDestroyCommandPool) X(vkResetCommandPool) X(vkAllocateCommandBuffers) X(vkFreeCommandBuffers) \
    X(vkBeginCommandBuffer) X(vkEndCommandBuffer) X(vkCmdBindPipeline) X(vkCmdBindDescriptorSets) \
    X(vkCmdPushConstants) X(vkCmdDispatch) X(vkCmdPipelineBarrier) X(vkCmdCopyBuffer) X(vkCmdFillBuffer) \
    X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences) \
    X(vkCreateQueryPool) X(vkDestroyQueryPool) X(vkCmdResetQueryPool) X(vkCmdWriteTimestamp) X(vkGetQueryPoolResults)

#define TILLER_VK_FIELD(name) PFN_##name name;
typedef struct TillerVk {
    TILLER_VK_GLOBAL_FUNCTIONS(TILLER_VK_FIELD)
    TILLER_VK_INSTANCE_FUNCTIONS(TILLER_VK_FIELD)
    TILLER_VK_DEVICE_FUNCTIONS(TILLER_VK_FIELD)
} TillerVk;
#undef TILLER_VK_FIELD

/// The entry points; global ones after tiller_vk_load, instance and device ones after the calls below.
extern TillerVk tiller_vk;

/// Loads libvulkan.so.1 (once). Returns NULL on success, else a message saying what is missing
/// and what to install.
const char *tiller_vk_load(void);
/// Fills the instance-level entry points; returns the name of the first missing one, or NULL.
const char *tiller_vk_load_instance(VkInstance instance);
/// Fills the device-level entry points; returns the name of the first missing one, or NULL.
const char *tiller_vk_load_device(VkDevice device);

#endif
