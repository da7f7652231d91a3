import ArgumentParser
import Foundation

@main
struct Tiller: ParsableCommand {
    static let version = "0.1.0"
    static let configuration = CommandConfiguration(
        commandName: "tiller",
        abstract: "Find massive activations in transformer LMs and extract, clean and evaluate steering vectors.",
        discussion: """
        A model argument (--model) is a name from the model cache (see `tiller models list`), a path to a \
        .gguf file, or a Hugging Face-format directory (config.json + *.safetensors + tokenizer.json). \
        The cache lives in $TILLER_HOME (default ~/.cache/tiller).
        """,
        version: version,
        subcommands: [Models.self, Tokenize.self, Generate.self, Trace.self, Scan.self, Bench.self, Extract.self, Variants.self, Project.self, Serve.self, JudgeCommand.self, Run.self, Report.self, Merge.self, Devices.self]
    )
}

/// Errors the CLI reports as one clear line (ArgumentParser prints `Error: <description>`).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Standard error, for notices that must not mix with a command's output.
func note(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// The help of every --model option (ModelCache.resolve decides what it accepts).
let modelHelp = ArgumentHelp("Model: cache name, .gguf path, Hugging Face directory, or hub name ORG/NAME[@revision] from the Hugging Face cache.")
