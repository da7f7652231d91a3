import Foundation
import TillerSteering

// Phase 4's selection: the baseline trait score, and per variant the configuration with the
// largest trait score among those whose mean coherence is ≥ T (Δ = trait − baseline), at one or
// two thresholds; then the seed's summary across models and traits.

/// Mean scores of one configuration over its scored answers.
public struct ConfigResult: Sendable, Equatable {
    public var config: Configuration
    public var answers: Int
    public var trait: Double?
    public var coherence: Double?
    /// coefficient / layer norm (massive dims excluded), whatever the scale the sweep used.
    public var relativeCoefficient: Double?
}

public struct BestResult: Sendable, Equatable {
    public var variant: String
    public var threshold: Double
    public var result: ConfigResult
    public var delta: Double
}

public struct ConditionResult: Sendable {
    public var model: String
    public var trait: String
    public var baseline: ConfigResult?
    public var results: [ConfigResult]
    /// threshold → best per variant, sorted by Δ (largest first); variants with no coherent
    /// configuration are absent.
    public var best: [Double: [BestResult]]
    public var variants: [String]

    public var label: String { "\(model) \(trait)" }
    public func best(_ variant: String, threshold: Double) -> BestResult? { best[threshold]?.first { $0.variant == variant } }
}

/// An average of best Δs over a group of variants (preclean vs postclean, …).
public struct GroupAverage: Sendable, Equatable {
    public var name: String
    public var mean: Double?
    public var variants: [String]
}

public struct SummaryRow: Sendable, Equatable {
    public var condition: String
    public var winnerDelta: Double?
    public var probeDelta: Double?
    public var benefit: Double? {
        guard let w = winnerDelta, let p = probeDelta else { return nil }
        return w - p
    }
    public var bestVariant: String?
    public var bestDelta: Double?
}

public struct Selection: Sendable {
    public var thresholds: [Double]
    public var conditions: [ConditionResult]
    public var winner: String?
    public var summary: [SummaryRow]

    public init(store: ResultsStore, spec: ExperimentSpec) throws {
        thresholds = spec.coherenceThresholds
        let variantOrder = (try? spec.variantSpecs().map(\.name)) ?? []
        let configs = try store.configurations()
        var byConfig: [String: (t: [Double], c: [Double], n: Int)] = [:]
        for s in try store.scores() {
            var e = byConfig[s.configId] ?? ([], [], 0)
            e.n += 1
            if let t = s.trait { e.t.append(t) }
            if let c = s.coherence { e.c.append(c) }
            byConfig[s.configId] = e
        }
        func mean(_ x: [Double]) -> Double? { x.isEmpty ? nil : x.reduce(0, +) / Double(x.count) }
        var norms: [String: [Int: ResultsStore.LayerNorm]] = [:]
        var groups: [String: [ConfigResult]] = [:]
        var order: [String] = []
        for c in configs {
            if norms[c.model] == nil { norms[c.model] = try store.layerNorms(model: c.model) }
            let e = byConfig[c.id]
            guard let e, e.n > 0 else { continue }
            let n = norms[c.model]?[c.layer]?.excludingMassive
            let rel = c.isBaseline ? 0 : n.flatMap { $0 > 0 ? c.absoluteCoefficient / $0 : nil }
            let key = "\(c.model)\u{1}\(c.trait)"
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(ConfigResult(config: c, answers: e.n, trait: mean(e.t), coherence: mean(e.c), relativeCoefficient: rel))
        }
        // Conditions in experiment order (models, then traits), others after.
        let rank: (String) -> Int = { key in
            let p = key.split(separator: "\u{1}", omittingEmptySubsequences: false).map(String.init)
            let m = spec.models.firstIndex { $0 == p[0] || ($0 as NSString).lastPathComponent == p[0] } ?? 999
            let t = spec.traits.firstIndex { $0 == p[1] || (($0 as NSString).lastPathComponent as NSString).deletingPathExtension == p[1] } ?? 999
            return m * 1000 + t
        }
        var conds: [ConditionResult] = []
        for key in order.sorted(by: { (rank($0), $0) < (rank($1), $1) }) {
            let rs = groups[key]!
            let base = rs.first { $0.config.isBaseline }
            let steered = rs.filter { !$0.config.isBaseline }
            let present = Set(steered.map(\.config.variant))
            let vs = variantOrder.filter(present.contains) + present.subtracting(variantOrder).sorted()
            var best: [Double: [BestResult]] = [:]
            for t in thresholds {
                var list: [BestResult] = []
                for v in vs {
                    let ok = steered.filter { $0.config.variant == v && ($0.coherence ?? -1) >= t && $0.trait != nil }
                    // Ties: the smaller coefficient, then the earlier layer (deterministic).
                    guard let b = ok.max(by: { a, b in
                        a.trait! != b.trait! ? a.trait! < b.trait!
                            : (a.config.absoluteCoefficient, a.config.layer) > (b.config.absoluteCoefficient, b.config.layer)
                    }) else { continue }
                    list.append(BestResult(variant: v, threshold: t, result: b, delta: b.trait! - (base?.trait ?? 0)))
                }
                best[t] = list.sorted { $0.delta != $1.delta ? $0.delta > $1.delta : $0.variant < $1.variant }
            }
            conds.append(ConditionResult(model: rs[0].config.model, trait: rs[0].config.trait, baseline: base,
                                         results: rs, best: best, variants: vs))
        }
        conditions = conds
        let t0 = spec.coherenceThresholds[0]
        // The winner: as the file says, else the cleaned variant with the best mean Δ over conditions.
        var winner: String?
        if let w = spec.winner {
            winner = w
        } else {
            var sums: [String: [Double]] = [:]
            for c in conds { for b in c.best[t0] ?? [] where b.variant != "probe" && b.variant != "mean_diff" { sums[b.variant, default: []].append(b.delta) } }
            winner = sums.filter { $0.value.count == conds.count }.max { a, b in
                let x = a.value.reduce(0, +), y = b.value.reduce(0, +)
                return x != y ? x < y : a.key > b.key
            }?.key
        }
        self.winner = winner
        summary = conds.map { c in
            let top = c.best[t0]?.first
            return SummaryRow(condition: c.label, winnerDelta: winner.flatMap { c.best($0, threshold: t0)?.delta },
                              probeDelta: c.best("probe", threshold: t0)?.delta, bestVariant: top?.variant, bestDelta: top?.delta)
        }
    }

    /// The seed's comparisons at threshold `t` over the given conditions: preclean vs postclean
    /// per method, layer-aware vs uniform, and top-1/2/3 (cleaning N dims).
    public func groupAverages(threshold t: Double, conditions cs: [ConditionResult]? = nil) -> [GroupAverage] {
        let cs = cs ?? conditions
        var bests: [(VariantSpec, Double)] = []
        for c in cs { for b in c.best[t] ?? [] { if let v = try? VariantSpec(name: b.variant) { bests.append((v, b.delta)) } } }
        func avg(_ name: String, _ keep: (VariantSpec) -> Bool) -> GroupAverage? {
            let sel = bests.filter { keep($0.0) }
            guard !sel.isEmpty else { return nil }
            return GroupAverage(name: name, mean: sel.map(\.1).reduce(0, +) / Double(sel.count),
                                variants: Array(Set(sel.map(\.0.name))).sorted())
        }
        var out: [GroupAverage] = []
        for m in ExtractionMethod.allCases {
            for mode in CleaningMode.allCases {
                if let g = avg("\(m.rawValue) \(mode.rawValue)", { $0.method == m && $0.cleaning?.mode == mode }) { out.append(g) }
            }
        }
        if let g = avg("layer-aware (laN)", { if case .layerAware = $0.cleaning?.dims { return true }; return false }) { out.append(g) }
        if let g = avg("uniform (uN)", { if case .uniform = $0.cleaning?.dims { return true }; return false }) { out.append(g) }
        for n in 1...5 {
            if let g = avg("top-\(n) (la\(n), u\(n))", { v in
                switch v.cleaning?.dims { case .layerAware(let k)?, .uniform(let k)?: return k == n; default: return false }
            }) { out.append(g) }
        }
        if let g = avg("uncleaned (probe, mean_diff)", { $0.isBaseline }) { out.append(g) }
        return out
    }
}
