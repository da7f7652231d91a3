import Foundation
import TillerEval
import TillerSteering

// Selection that can be trusted (AxBench's protocol): every trait evaluator's items (the judge's
// steering questions, the reference questions of logodds, the A/B items) are split, seeded, into a
// selection half and a held-out half. Per variant, the configuration (layer, coefficient) with the
// best mean on the selection half among those that pass the coherence gate is chosen; its Δ
// against the unsteered baseline is then reported on the held-out half only, with a paired 95%
// bootstrap CI over held-out items. A cleaned variant is compared with its uncleaned method the
// same way (paired, held-out), and "no significant difference" is said when that CI holds 0.

/// Mean judge scores of one configuration over its scored answers (the plots and answer browser).
public struct ConfigResult: Sendable, Equatable {
    public var config: Configuration
    public var answers: Int
    public var trait: Double?
    public var coherence: Double?
    /// coefficient / layer norm (massive dims excluded), whatever the scale the sweep used.
    public var relativeCoefficient: Double?
}

/// What keeps selection from choosing a broken model: the judge's mean coherence on the
/// selection answers (≥ threshold), or the perplexity ratio on neutral text (≤ threshold).
public enum Gate: Sendable, Equatable, Hashable, CustomStringConvertible {
    case coherence(Double)
    case perplexity(Double)
    /// No coherence instrument is configured for this evaluator.
    case none

    public var description: String {
        switch self {
        case .coherence(let t): return "coherence ≥ \(fmt(t))"
        case .perplexity(let r): return "perplexity ratio ≤ \(fmt(r))"
        case .none: return "no coherence gate"
        }
    }
    public var threshold: Double? {
        switch self { case .coherence(let t), .perplexity(let t): return t; case .none: return nil }
    }
}

/// One variant's selected configuration and its held-out result.
public struct HeldoutResult: Sendable {
    public var variant: String
    public var config: Configuration
    public var relativeCoefficient: Double?
    /// Mean Δ on the selection half (what chose it; not evidence).
    public var selectionDelta: Double
    /// Δ against the baseline on the held-out half: paired bootstrap CI over held-out items.
    public var delta: ConfidenceInterval
    /// The gate's value for this configuration (selection-half coherence, or perplexity ratio).
    public var gateValue: Double?
    /// Cleaned variants: held-out Δ minus the uncleaned method's, paired.
    public var vsUncleaned: ConfidenceInterval?
    public var uncleaned: String?
    /// Per held-out item (in `EvaluatorResult.heldout` order) the selected configuration's value.
    public var heldoutValues: [Double?]
    /// The same for the selection half.
    public var selectionValues: [Double?]
    public var noSignificantDifference: Bool { vsUncleaned.map { !$0.excludesZero } ?? false }
}

/// One trait evaluator's selection for one model and trait.
public struct EvaluatorResult: Sendable {
    public var evaluator: EvaluatorKind
    public var items: Int
    public var selection: [Int]
    public var heldout: [Int]
    public var gates: [Gate]
    /// gate → selected result per variant, largest held-out Δ first.
    public var best: [Gate: [HeldoutResult]]
    /// Baseline means over the held-out items.
    public var baselineHeldout: Double?
    /// Configuration id → per-item values (nil where missing).
    public var values: [String: [Double?]]
    /// Evidence for the instrument (and, for gates, for the coherence instrument).
    public var validations: [InstrumentValidation]
    public var gateValidations: [InstrumentValidation]

    /// All checks there and passed.
    public var validated: Bool { !validations.isEmpty && validations.allSatisfy(\.passed) }
    public var gateValidated: Bool { gates.allSatisfy { $0 == .none } || (!gateValidations.isEmpty && gateValidations.allSatisfy(\.passed)) }
    public func best(_ variant: String, gate: Gate) -> HeldoutResult? { best[gate]?.first { $0.variant == variant } }
}

public struct ConditionResult: Sendable {
    public var model: String
    public var trait: String
    public var baseline: ConfigResult?
    public var results: [ConfigResult]
    public var variants: [String]
    public var evaluators: [EvaluatorResult]
    public var validations: [InstrumentValidation]
    /// Perplexity ratio per configuration id (when the perplexity evaluator ran).
    public var perplexityRatio: [String: Double]
    /// Mean repetition of answers per configuration id (when degeneration ran).
    public var repetition: [String: Double]

    public var label: String { "\(model) \(trait)" }
    public func evaluator(_ k: EvaluatorKind) -> EvaluatorResult? { evaluators.first { $0.evaluator == k } }
    /// The evaluator a summary leads with: the first trait evaluator that passed validation,
    /// else the first one (labelled unvalidated).
    public var headline: EvaluatorResult? { evaluators.first { $0.validated && $0.gateValidated } ?? evaluators.first }
}

public struct SummaryRow: Sendable {
    public var condition: String
    public var evaluator: EvaluatorKind
    public var validated: Bool
    public var gate: Gate
    public var winner: HeldoutResult?
    public var probe: HeldoutResult?
    /// Held-out winner − probe, paired.
    public var benefit: ConfidenceInterval?
    /// The variant with the best selection-half Δ, and its held-out result.
    public var best: HeldoutResult?
}

public struct Selection: Sendable {
    public var conditions: [ConditionResult]
    public var winner: String?
    public var summary: [SummaryRow]
    public var splitSeed: UInt64
    public var resamples = Statistics.defaultResamples

    public init(store: ResultsStore, spec: ExperimentSpec) throws {
        splitSeed = spec.effectiveSplitSeed
        let variantOrder = (try? spec.variantSpecs().map(\.name)) ?? []
        let configs = try store.configurations()
        let scores = try store.scores()
        var byConfig: [String: (t: [Double], c: [Double], n: Int)] = [:]
        for s in scores {
            var e = byConfig[s.configId] ?? ([], [], 0)
            e.n += 1
            if let t = s.trait { e.t.append(t) }
            if let c = s.coherence { e.c.append(c) }
            byConfig[s.configId] = e
        }
        var metrics: [EvaluatorKind: [String: [Double]]] = [:]
        for e in ExperimentEvaluators.build(spec).listed where e.isTeacherForced { metrics[e.kind] = try store.metrics(evaluator: e.kind.rawValue) }
        var repetitionSum: [String: (Double, Int)] = [:]
        if spec.evaluators.contains(.degeneration) {
            for g in try store.generations() {
                let r = Degeneration.repetition(g.response)
                repetitionSum[g.configId] = ((repetitionSum[g.configId]?.0 ?? 0) + r, (repetitionSum[g.configId]?.1 ?? 0) + 1)
            }
        }
        let validations = try store.validations()
        var norms: [String: [Int: ResultsStore.LayerNorm]] = [:]
        var groups: [String: [Configuration]] = [:]
        var order: [String] = []
        for c in configs {
            if norms[c.model] == nil { norms[c.model] = try store.layerNorms(model: c.model) }
            let key = "\(c.model)\u{1}\(c.trait)"
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(c)
        }
        let rank: (String) -> Int = { key in
            let p = key.split(separator: "\u{1}", omittingEmptySubsequences: false).map(String.init)
            let m = spec.models.firstIndex { $0 == p[0] || ($0 as NSString).lastPathComponent == p[0] } ?? 999
            let t = spec.traits.firstIndex { $0 == p[1] || (($0 as NSString).lastPathComponent as NSString).deletingPathExtension == p[1] } ?? 999
            return m * 1000 + t
        }
        func mean(_ x: [Double]) -> Double? { x.isEmpty ? nil : x.reduce(0, +) / Double(x.count) }
        var conds: [ConditionResult] = []
        for key in order.sorted(by: { (rank($0), $0) < (rank($1), $1) }) {
            let cs = groups[key]!
            let model = cs[0].model, trait = cs[0].trait
            let rel: (Configuration) -> Double? = { c in
                c.isBaseline ? 0 : norms[c.model]?[c.layer].flatMap { $0.excludingMassive > 0 ? c.absoluteCoefficient / $0.excludingMassive : nil }
            }
            let results = cs.compactMap { c -> ConfigResult? in
                guard let e = byConfig[c.id], e.n > 0 else { return nil }
                return ConfigResult(config: c, answers: e.n, trait: mean(e.t), coherence: mean(e.c), relativeCoefficient: rel(c))
            }
            let present = Set(cs.filter { !$0.isBaseline }.map(\.variant))
            let vs = variantOrder.filter(present.contains) + present.subtracting(variantOrder).sorted()
            let mine = validations.filter { $0.model == model && $0.trait == trait }.map(\.validation)
            // Perplexity ratio per configuration: exp(mean over texts of NLL − baseline NLL).
            var ratio: [String: Double] = [:]
            if let ppl = metrics[.perplexity], let b = cs.first(where: { $0.isBaseline }), let base = ppl[b.id] {
                for c in cs {
                    guard let v = ppl[c.id], v.count == base.count, !v.isEmpty else { continue }
                    var d = 0.0
                    for i in v.indices { d += v[i] - base[i] }
                    ratio[c.id] = Foundation.exp(d / Double(v.count))
                }
            }
            var repetition: [String: Double] = [:]
            for c in cs { if let r = repetitionSum[c.id] { repetition[c.id] = r.0 / Double(r.1) } }
            var evals: [EvaluatorResult] = []
            for k in spec.evaluators where k.measuresTrait {
                // Per-item values of each configuration.
                var values: [String: [Double?]] = [:]
                var items = 0
                var gates: [Gate] = []
                var coherence: [String: [Double?]] = [:]
                switch k {
                case .judge:
                    items = spec.questionsPerTrait
                    var t: [String: [[Double]]] = [:], h: [String: [[Double]]] = [:]
                    for s in scores where s.question < items {
                        if let v = s.trait { t[s.configId, default: Array(repeating: [], count: items)][s.question].append(v) }
                        if let v = s.coherence { h[s.configId, default: Array(repeating: [], count: items)][s.question].append(v) }
                    }
                    for c in cs {
                        if let x = t[c.id] { values[c.id] = x.map(mean) }
                        if let x = h[c.id] { coherence[c.id] = x.map(mean) }
                    }
                    gates = spec.coherenceThresholds.map { .coherence($0) }
                default:
                    let m = metrics[k] ?? [:]
                    items = cs.compactMap { m[$0.id]?.count }.max() ?? 0
                    for c in cs { if let v = m[c.id], v.count == items { values[c.id] = v.map { Optional($0) } } }
                    gates = spec.evaluators.contains(.perplexity) ? spec.maxPerplexityRatio.map { .perplexity($0) } : [.none]
                }
                guard items > 0, !values.isEmpty else { continue }
                let split = Statistics.split(count: items, seed: splitSeed)
                let sel = split.selection, held = split.heldout
                func meanOf(_ v: [Double?], _ idx: [Int]) -> Double? { mean(idx.compactMap { $0 < v.count ? v[$0] : nil }) }
                let baseline = cs.first(where: { $0.isBaseline })
                let baseValues = baseline.flatMap { values[$0.id] }
                var best: [Gate: [HeldoutResult]] = [:]
                for g in gates {
                    var list: [HeldoutResult] = []
                    var chosen: [String: HeldoutResult] = [:]
                    for v in vs {
                        let candidates = cs.filter { $0.variant == v && values[$0.id] != nil }.compactMap { c -> (Configuration, Double, Double?)? in
                            guard let m = meanOf(values[c.id]!, sel) else { return nil }
                            var gv: Double?
                            switch g {
                            case .coherence(let t):
                                gv = coherence[c.id].flatMap { meanOf($0, sel) }
                                guard let x = gv, x >= t else { return nil }
                            case .perplexity(let r):
                                gv = ratio[c.id]
                                guard let x = gv, x <= r else { return nil }
                            case .none: break
                            }
                            return (c, m, gv)
                        }
                        // Ties: the smaller coefficient, then the earlier layer (deterministic).
                        guard let b = candidates.max(by: { a, b in
                            a.1 != b.1 ? a.1 < b.1 : (a.0.absoluteCoefficient, a.0.layer) > (b.0.absoluteCoefficient, b.0.layer)
                        }), let bv = baseValues else { continue }
                        let cv = values[b.0.id]!
                        let pairs = held.compactMap { i -> Double? in
                            guard let x = cv[i], let y = bv[i] else { return nil }
                            return x - y
                        }
                        let selPairs = sel.compactMap { i -> Double? in
                            guard let x = cv[i], let y = bv[i] else { return nil }
                            return x - y
                        }
                        guard let ci = Statistics.bootstrapCI(pairs, resamples: resamples, seed: splitSeed &+ 1) else { continue }
                        let r = HeldoutResult(variant: v, config: b.0, relativeCoefficient: rel(b.0), selectionDelta: mean(selPairs) ?? 0,
                                              delta: ci, gateValue: b.2, vsUncleaned: nil, uncleaned: nil,
                                              heldoutValues: held.map { cv[$0] }, selectionValues: sel.map { cv[$0] })
                        chosen[v] = r
                        list.append(r)
                    }
                    // Cleaned variants against their uncleaned method, paired on held-out items.
                    for i in list.indices {
                        guard let spec = try? VariantSpec(name: list[i].variant), !spec.isBaseline else { continue }
                        let u = spec.method.rawValue
                        guard let ur = chosen[u] else { continue }
                        list[i].uncleaned = u
                        list[i].vsUncleaned = Selection.pairedCI(list[i].heldoutValues, ur.heldoutValues, resamples: resamples, seed: splitSeed &+ 2)
                    }
                    best[g] = list.sorted { $0.delta.estimate != $1.delta.estimate ? $0.delta.estimate > $1.delta.estimate : $0.variant < $1.variant }
                }
                let gateChecks: [InstrumentValidation]
                switch k {
                case .judge: gateChecks = mine.filter { $0.instrument == "judge" && $0.check == "coherence_auc" }
                default: gateChecks = gates == [.none] ? [] : mine.filter { $0.instrument == EvaluatorKind.perplexity.rawValue }
                }
                let ownChecks = k == .judge ? mine.filter { $0.instrument == "judge" && $0.check == "trait_auc" } : mine.filter { $0.instrument == k.rawValue }
                let baselineHeldout: Double? = baseValues.flatMap { meanOf($0, held) }
                let result = EvaluatorResult(evaluator: k, items: items, selection: sel, heldout: held, gates: gates, best: best,
                                             baselineHeldout: baselineHeldout, values: values,
                                             validations: ownChecks, gateValidations: gateChecks)
                evals.append(result)
            }
            conds.append(ConditionResult(model: model, trait: trait, baseline: results.first { $0.config.isBaseline }, results: results,
                                         variants: vs, evaluators: evals, validations: mine, perplexityRatio: ratio, repetition: repetition))
        }
        conditions = conds
        // The winner: as the file says, else the cleaned variant with the best mean selection-half
        // Δ of the headline evaluator over conditions (never chosen on held-out data).
        var winner = spec.winner
        if winner == nil {
            var sums: [String: [Double]] = [:]
            for c in conds {
                guard let h = c.headline, let g = h.gates.first else { continue }
                for b in h.best[g] ?? [] where !((try? VariantSpec(name: b.variant))?.isBaseline ?? true) { sums[b.variant, default: []].append(b.selectionDelta) }
            }
            winner = sums.filter { $0.value.count == conds.count }.max { a, b in
                let x = a.value.reduce(0, +), y = b.value.reduce(0, +)
                return x != y ? x < y : a.key > b.key
            }?.key
        }
        self.winner = winner
        var rows: [SummaryRow] = []
        for c in conds {
            for e in c.evaluators {
                guard let g = e.gates.first else { continue }
                let list = e.best[g] ?? []
                let w = winner.flatMap { e.best($0, gate: g) }
                let p = e.best("probe", gate: g)
                let top = list.max { $0.selectionDelta != $1.selectionDelta ? $0.selectionDelta < $1.selectionDelta : $0.variant > $1.variant }
                let benefit = (w != nil && p != nil) ? Selection.pairedCI(w!.heldoutValues, p!.heldoutValues, resamples: resamples, seed: splitSeed &+ 2) : nil
                rows.append(SummaryRow(condition: c.label, evaluator: e.evaluator, validated: e.validated && e.gateValidated, gate: g,
                                       winner: w, probe: p, benefit: benefit, best: top))
            }
        }
        summary = rows
    }

    /// Paired bootstrap CI of a − b over the items both have.
    static func pairedCI(_ a: [Double?], _ b: [Double?], resamples: Int, seed: UInt64) -> ConfidenceInterval? {
        let d = zip(a, b).compactMap { x, y -> Double? in
            guard let x, let y else { return nil }
            return x - y
        }
        return Statistics.bootstrapCI(d, resamples: resamples, seed: seed)
    }
}
