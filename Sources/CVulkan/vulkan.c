// Loads the Vulkan loader at first use instead of linking it, so that `tiller` starts (and runs on
// the CPU) on a machine without one; see CVulkan.h.
#include "CVulkan.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

TillerVk tiller_vk;

#if defined(__APPLE__)
#include <dlfcn.h>
static const char *names[] = {"libvulkan.1.dylib", "libMoltenVK.dylib"};
static const char *install = "install the Vulkan loader and MoltenVK (e.g. `brew install molten-vk vulkan-loader`)";
#else
#include <dlfcn.h>
static const char *names[] = {"libvulkan.so.1", "libvulkan.so"};
static const char *install =
    "install the loader and a driver: `apt-get install libvulkan1 mesa-vulkan-drivers`, or your GPU vendor's driver "
    "(NVIDIA's proprietary driver ships its Vulkan driver)";
#endif

static PFN_vkGetInstanceProcAddr get_instance_proc;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static char failure[512];

static void load(void) {
    void *lib = NULL;
    for (unsigned i = 0; i < sizeof names / sizeof names[0] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        snprintf(failure, sizeof failure, "no Vulkan loader (%s was not found: %s); %s", names[0], why ? why : "no detail",
                 install);
        return;
    }
    get_instance_proc = (PFN_vkGetInstanceProcAddr)dlsym(lib, "vkGetInstanceProcAddr");
    if (!get_instance_proc) {
        snprintf(failure, sizeof failure, "%s has no vkGetInstanceProcAddr; %s", names[0], install);
        return;
    }
#define TILLER_VK_GLOBAL(name) tiller_vk.name = (PFN_##name)get_instance_proc(NULL, #name);
    TILLER_VK_GLOBAL_FUNCTIONS(TILLER_VK_GLOBAL)
#undef TILLER_VK_GLOBAL
    if (!tiller_vk.vkCreateInstance) snprintf(failure, sizeof failure, "the Vulkan loader has no vkCreateInstance; %s", install);
}

const char *tiller_vk_load(void) {
    pthread_once(&once, load);
    return failure[0] ? failure : NULL;
}

const char *tiller_vk_load_instance(VkInstance instance) {
#define TILLER_VK_INSTANCE(name) \
    tiller_vk.name = (PFN_##name)get_instance_proc(instance, #name); \
    if (!tiller_vk.name) return #name;
    TILLER_VK_INSTANCE_FUNCTIONS(TILLER_VK_INSTANCE)
#undef TILLER_VK_INSTANCE
    return NULL;
}

const char *tiller_vk_load_device(VkDevice device) {
#define TILLER_VK_DEVICE(name) \
    tiller_vk.name = (PFN_##name)tiller_vk.vkGetDeviceProcAddr(device, #name); \
    if (!tiller_vk.name) return #name;
    TILLER_VK_DEVICE_FUNCTIONS(TILLER_VK_DEVICE)
#undef TILLER_VK_DEVICE
    return NULL;
}
