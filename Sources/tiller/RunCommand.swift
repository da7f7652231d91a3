import ArgumentParser
import Foundation
import TillerExperiment

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run an experiment file: scan, extraction, variants, baseline, steering sweep, judging, selection, report.",
        discussion: """
        EXPERIMENT is YAML or JSON (see experiments/README.md). Every stage is cached in the output folder \
        (default runs/<name> next to the file): run the same command again after an interruption and it \
        resumes where it stopped, with nothing lost or duplicated. --shard i/n runs the units whose index \
        is i mod n into results.shard<i>of<n>.sqlite; combine the shards with `tiller merge` and write the \
        report with `tiller report`.
        """)

    @Argument(help: "The experiment file (.yaml, .yml or .json).")
    var experiment: String
    @OptionGroup var deviceOption: DeviceOption
    @Option(help: "Output folder (overrides the file's `output`).")
    var out: String?
    @Option(help: "Run a slice of the sweep: i/n with 0 ≤ i < n (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT).")
    var shard: String?
    @Flag(help: "Stop after scan, extraction and variants (run once before starting shards on several machines).")
    var prepare = false
    @Flag(name: .customLong("no-progress"), help: "No progress bars.")
    var noProgress = false
    @Flag(name: .customLong("no-report"), help: "Skip writing the report.")
    var noReport = false
    @Flag(name: .customLong("allow-invalid-judge"), help: "Exit 0 even when judge-based tables come from a judge that failed validation (the report still labels them).")
    var allowInvalidJudge = false

    @Flag(help: "Print what the run will do (configurations, answers, tokens, judge calls) and its estimated wall time from a short calibration on this machine; run nothing.")
    var plan = false
    @Flag(name: .customLong("no-calibrate"), help: "With --plan: counts only, no model loading or timing.")
    var noCalibrate = false

    func run() throws {
        let spec = try ExperimentSpec.load(path: experiment)
        if plan {
            // A scratch output folder: calibration's judge cache must not land in the real one.
            let scratch = NSTemporaryDirectory() + "tiller-plan-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            let dir = (experiment as NSString).deletingLastPathComponent
            var options = RunOptions()
            options.showProgress = false
            options.backend = try deviceOption.backend(experimentFile: spec.device, file: experiment)
            let runner = try ExperimentRunner(spec: spec, baseDirectory: dir.isEmpty ? "." : dir, outputDirectory: scratch, options: options)
            if !noCalibrate { note("calibrating on this machine (a few seconds per model)…") }
            let p = try runner.plan(calibrate: !noCalibrate)
            print("Plan for \(experiment) (\(spec.models.count) model\(spec.models.count == 1 ? "" : "s") × \(spec.traits.count) trait\(spec.traits.count == 1 ? "" : "s"))", terminator: "")
            print(noCalibrate ? p.render().replacingOccurrences(of: "[not estimated]", with: "") : p.render())
            return
        }
        var options = RunOptions()
        options.backend = try deviceOption.backend(experimentFile: spec.device, file: experiment)
        if let shard { options.shard = try Shard(parsing: shard) }
        options.showProgress = !noProgress
        options.writeReport = !noReport
        options.prepareOnly = prepare
        options.allowInvalidJudge = allowInvalidJudge
        let dir = (experiment as NSString).deletingLastPathComponent
        let runner = try ExperimentRunner(spec: spec, baseDirectory: dir.isEmpty ? "." : dir, outputDirectory: out, options: options)
        try runner.run()
        if prepare {
            print("Prepared \(runner.outputDirectory): scan, activations and vectors. Start the sweep (or its shards) next.")
        } else if options.shard.isAll {
            let report = try ExperimentReport(store: runner.store)
            print("\n" + report.instrumentsMarkdown() + report.summaryTable())
            print("Results: \(runner.store.path)")
            if options.writeReport {
                print("Report: \((runner.outputDirectory as NSString).appendingPathComponent("report.md")), report.html and report.json")
            }
            if report.judgeFailedButUsed && !allowInvalidJudge {
                FileHandle.standardError.write(Data("error: the judge \(spec.judge ?? "") failed validation (or was not validated), and judge-based tables were written from its scores. The report labels them; pass --allow-invalid-judge to accept that and exit 0.\n".utf8))
                throw ExitCode(3)
            }
        } else {
            print("Shard \(options.shard) done: \(runner.store.path)")
        }
    }
}
