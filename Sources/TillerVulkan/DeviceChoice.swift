import Foundation

/// Where a model runs: `auto`, `cpu`, `vulkan` or `vulkan:N` — the one parser behind `--device`,
/// `device:` in experiment files and TILLER_DEVICE.
public enum DeviceChoice: Equatable, Sendable, CustomStringConvertible {
    /// The first discrete or integrated GPU Vulkan reports, else the CPU.
    case auto
    case cpu
    /// Vulkan device N (any type, lavapipe included), or without N the first discrete or integrated GPU.
    case vulkan(Int?)

    public static let help = "auto, cpu, vulkan or vulkan:N (`tiller devices` lists N); default $TILLER_DEVICE, else auto"

    public init(parsing text: String) throws {
        let s = text.trimmingCharacters(in: .whitespaces).lowercased()
        switch s {
        case "auto": self = .auto
        case "cpu": self = .cpu
        case "vulkan", "gpu": self = .vulkan(nil)
        default:
            if s.hasPrefix("vulkan:"), let n = Int(s.dropFirst(7)), n >= 0 {
                self = .vulkan(n)
            } else {
                throw VulkanError("device \"\(text)\" is not one of \(DeviceChoice.help)")
            }
        }
    }

    /// The flag's value if given, else the experiment file's, else TILLER_DEVICE, else auto.
    public static func resolve(flag: String?, file: String? = nil,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DeviceChoice {
        if let f = flag { return try DeviceChoice(parsing: f) }
        if let f = file { return try DeviceChoice(parsing: f) }
        if let e = environment["TILLER_DEVICE"], !e.isEmpty {
            do { return try DeviceChoice(parsing: e) } catch { throw VulkanError("TILLER_DEVICE: \(error)") }
        }
        return .auto
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .cpu: return "cpu"
        case .vulkan(nil): return "vulkan"
        case .vulkan(let n?): return "vulkan:\(n)"
        }
    }

    /// What a choice comes to on a machine whose Vulkan devices are `devices` (nil: no loader or
    /// no driver, with the reason): the CPU, or Vulkan device N, with the one line to print.
    public enum Pick: Equatable, Sendable {
        case cpu(String)
        case vulkan(Int, String)
    }

    public func pick(devices: Result<[VulkanDeviceInfo], VulkanError>) throws -> Pick {
        func gpu(_ list: [VulkanDeviceInfo]) -> VulkanDeviceInfo? {
            list.first { $0.kind == .discrete || $0.kind == .integrated }
        }
        func line(_ d: VulkanDeviceInfo) -> String { "device: vulkan:\(d.index) (\(d.name), \(d.kind.rawValue), \(d.deviceLocalBytes >> 20) MiB)" }
        switch self {
        case .cpu:
            return .cpu("device: cpu")
        case .auto:
            switch devices {
            case .failure(let e): return .cpu("device: cpu (auto: no Vulkan GPU — \(e.message))")
            case .success(let list):
                if let d = gpu(list) { return .vulkan(d.index, line(d)) }
                return .cpu("device: cpu (auto: Vulkan reports no discrete or integrated GPU)")
            }
        case .vulkan(let n):
            let list = try devices.get()
            if let n {
                guard let d = list.first(where: { $0.index == n }) else {
                    throw VulkanError("no Vulkan device \(n): \(list.isEmpty ? "Vulkan reports none" : "devices are 0..<\(list.count)") (`tiller devices` lists them)")
                }
                return .vulkan(n, line(d))
            }
            guard let d = gpu(list) else {
                let others = list.map { "vulkan:\($0.index) \($0.name) (\($0.kind.rawValue))" }.joined(separator: ", ")
                throw VulkanError("no discrete or integrated GPU among the Vulkan devices"
                                  + (others.isEmpty ? "" : " (\(others); name one as vulkan:N to use it)"))
            }
            return .vulkan(d.index, line(d))
        }
    }

    /// `pick` on this machine's devices.
    public func pick() throws -> Pick {
        let devices: Result<[VulkanDeviceInfo], VulkanError>
        do { devices = .success(try vulkanDevices()) } catch let e as VulkanError { devices = .failure(e) } catch {
            devices = .failure(VulkanError("\(error)"))
        }
        return try pick(devices: devices)
    }
}
