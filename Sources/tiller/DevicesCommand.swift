import ArgumentParser
import Foundation
import TillerVulkan

/// `tiller devices`: the CPU and every Vulkan device, with what `--device auto` would take.
struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the devices a model can run on: the CPU and each Vulkan device (name, type, driver, memory, features).")

    func run() throws {
        print("cpu        \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 20) MiB")
        do {
            let list = try vulkanDevices()
            if list.isEmpty { print("vulkan     Vulkan reports no device") }
            for d in list {
                print("vulkan:\(d.index)   \(d.name)")
                print("           type \(d.kind.rawValue), driver \(d.driver), Vulkan \(d.apiVersion), \(d.deviceLocalBytes >> 20) MiB device-local")
                print("           \(d.features.summary)")
                if d.kind == .cpu { print("           (a CPU-type device: used only when named as vulkan:\(d.index))") }
            }
        } catch {
            print("vulkan     unavailable: \(error)")
        }
        switch try DeviceChoice.auto.pick() {
        case .cpu(let line), .vulkan(_, let line): print("auto → \(line.replacingOccurrences(of: "device: ", with: ""))")
        }
    }
}
