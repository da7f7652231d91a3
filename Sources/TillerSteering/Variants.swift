import Foundation

// Cleaned variants of the two extraction methods, and the table that
// compares each variant with its baseline. Names are `probe`, `mean_diff`,
// `probe_preclean_la2`, `mean_diff_postclean_u2`, …

public enum ExtractionMethod: String, Sendable, CaseIterable, Codable {
    case probe
    case meanDiff = "mean_diff"
}

public enum CleaningMode: String, Sendable, CaseIterable, Codable {
    /// Zero the dims in the activations, then run the method.
    case preclean
    /// Zero the dims in the finished vector, then renormalise.
    case postclean
}

/// Which dims a variant cleans.
public enum CleaningDims: Hashable, Sendable, CustomStringConvertible {
    /// The layer's own top-N dims (by max |a| in the scan): `laN`.
    case layerAware(Int)
    /// The first N global dims, the same at every layer: `uN`.
    case uniform(Int)

    public var description: String {
        switch self {
        case .layerAware(let n): return "la\(n)"
        case .uniform(let n): return "u\(n)"
        }
    }
    init?(_ s: Substring) {
        if s.hasPrefix("la"), let n = Int(s.dropFirst(2)), n >= 1 { self = .layerAware(n) }
        else if s.hasPrefix("u"), let n = Int(s.dropFirst(1)), n >= 1 { self = .uniform(n) }
        else { return nil }
    }
}

public struct VariantSpec: Hashable, Sendable, CustomStringConvertible {
    public var method: ExtractionMethod
    public var cleaning: (mode: CleaningMode, dims: CleaningDims)? {
        get { mode.flatMap { m in dims.map { (m, $0) } } }
        set { mode = newValue?.mode; dims = newValue?.dims }
    }
    private var mode: CleaningMode?
    private var dims: CleaningDims?

    public init(_ method: ExtractionMethod, _ mode: CleaningMode? = nil, _ dims: CleaningDims? = nil) {
        precondition((mode == nil) == (dims == nil), "a cleaned variant needs both a mode and dims")
        self.method = method
        self.mode = mode
        self.dims = dims
    }

    public var isBaseline: Bool { mode == nil }
    public var baseline: VariantSpec { VariantSpec(method) }
    public var name: String {
        guard let mode, let dims else { return method.rawValue }
        return "\(method.rawValue)_\(mode.rawValue)_\(dims)"
    }
    public var description: String { name }

    /// Parses `probe`, `mean_diff`, `probe_preclean_la2`, `mean_diff_postclean_u1`, …
    public init(name: String) throws {
        for method in ExtractionMethod.allCases {
            if name == method.rawValue { self.init(method); return }
            let prefix = method.rawValue + "_"
            guard name.hasPrefix(prefix) else { continue }
            let rest = name.dropFirst(prefix.count).split(separator: "_")
            if rest.count == 2, let mode = CleaningMode(rawValue: String(rest[0])), let dims = CleaningDims(rest[1]) {
                self.init(method, mode, dims)
                return
            }
        }
        throw ExtractionError("unknown variant '\(name)': expected probe or mean_diff, optionally followed by _preclean_ or _postclean_ and laN (layer-aware top N) or uN (first N global dims), e.g. probe_preclean_la2")
    }

    /// The default variant grid: both baselines and, for each, pre/postclean with la1–la3 and u1–u2.
    public static func defaultGrid(methods: [ExtractionMethod] = [.probe, .meanDiff],
                                layerAware: ClosedRange<Int> = 1...3, uniform: ClosedRange<Int> = 1...2) -> [VariantSpec] {
        var out: [VariantSpec] = []
        for m in methods {
            out.append(VariantSpec(m))
            for mode in CleaningMode.allCases {
                for n in layerAware { out.append(VariantSpec(m, mode, .layerAware(n))) }
                for n in uniform { out.append(VariantSpec(m, mode, .uniform(n))) }
            }
        }
        return out
    }

    public static func == (a: VariantSpec, b: VariantSpec) -> Bool { a.name == b.name }
    public func hash(into h: inout Hasher) { h.combine(name) }
}

extension ScanResult {
    /// The dims a variant cleans at `layer`.
    public func dims(for selection: CleaningDims, layer: Int) -> [Int] {
        switch selection {
        case .layerAware(let n): return layerAwareDims(layer: layer, count: n)
        case .uniform(let n): return uniformDims(count: n)
        }
    }
    /// The dims the scan flags massive at `layer` (ratio to the median above its threshold).
    public func massiveDims(layer: Int) -> [Int] {
        guard layer >= 0, layer < layers.count else { return [] }
        return layers[layer].top.filter(\.massive).map(\.dim)
    }
}

/// Probe quality at one layer.
public struct ProbeStats: Codable, Sendable, Equatable {
    public var trainAccuracy: Double
    /// Accuracy of a probe fit without the held-out samples, on them (nil when too few samples).
    public var heldoutAccuracy: Double?
    public var iterations: Int

    enum CodingKeys: String, CodingKey {
        case trainAccuracy = "train_accuracy", heldoutAccuracy = "heldout_accuracy", iterations
    }
}

/// One variant's vectors at every layer.
public struct ExtractedVector: Sendable {
    public var spec: VariantSpec
    public var vectors: [Int: [Float]]
    /// Per layer, the dims this variant cleaned (empty for baselines).
    public var cleanedDims: [Int: [Int]]
    /// Per layer, for probes that were fit (baseline and preclean).
    public var probeStats: [Int: ProbeStats]
}

/// Runs the methods and their cleaned variants on stored contrastive activations.
public struct VariantExtractor {
    public var probe = LogisticProbe()
    /// Sample i of each polarity is held out for the probe's held-out accuracy when
    /// i % heldoutEvery == heldoutEvery − 1 (0 = no held-out evaluation).
    public var heldoutEvery = 5

    public init() {}

    /// `dims(selection, layer)` names the dims a cleaned variant zeroes (from a scan file, usually
    /// `ScanResult.dims(for:layer:)`); baselines need none. `onLayer` is called after each layer.
    public func run(_ acts: ContrastiveActivations, specs: [VariantSpec], layers: [Int]? = nil,
                    dims: (CleaningDims, Int) -> [Int], onLayer: ((Int) -> Void)? = nil) throws -> [ExtractedVector] {
        let layerList = layers ?? acts.layers
        // Postclean variants derive from their baseline, so baselines are computed first.
        var baselines = Set(specs.filter(\.isBaseline))
        for s in specs where !s.isBaseline { baselines.insert(s.baseline) }
        var out: [VariantSpec: ExtractedVector] = [:]
        for s in Set(specs).union(baselines) {
            out[s] = ExtractedVector(spec: s, vectors: [:], cleanedDims: [:], probeStats: [:])
        }
        for layer in layerList {
            guard let pos = acts.positive[layer], let neg = acts.negative[layer] else {
                throw ExtractionError("no activations stored for layer \(layer) (stored: \(acts.layers.map(String.init).joined(separator: ", ")))")
            }
            var base: [ExtractionMethod: [Float]] = [:]
            for b in baselines.sorted(by: { $0.name < $1.name }) {
                let (v, stats) = try compute(b.method, pos: pos, neg: neg, zeroing: [], layer: layer)
                base[b.method] = v
                out[b]!.vectors[layer] = v
                out[b]!.cleanedDims[layer] = []
                if let stats { out[b]!.probeStats[layer] = stats }
            }
            for s in specs where !s.isBaseline {
                let (mode, sel) = s.cleaning!
                let d = dims(sel, layer).filter { $0 >= 0 && $0 < pos.cols }
                switch mode {
                case .preclean:
                    let (v, stats) = try compute(s.method, pos: pos, neg: neg, zeroing: d, layer: layer)
                    out[s]!.vectors[layer] = v
                    if let stats { out[s]!.probeStats[layer] = stats }
                case .postclean:
                    var v = base[s.method]!.map(Double.init)
                    for j in d { v[j] = 0 }
                    out[s]!.vectors[layer] = try unitVector(v, what: "\(s.name) at layer \(layer)")
                }
                out[s]!.cleanedDims[layer] = d
            }
            onLayer?(layer)
        }
        var ordered: [ExtractedVector] = []
        var seen = Set<VariantSpec>()
        for s in specs where seen.insert(s).inserted { ordered.append(out[s]!) }
        return ordered
    }

    private func compute(_ method: ExtractionMethod, pos: ActivationMatrix, neg: ActivationMatrix,
                         zeroing d: [Int], layer: Int) throws -> ([Float], ProbeStats?) {
        do {
            switch method {
            case .meanDiff:
                return (try MeanDiff.direction(positive: pos, negative: neg, zeroing: d), nil)
            case .probe:
                let fit = try probe.fit(positive: pos, negative: neg, zeroing: d)
                var heldout: Double?
                if heldoutEvery >= 2, pos.rows >= heldoutEvery, neg.rows >= heldoutEvery {
                    let (pt, ph) = split(pos.rows), (nt, nh) = split(neg.rows)
                    let f = try probe.fit(positive: pos.selecting(pt), negative: neg.selecting(nt), zeroing: d)
                    heldout = f.accuracy(positive: pos.selecting(ph), negative: neg.selecting(nh), zeroing: d)
                }
                return (try fit.direction(), ProbeStats(trainAccuracy: fit.trainAccuracy, heldoutAccuracy: heldout,
                                                        iterations: fit.iterations))
            }
        } catch let e as ExtractionError {
            throw ExtractionError("layer \(layer): \(e.description)")
        }
    }

    private func split(_ n: Int) -> (train: [Int], held: [Int]) {
        let held = (0..<n).filter { $0 % heldoutEvery == heldoutEvery - 1 }
        return ((0..<n).filter { $0 % heldoutEvery != heldoutEvery - 1 }, held)
    }
}

// MARK: - Diagnostics and the cleaned-variants table

public struct VectorDiagnostics: Codable, Sendable, Equatable {
    /// Cosine with the same method's uncleaned vector at this layer.
    public var cosineToBaseline: Double
    /// Σ_{d massive} v_d² / ‖v‖².
    public var massiveShare: Double
    /// Cohen's d of the projections of the raw positive and negative activations onto v̂
    /// (difference of means over the pooled population std).
    public var separation: Double

    enum CodingKeys: String, CodingKey {
        case cosineToBaseline = "cos_to_baseline", massiveShare = "massive_share", separation
    }

    public static func compute(vector v: [Float], baseline: [Float], massiveDims: [Int],
                               positive: ActivationMatrix, negative: ActivationMatrix) -> VectorDiagnostics {
        let vv = v.reduce(0.0) { $0 + Double($1) * Double($1) }
        let share = vv > 0 ? massiveDims.filter { $0 >= 0 && $0 < v.count }.reduce(0.0) { $0 + Double(v[$1]) * Double(v[$1]) } / vv : 0
        let u = v.map { Double($0) / vv.squareRoot() }
        func projections(_ m: ActivationMatrix) -> (Double, Double) {
            var s = 0.0, ss = 0.0
            for r in 0..<m.rows {
                var p = 0.0
                let base = r * m.cols
                for j in 0..<m.cols { p += Double(m.values[base + j]) * u[j] }
                s += p; ss += p * p
            }
            let mean = s / Double(max(m.rows, 1))
            return (mean, max(ss / Double(max(m.rows, 1)) - mean * mean, 0))
        }
        let (mp, vp) = projections(positive), (mn, vn) = projections(negative)
        let pooled = ((vp + vn) / 2).squareRoot()
        return VectorDiagnostics(cosineToBaseline: cosineSimilarity(v, baseline), massiveShare: share,
                                 separation: pooled > 0 ? (mp - mn) / pooled : 0)
    }
}

/// Per layer × variant: cosine with the baseline, massive-dim share and projection separation.
public struct VariantTable: Codable, Sendable {
    public var schema = "tiller.variants/1"
    public var model: String
    public var trait: String
    public var variants: [String]
    public var layers: [Int]
    /// Per layer (string key), the dims the scan flags massive there.
    public var massiveDims: [String: [Int]]
    /// variant → layer (string key) → diagnostics.
    public var cells: [String: [String: VectorDiagnostics]]
    /// variant → layer → probe stats (probe baseline and preclean variants).
    public var probe: [String: [String: ProbeStats]]

    enum CodingKeys: String, CodingKey {
        case schema, model, trait, variants, layers, cells, probe
        case massiveDims = "massive_dims"
    }

    public init(model: String, trait: String, vectors: [ExtractedVector], activations: ContrastiveActivations,
                massiveDims: (Int) -> [Int]) {
        self.model = model
        self.trait = trait
        variants = vectors.map(\.spec.name)
        let layerSet = Set(vectors.flatMap { $0.vectors.keys })
        layers = layerSet.sorted()
        var md: [String: [Int]] = [:]
        var cells: [String: [String: VectorDiagnostics]] = [:]
        var probe: [String: [String: ProbeStats]] = [:]
        let byName = Dictionary(vectors.map { ($0.spec.name, $0) }, uniquingKeysWith: { a, _ in a })
        for l in layers {
            md[String(l)] = massiveDims(l)
            guard let pos = activations.positive[l], let neg = activations.negative[l] else { continue }
            for ev in vectors {
                guard let v = ev.vectors[l] else { continue }
                let base = byName[ev.spec.baseline.name]?.vectors[l] ?? v
                cells[ev.spec.name, default: [:]][String(l)] =
                    VectorDiagnostics.compute(vector: v, baseline: base, massiveDims: md[String(l)]!, positive: pos, negative: neg)
                if let s = ev.probeStats[l] { probe[ev.spec.name, default: [:]][String(l)] = s }
            }
        }
        self.massiveDims = md
        self.cells = cells
        self.probe = probe
    }

    public func write(path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try enc.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// Markdown: probe accuracy per layer, then cosine with baseline, massive-dim share and
    /// separation, each as a layers × variants table, and a summary over the middle third.
    public func markdown() -> String {
        var s = "# Cleaned variants — \(model), trait \(trait)\n\n"
        let cleaned = variants.filter { !((try? VariantSpec(name: $0))?.isBaseline ?? true) }
        if !layers.isEmpty {
            let mid = layers.count >= 3 ? Array(layers[layers.count / 3 ... 2 * layers.count / 3]) : layers
            s += "Mean over the middle layers L\(mid.first!)–L\(mid.last!):\n\n"
            s += "| variant | cos to baseline | massive share | separation (d) |\n|---|---|---|---|\n"
            for v in variants {
                let c = mid.compactMap { cells[v]?[String($0)] }
                guard !c.isEmpty else { continue }
                let n = Double(c.count)
                s += "| \(v) | \(f3(c.map(\.cosineToBaseline).reduce(0, +) / n)) | \(f3(c.map(\.massiveShare).reduce(0, +) / n)) | \(f2(c.map(\.separation).reduce(0, +) / n)) |\n"
            }
            s += "\n"
        }
        let probeVariants = variants.filter { probe[$0] != nil }
        if !probeVariants.isEmpty {
            s += "## Probe accuracy (train / held-out)\n\n| layer | " + probeVariants.joined(separator: " | ") + " |\n"
            s += "|---|" + String(repeating: "---|", count: probeVariants.count) + "\n"
            for l in layers {
                let row = probeVariants.map { v -> String in
                    guard let p = probe[v]?[String(l)] else { return "" }
                    return f3(p.trainAccuracy) + " / " + (p.heldoutAccuracy.map(f3) ?? "–")
                }
                s += "| L\(l) | " + row.joined(separator: " | ") + " |\n"
            }
            s += "\n"
        }
        func table(_ title: String, _ columns: [String], _ value: (VectorDiagnostics) -> String) {
            guard !columns.isEmpty else { return }
            s += "## \(title)\n\n| layer | massive dims | " + columns.joined(separator: " | ") + " |\n"
            s += "|---|---|" + String(repeating: "---|", count: columns.count) + "\n"
            for l in layers {
                let dims = (massiveDims[String(l)] ?? []).map(String.init).joined(separator: ", ")
                s += "| L\(l) | \(dims) | " + columns.map { v in cells[v]?[String(l)].map(value) ?? "" }.joined(separator: " | ") + " |\n"
            }
            s += "\n"
        }
        table("Cosine similarity with the baseline", cleaned) { f3($0.cosineToBaseline) }
        table("Share of ‖v‖² in the massive dims", variants) { f3($0.massiveShare) }
        table("Separation of pos/neg projections (Cohen's d)", variants) { f2($0.separation) }
        return s
    }
}

private func f3(_ x: Double) -> String { String(format: "%.3f", x) }
private func f2(_ x: Double) -> String { String(format: "%.2f", x) }
