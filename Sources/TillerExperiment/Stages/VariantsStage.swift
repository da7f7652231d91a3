import Foundation
import TillerEval
import TillerModels
import TillerSteering

// Variants: the steering vectors of each variant (probe, mean_diff and their cleaned forms),
// from the stored activations and the scan's massive dims. `tiller run` builds the file's
// variants at its sweep layers; `tiller variants` builds its `--variants` (or the default grid)
// at every captured layer, through the same run.

public struct VariantsStage: PlannedStage, Sendable {
    public struct Settings: Sendable, Equatable {
        public var variants: [VariantSpec]
        /// Layers to build; nil: every layer the activations hold.
        public var layers: [Int]?
        public init(variants: [VariantSpec], layers: [Int]? = nil) { self.variants = variants; self.layers = layers }
        /// The file's variants (methods × cleaning, and `variants`) at its sweep layers.
        public init(spec: ExperimentSpec) throws {
            variants = try spec.variantSpecs()
            layers = spec.layers.layers
        }
    }

    public var settings: Settings
    public init(settings: Settings) { self.settings = settings }

    /// The variants' stored files in `directory` that hold the settings' layers and were made
    /// from `run`'s activations (same sample counts and positions), and the variants missing.
    public func cached(directory: String, run: ExtractionRun) -> (found: [String: SteeringVectorFile], missing: [VariantSpec]) {
        var found: [String: SteeringVectorFile] = [:]
        var missing: [VariantSpec] = []
        let layers = Set(settings.layers ?? run.activations.layers)
        for v in settings.variants {
            let p = (directory as NSString).appendingPathComponent(v.name + ".safetensors")
            if let f = try? SteeringVectorFile.load(path: p), layers.isSubset(of: Set(f.layers)),
               f.metadata.positiveSamples == run.positiveSamples.count, f.metadata.negativeSamples == run.negativeSamples.count,
               f.metadata.positions == run.positions {
                found[v.name] = f
            } else {
                missing.append(v)
            }
        }
        return (found, missing)
    }

    /// Builds `only` (default: every variant of the settings) from `run` and `scan`.
    public func run(_ run: ExtractionRun, scan: ScanResult, only: [VariantSpec]? = nil, onLayer: ((Int) -> Void)? = nil) throws -> [ExtractedVector] {
        try VariantExtractor().run(run.activations, specs: only ?? settings.variants, layers: settings.layers,
                                   dims: { sel, layer in scan.dims(for: sel, layer: layer) }, onLayer: onLayer)
    }

    /// The vector file of a built variant, with what it was made from.
    public static func file(_ ev: ExtractedVector, from run: ExtractionRun, tillerVersion: String = VectorMetadata.defaultTillerVersion) -> SteeringVectorFile {
        SteeringVectorFile(ev, model: run.model, trait: run.trait, positions: run.positions,
                           positiveSamples: run.positiveSamples.count, negativeSamples: run.negativeSamples.count, tillerVersion: tillerVersion)
    }

    func estimate(_ ctx: StagePlanContext) -> StageEstimate? {
        // Probes and means over the stored activations: well under a second.
        let layers = settings.layers?.count ?? ctx.model.layerCount
        return StageEstimate("variants", "\(settings.variants.count) vector files × \(layers) layers, from the stored activations",
                             seconds: ctx.calibration.map { _ in 0 })
    }
}

extension ExperimentRunner {
    /// Vector files per variant (sweep layers); reused when present with the same layers and
    /// made from the stored activations (checked by the run's sample counts and positions).
    func variantsStage(_ model: LanguageModel, trait: Trait, run: ExtractionRun, scan: ScanResult) throws -> [String: SteeringVectorFile] {
        let dir = (traitDirectory(model, trait) as NSString).appendingPathComponent("vectors")
        let stage = try VariantsStage(settings: .init(spec: spec))
        var (out, missing) = stage.cached(directory: dir, run: run)
        if !missing.isEmpty {
            try self.stage("variants \(model.name)/\(trait.name)") {
                options.log("variants \(model.name)/\(trait.name): \(missing.map(\.name).joined(separator: ", "))")
                let vs = try stage.run(run, scan: scan, only: missing)
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                for ev in vs {
                    var f = VariantsStage.file(ev, from: run)
                    let p = (dir as NSString).appendingPathComponent(ev.spec.name + ".safetensors")
                    try f.write(to: p)
                    f.path = p
                    out[ev.spec.name] = f
                }
            }
        } else {
            options.log("variants \(model.name)/\(trait.name): cached (\(dir))")
        }
        for v in variants {
            let f = out[v.name]!
            for l in layers {
                try store.record(vector: digest(try f.vector(layer: l, hidden: model.hiddenSize)), model: model.name, trait: trait.name,
                                 variant: v.name, layer: l, cleanedDims: f.metadata.cleanedDims[l] ?? [], file: f.path ?? "")
            }
        }
        return out
    }
}
