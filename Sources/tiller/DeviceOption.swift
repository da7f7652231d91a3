import ArgumentParser
import TillerModels
import TillerVulkan

/// `--device auto|cpu|vulkan[:N]` for every command that runs a model (TILLER_DEVICE when absent).
struct DeviceOption: ParsableArguments {
    @Option(help: ArgumentHelp(DeviceChoice.help))
    var device: String?

    func validate() throws {
        do { _ = try DeviceChoice.resolve(flag: device) } catch { throw ValidationError("\(error)") }
    }

    /// The backend to load models on; prints the one line saying which device (standard error).
    /// `experimentFile` is the `device:` of the experiment file at `file` (named in its error).
    func backend(experimentFile: String? = nil, file: String? = nil) throws -> Backend {
        let choice: DeviceChoice
        if device == nil, let value = experimentFile, let file {
            do { choice = try DeviceChoice(parsing: value) } catch { throw VulkanError("\(file): \(error)") }
        } else {
            choice = try DeviceChoice.resolve(flag: device, file: experimentFile)
        }
        return try choice.backend(note: note)
    }
}
