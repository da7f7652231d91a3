import ArgumentParser
import Foundation
import TillerFormats
import TillerModels

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a prompt and write the residual stream of every layer to a safetensors file.",
        discussion: """
        Writes `tokens` (I32 [T]) and `resid_post.L` (F32 [T, hidden]) for every layer L, with metadata \
        (model, site). resid_post.L is the output of block L; for the last block it is the output before \
        the final norm (transformers' hidden_states[-1] has the final norm applied).
        """)

    @OptionGroup var deviceOption: DeviceOption
    @OptionGroup var input: PromptInput
    @Option(name: .shortAndLong, help: "Output .safetensors path.")
    var out: String

    func run() throws {
        let lm = try LanguageModel.load(input.model, backend: try deviceOption.backend())
        guard let tokenizer = lm.tokenizer else { throw CLIError("\(input.model): model has no tokenizer") }
        let ids = try input.ids(tokenizer)
        let layers = Array(0..<lm.config.numHiddenLayers)
        let result = try lm.forward([ids], capture: CaptureSpec(layers: layers, positions: .all))
        let captured = result.activations[0]
        var writer = SafetensorsWriter()
        try writer.add("tokens", int32s: ids.map(Int32.init), shape: [ids.count])
        for l in layers {
            guard let rows = captured[l] else { throw CLIError("internal: layer \(l) was not captured") }
            try writer.add("resid_post.\(l)", floats: rows, shape: [ids.count, lm.config.hiddenSize])
        }
        writer.metadata = ["model": lm.name, "site": HookPoint.Kind.residPost.rawValue, "layers": "\(layers.count)",
                           "hidden": "\(lm.config.hiddenSize)", "prompt": input.prompt, "tiller_version": Tiller.version]
        try writer.write(to: out)
        note("wrote \(out): \(ids.count) tokens × \(layers.count) layers × \(lm.config.hiddenSize)")
    }
}
