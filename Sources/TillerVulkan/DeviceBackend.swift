import Foundation
import TillerModels

extension DeviceChoice {
    /// The backend this choice comes to on this machine; `note` gets the one line saying which
    /// (commands print it to standard error). `auto` falls back to the CPU when the GPU cannot be
    /// opened; a named Vulkan device that cannot be opened is an error.
    public func backend(note: (String) -> Void) throws -> Backend {
        switch try pick() {
        case .cpu(let line):
            note(line)
            return CPUBackend.shared
        case .vulkan(let index, let line):
            do {
                let b = try VulkanBackend.open(index)
                note(line)
                return b
            } catch where self == .auto {
                note("device: cpu (auto: vulkan:\(index) could not be opened: \(error))")
                return CPUBackend.shared
            }
        }
    }
}
