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
    func backend(experimentFile: String? = nil) throws -> Backend {
        try DeviceChoice.resolve(flag: device, file: experimentFile).backend(note: note)
    }
}
