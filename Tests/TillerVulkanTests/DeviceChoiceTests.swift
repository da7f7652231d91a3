import CVulkan
import XCTest
@testable import TillerVulkan

final class DeviceChoiceTests: XCTestCase {
    func info(_ i: Int, _ kind: VulkanDeviceInfo.Kind) -> VulkanDeviceInfo {
        VulkanDeviceInfo(index: i, name: "dev\(i)", kind: kind, driver: "d", apiVersion: "1.3.0", deviceLocalBytes: 1 << 30,
                         features: VulkanFeatures(subgroupArithmetic: true, subgroupSize: 32, fp16: false, cooperativeMatrix: false,
                                                  integerDot: false, sharedMemoryBytes: 32768, maxStorageBufferRange: 1 << 27))
    }

    func testParsing() throws {
        XCTAssertEqual(try DeviceChoice(parsing: "auto"), .auto)
        XCTAssertEqual(try DeviceChoice(parsing: "CPU"), .cpu)
        XCTAssertEqual(try DeviceChoice(parsing: "vulkan"), .vulkan(nil))
        XCTAssertEqual(try DeviceChoice(parsing: "vulkan:2"), .vulkan(2))
        for bad in ["cuda", "vulkan:", "vulkan:-1", "vulkan:x", ""] {
            XCTAssertThrowsError(try DeviceChoice(parsing: bad), bad)
        }
        // flag over file over environment over auto
        XCTAssertEqual(try DeviceChoice.resolve(flag: "cpu", file: "vulkan", environment: ["TILLER_DEVICE": "vulkan:1"]), .cpu)
        XCTAssertEqual(try DeviceChoice.resolve(flag: nil, file: "vulkan", environment: ["TILLER_DEVICE": "vulkan:1"]), .vulkan(nil))
        XCTAssertEqual(try DeviceChoice.resolve(flag: nil, file: nil, environment: ["TILLER_DEVICE": "vulkan:1"]), .vulkan(1))
        XCTAssertEqual(try DeviceChoice.resolve(flag: nil, file: nil, environment: [:]), .auto)
        XCTAssertThrowsError(try DeviceChoice.resolve(flag: nil, file: nil, environment: ["TILLER_DEVICE": "tpu"]))
    }

    func testPickTable() throws {
        let lavapipe: Result<[VulkanDeviceInfo], VulkanError> = .success([info(0, .cpu)])
        let mixed: Result<[VulkanDeviceInfo], VulkanError> = .success([info(0, .cpu), info(1, .integrated), info(2, .discrete)])
        let none: Result<[VulkanDeviceInfo], VulkanError> = .failure(VulkanError("no Vulkan loader"))
        func index(_ p: DeviceChoice.Pick) -> Int? { if case .vulkan(let i, _) = p { return i }; return nil }
        // auto: the first discrete or integrated GPU, else the CPU (never lavapipe, never an error)
        XCTAssertEqual(index(try DeviceChoice.auto.pick(devices: mixed)), 1)
        XCTAssertNil(index(try DeviceChoice.auto.pick(devices: lavapipe)))
        XCTAssertNil(index(try DeviceChoice.auto.pick(devices: none)))
        // vulkan: the first GPU; a CPU-type device only when named
        XCTAssertEqual(index(try DeviceChoice.vulkan(nil).pick(devices: mixed)), 1)
        XCTAssertThrowsError(try DeviceChoice.vulkan(nil).pick(devices: lavapipe))
        XCTAssertEqual(index(try DeviceChoice.vulkan(0).pick(devices: lavapipe)), 0)
        XCTAssertThrowsError(try DeviceChoice.vulkan(3).pick(devices: mixed))
        XCTAssertThrowsError(try DeviceChoice.vulkan(0).pick(devices: none)) { e in
            XCTAssertTrue("\(e)".contains("no Vulkan loader"))
        }
        XCTAssertNil(index(try DeviceChoice.cpu.pick(devices: mixed)))
    }

    /// A device that fails at submit or fence wait gives an error naming the device, the call,
    /// the result by name and what it means (the recorder prints it and exits with status 1).
    func testDeviceFailureNamesTheDeviceAndTheCall() {
        let lost = VulkanError.deviceFailure(info(1, .discrete), call: "vkWaitForFences", result: VK_ERROR_DEVICE_LOST).message
        XCTAssertTrue(lost.hasPrefix("Vulkan device vulkan:1 (dev1, d): vkWaitForFences failed: VK_ERROR_DEVICE_LOST (-4): the device was lost"), lost)
        let oom = VulkanError.deviceFailure(info(0, .cpu), call: "vkQueueSubmit", result: VK_ERROR_OUT_OF_DEVICE_MEMORY).message
        XCTAssertTrue(oom.hasPrefix("Vulkan device vulkan:0 (dev0, d): vkQueueSubmit failed: VK_ERROR_OUT_OF_DEVICE_MEMORY (-2): the device ran out of memory"), oom)
        XCTAssertEqual(vkResultName(VK_ERROR_OUT_OF_POOL_MEMORY), "VK_ERROR_OUT_OF_POOL_MEMORY (-1000069000)")
        XCTAssertEqual(vkResultName(VkResult(rawValue: -12345)), "VkResult (-12345)")
    }
}
