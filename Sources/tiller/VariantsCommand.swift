import ArgumentParser
import Foundation
import TillerSteering
import TillerExperiment

struct Variants: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cleaned variants of the extracted vectors, and their cosine table.",
        discussion: """
        Reads DIR/activations.safetensors (from `tiller extract`) and the scan file, and writes one vector \
        file per variant: probe, mean_diff and, for each, preclean (zero the dims in the activations, then \
        run the method) and postclean (zero them in the finished vector, renormalise) with layer-aware laN \
        (that layer's top-N dims) and uniform uN (the first N global dims), named <method>_<clean>_<dims> \
        (probe_preclean_la2, mean_diff_postclean_u2, …). Also writes variants.json and variants.md: per \
        layer and variant the cosine with the baseline, the share of ‖v‖² in the layer's massive dims and \
        the separation (Cohen's d) of the positive and negative projections. --gguf also exports every \
        variant as a llama.cpp control vector (direction.L = resid_post.L; block 0 cannot be expressed).
        """)

    @Argument(help: "Extraction directory (written by `tiller extract`).")
    var directory: String
    @Option(help: "Scan file (scan.json from `tiller scan` on the same model).")
    var scan: String
    @Option(help: "Variants, comma-separated (e.g. probe,probe_preclean_la2; the file's variants); default: both baselines and, for each, pre/postclean with la1–la3 and u1–u2.")
    var variants: String?
    @Option(help: "Layer-aware sizes for the default grid, e.g. 1-3.")
    var la = "1-3"
    @Option(help: "Uniform sizes for the default grid, e.g. 1-2.")
    var u = "1-2"
    @Flag(help: "Also write llama.cpp control vectors (DIR/gguf/<variant>.gguf).")
    var gguf = false

    func validate() throws {
        guard parseWindow(la) != nil || Int(la) != nil else { throw ValidationError("--la must look like 1-3") }
        guard parseWindow(u) != nil || Int(u) != nil || u == "0" else { throw ValidationError("--u must look like 1-2 (or 0 for none)") }
    }

    func range(_ s: String) -> ClosedRange<Int>? {
        if let n = Int(s) { return n >= 1 ? n...n : nil }
        return parseWindow(s).flatMap { $0.lowerBound >= 1 ? $0 : nil }
    }

    /// The variants stage of `tiller run` with the flags' settings (--variants is the file's
    /// `variants`; without it, the default grid), at every captured layer.
    func variantsStage() throws -> VariantsStage {
        let specs: [VariantSpec]
        if let list = variants {
            specs = try list.split(separator: ",").map { try VariantSpec(name: $0.trimmingCharacters(in: .whitespaces)) }
        } else {
            var grid = VariantSpec.defaultGrid(layerAware: range(la) ?? 1...3, uniform: range(u) ?? 1...2)
            if u == "0" { grid.removeAll { if case .uniform = $0.cleaning?.dims { return true }; return false } }
            specs = grid
        }
        return VariantsStage(settings: .init(variants: specs))
    }

    func run() throws {
        let started = Date()
        let run = try ExtractionRun.load(directory: directory)
        let scanResult = try ScanResult.load(path: scan)
        if scanResult.model != run.model {
            note("warning: the scan is of \(scanResult.model) but the activations are from \(run.model)")
        }
        guard scanResult.hidden == run.activations.hidden else {
            throw CLIError("\(scan): hidden size \(scanResult.hidden) does not match the activations' \(run.activations.hidden)")
        }
        let stage = try variantsStage()
        let layers = run.activations.layers
        let progress = ProgressBar("variants", total: layers.count, unit: "layers")
        let vectors = try stage.run(run, scan: scanResult, onLayer: { _ in progress.advance() })
        progress.finish()
        if gguf { try FileManager.default.createDirectory(atPath: directory + "/gguf", withIntermediateDirectories: true) }
        for ev in vectors {
            let file = VariantsStage.file(ev, from: run, tillerVersion: Tiller.version)
            try file.write(to: (directory as NSString).appendingPathComponent(ev.spec.name + ".safetensors"))
            if gguf {
                try ControlVectorGGUF.export(file, to: directory + "/gguf/\(ev.spec.name).gguf",
                                             modelHint: run.architecture.isEmpty ? run.model : run.architecture)
            }
        }
        let table = VariantTable(model: run.model, trait: run.trait, vectors: vectors, activations: run.activations) {
            scanResult.massiveDims(layer: $0)
        }
        try table.write(path: (directory as NSString).appendingPathComponent("variants.json"))
        let md = table.markdown()
        try md.write(toFile: (directory as NSString).appendingPathComponent("variants.md"), atomically: true, encoding: .utf8)
        print(md)
        note(String(format: "wrote %d variants × %d layers to %@ in %.1fs (variants.md, variants.json%@)", vectors.count, layers.count,
                    directory, Date().timeIntervalSince(started), gguf ? ", gguf/" : ""))
    }
}
