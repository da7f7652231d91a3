import ArgumentParser
import Foundation
import TillerFormats
import TillerModels
import TillerSteering
import TillerTokenizers

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a completion, optionally steered by a vector added to resid_post.L.")

    @OptionGroup var deviceOption: DeviceOption
    @OptionGroup var input: PromptInput
    @Option(name: .customLong("max-tokens"), help: "New-token budget.")
    var maxTokens = 64
    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Double = 0
    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass.")
    var topP: Double = 1
    @Option(help: "Random seed for sampling.")
    var seed: UInt64 = 0
    @Option(help: "Steering vector file (safetensors with one F32 tensor `layer.L` per layer, or a llama.cpp control-vector GGUF).")
    var steer: String?
    @Option(help: "Layer whose resid_post the vector is added to (with --steer).")
    var layer: Int?
    // `.unconditional`: `--coef -120` takes -120 as the value (negative steering is everyday use),
    // not as an unknown flag.
    @Option(parsing: .unconditional, help: "Steering coefficient: adds coef × vector (with --steer); negative steers away.")
    var coef: Float = 1
    @Option(help: "Where to steer: all | response.")
    var positions: SteeringPositions = .all

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        if steer != nil && layer == nil { throw ValidationError("--steer needs --layer") }
        if steer == nil && layer != nil { throw ValidationError("--layer is only used with --steer") }
    }

    func run() throws {
        let lm = try LanguageModel.load(input.model, backend: try deviceOption.backend())
        guard let tokenizer = lm.tokenizer else { throw CLIError("\(input.model): model has no tokenizer") }
        let ids = try input.ids(tokenizer)
        var steering: [SteeringSpec?] = []
        if let steer, let layer {
            let vector = try SteeringVectorFile.load(path: steer).vector(layer: layer, hidden: lm.config.hiddenSize)
            steering = [SteeringSpec(edits: [.add(layer: layer, vector: vector, coef: coef, positions: positions)])]
        }
        var options = GenerationOptions(maxNewTokens: maxTokens)
        options.temperature = temperature
        options.topP = topP
        options.seed = seed
        // Text appears as it is generated; the decoder holds back incomplete characters.
        let decoder = StreamingDecoder(tokenizer: tokenizer, skipSpecialTokens: true)
        _ = try lm.generate([ids], options: options, steering: steering) { step in
            if step.finish != .stop {
                FileHandle.standardOutput.write(Data(decoder.push(step.token).utf8))
            }
            return true
        }
        print(decoder.finish())
    }
}

extension SteeringPositions: ExpressibleByArgument {}
