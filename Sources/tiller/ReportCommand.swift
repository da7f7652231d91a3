import ArgumentParser
import Foundation
import TillerExperiment

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write report.md and report.html (self-contained, SVG plots) from a results database.",
        discussion: "RESULTS is a run's output folder or its results.sqlite (e.g. one made by `tiller merge`).")

    @Argument(help: "Output folder of `tiller run`, or a results .sqlite file.")
    var results: String
    @Option(help: "Folder for report.md and report.html (default: next to the database).")
    var out: String?

    func run() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: results, isDirectory: &isDir) else {
            throw CLIError("\(results): no such folder or file")
        }
        let db = isDir.boolValue ? (results as NSString).appendingPathComponent(ExperimentRunner.databaseName) : results
        let store = try ResultsStore(path: db, create: false)
        let report = try ExperimentReport(store: store)
        let paths = try report.write(directory: out ?? (db as NSString).deletingLastPathComponent)
        print(report.summaryTable())
        print("Report: \(paths.markdown) and \(paths.html)")
    }
}
