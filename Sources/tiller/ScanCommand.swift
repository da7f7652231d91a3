import ArgumentParser
import Foundation
import TillerModels
import TillerSteering

struct Scan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Massive-activation scan: find massive residual-stream dims per layer over a calibration set.",
        discussion: """
        Streams resid_post of every layer over the texts and writes scan.json (schema tiller.scan/1: \
        per layer the top-k dims with max, mean, ratio to the median of per-dim maxima, ratio to the \
        layer mean |a|, massive flag and carrier tokens; the dominant dim with presence and CV; global \
        dims), plus a Markdown summary (scan.md) and an SVG plot (scan.svg) beside it.
        """)

    @OptionGroup var deviceOption: DeviceOption
    @Option(name: .shortAndLong, help: modelHelp)
    var model: String
    @Option(help: "Texts: one per line, or JSONL with a \"text\" field (default: the shipped calibration set).")
    var prompts: String?
    @Flag(help: "Wrap each text as a user message in the model's chat template.")
    var chat = false
    @Option(name: .customLong("top-k"), help: "Dims reported per layer.")
    var topK = 5
    @Option(help: "A dim is massive when max|a| exceeds this multiple of the layer's median per-dim max.")
    var massiveRatio = 100.0
    @Option(help: "Global dims: in the per-layer top-N ...")
    var globalTop = 3
    @Option(help: "... of at least this many layers.")
    var globalMinLayers = 3
    @Option(help: "Layer window for the top-3 summary, e.g. 12-18 (default: the middle third).")
    var window: String?
    @Option(help: "Sequences per forward batch.")
    var batchSize = 8
    @Option(name: .shortAndLong, help: "Output scan.json path.")
    var out = "scan.json"

    func validate() throws {
        guard topK >= 1 else { throw ValidationError("--top-k must be at least 1") }
        guard massiveRatio > 0 else { throw ValidationError("--massive-ratio must be positive") }
        if let w = window, parseWindow(w) == nil { throw ValidationError("--window must look like 12-18") }
    }

    func run() throws {
        let texts = try prompts.map { try PromptFile.load(path: $0) } ?? PromptFile.shippedCalibration()
        let lm = try LanguageModel.load(model, backend: try deviceOption.backend())
        var p = ScanParameters()
        p.topK = topK
        p.massiveRatio = massiveRatio
        p.globalTop = globalTop
        p.globalMinLayers = globalMinLayers
        p.window = window.flatMap(parseWindow)
        let started = Date()
        let result = try MassiveActivationScan.run(model: lm, texts: texts, chat: chat, parameters: p, batchSize: batchSize)
        try result.write(path: out)
        let base = (out as NSString).deletingPathExtension
        try result.markdownSummary().write(toFile: base + ".md", atomically: true, encoding: .utf8)
        try result.svg().write(toFile: base + ".svg", atomically: true, encoding: .utf8)
        print(result.markdownSummary())
        note(String(format: "scanned %d texts (%d tokens) in %.1fs → %@, %@.md, %@.svg",
                    texts.count, result.tokensSeen, Date().timeIntervalSince(started), out, base, base))
    }
}

/// "a-b" as a closed range (nil when the text is not one).
func parseWindow(_ s: String) -> ClosedRange<Int>? {
    (try? IntRange(parsing: s, allowStep: false))?.closed
}
