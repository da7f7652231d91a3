import ArgumentParser
import Foundation
import TillerExperiment

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Combine results databases (e.g. the shards of `tiller run --shard i/n`) into one.",
        discussion: """
        Rows are keyed by configuration, question and sample, so merging is idempotent and the merged \
        database equals an unsharded run. Databases of different experiments or settings, or holding \
        different answers for the same key, are refused.
        """)

    @Option(help: "The merged database (created if missing; existing rows are kept).")
    var out: String
    @Argument(help: "Databases to merge.")
    var inputs: [String]

    func validate() throws {
        if inputs.isEmpty { throw ValidationError("give at least one database to merge") }
    }

    func run() throws {
        let store = try ResultsStore(path: out)
        for input in inputs {
            guard FileManager.default.fileExists(atPath: input) else { throw CLIError("\(input): no such file") }
            let added = try store.merge(from: input)
            print("\(input): +\(added["generations"] ?? 0) answers, +\(added["scores"] ?? 0) scores, +\(added["configurations"] ?? 0) configurations")
        }
        print("Merged into \(out): \(try store.count("generations")) answers, \(try store.count("scores")) scores. Next: tiller report \(out)")
    }
}
