import Foundation
import TillerEval
import TillerSteering

// The cleaning conclusions researchers draw from steering tables, tested rather than read off:
// for each model × trait × trait evaluator and at every gate threshold, a paired comparison on
// the held-out items (per item, group A's selected configuration minus group B's), a paired
// bootstrap 95% CI, and a verdict. A verdict that changes between thresholds is flagged
// threshold-sensitive: the coherence cliff, made visible.

public enum Verdict: String, Codable, Sendable {
    case supported, contradicted, inconclusive
    case notTested = "not tested"
}

public struct Finding: Codable, Sendable, Equatable {
    public var claim: String
    public var condition: String
    public var evaluator: String
    /// The gate the comparison was made at ("coherence ≥ 68", "perplexity ratio ≤ 1.5").
    public var threshold: String
    public var delta: Double?
    public var ciLow: Double?
    public var ciHigh: Double?
    public var n: Int
    public var verdict: Verdict
    public var thresholdSensitive: Bool
    /// What each side used: `variant@L12×0.5`, or the reason it was not tested.
    public var sideA: String
    public var sideB: String
    public var note: String?

    enum CodingKeys: String, CodingKey {
        case claim, condition, evaluator, threshold, delta, n, verdict, note
        case ciLow = "ci_low", ciHigh = "ci_high", thresholdSensitive = "threshold_sensitive", sideA = "side_a", sideB = "side_b"
    }
}

public enum Findings {
    /// The built-in claims, in the order reports list them.
    public static let builtIn = [
        "preclean beats postclean (probe)",
        "layer-aware (laN) beats uniform (uN)",
        "top-2 (la2) beats top-1 and top-3 (la1, la3)",
        "probe benefits more from cleaning than mean_diff",
        "cleaned vectors need lower coefficients",
        "cleaning has no effect",
    ]

    static func spec(_ v: String) -> VariantSpec? { try? VariantSpec(name: v) }
    static func layerAware(_ v: VariantSpec, _ n: Int? = nil) -> Bool {
        if case .layerAware(let k)? = v.cleaning?.dims { return n == nil || k == n! }
        return false
    }
    static func uniform(_ v: VariantSpec) -> Bool {
        if case .uniform? = v.cleaning?.dims { return true }
        return false
    }

    /// Every finding of one condition and evaluator: each claim at each gate, then the
    /// threshold-sensitivity flag set across gates.
    public static func evaluate(_ c: ConditionResult, _ e: EvaluatorResult, claims: [ClaimSpec], seed: UInt64,
                                resamples: Int = Statistics.defaultResamples) -> [Finding] {
        var out: [Finding] = []
        let custom = claims.map { cl in (cl.name, Set(cl.a), Set(cl.b)) }
        for g in e.gates {
            let results = e.best[g] ?? []
            func f(_ claim: String, _ r: (Double?, Double?, Double?, Int, Verdict, String, String, String?)) -> Finding {
                Finding(claim: claim, condition: c.label, evaluator: e.evaluator.rawValue, threshold: g.description, delta: r.0, ciLow: r.1,
                        ciHigh: r.2, n: r.3, verdict: r.4, thresholdSensitive: false, sideA: r.5, sideB: r.6, note: r.7)
            }
            func side(_ keep: (VariantSpec) -> Bool) -> HeldoutResult? {
                results.filter { spec($0.variant).map(keep) ?? false }
                    .max { $0.selectionDelta != $1.selectionDelta ? $0.selectionDelta < $1.selectionDelta : $0.variant > $1.variant }
            }
            func label(_ r: HeldoutResult) -> String {
                "\(r.variant)@L\(r.config.layer)×\(r.relativeCoefficient.map { fmt($0) } ?? fmt(r.config.absoluteCoefficient))"
            }
            func compare(_ a: HeldoutResult?, _ b: HeldoutResult?, missingA: String, missingB: String) -> (Double?, Double?, Double?, Int, Verdict, String, String, String?) {
                guard let a, let b else {
                    return (nil, nil, nil, 0, .notTested, a.map(label) ?? missingA, b.map(label) ?? missingB,
                            "the experiment has no selected configuration for " + (a == nil ? missingA : missingB))
                }
                guard let ci = Selection.pairedCI(a.heldoutValues, b.heldoutValues, resamples: resamples, seed: seed &+ 3) else {
                    return (nil, nil, nil, 0, .notTested, label(a), label(b), "no held-out item has both values")
                }
                return (ci.estimate, ci.low, ci.high, ci.n, verdict(ci), label(a), label(b), nil)
            }
            // 1. preclean vs postclean, probe.
            out.append(f(builtIn[0], compare(side { $0.method == .probe && $0.cleaning?.mode == .preclean },
                                             side { $0.method == .probe && $0.cleaning?.mode == .postclean },
                                             missingA: "probe preclean variants", missingB: "probe postclean variants")))
            // 2. layer-aware vs uniform.
            out.append(f(builtIn[1], compare(side { layerAware($0) }, side(uniform), missingA: "laN variants", missingB: "uN variants")))
            // 3. la2 vs the better of la1 and la3.
            out.append(f(builtIn[2], compare(side { layerAware($0, 2) }, side { layerAware($0, 1) || layerAware($0, 3) },
                                             missingA: "la2 variants", missingB: "la1/la3 variants")))
            // 4. probe's cleaning benefit minus mean_diff's, per item.
            do {
                let pc = side { $0.method == .probe && !$0.isBaseline }, pu = results.first { $0.variant == "probe" }
                let mc = side { $0.method == .meanDiff && !$0.isBaseline }, mu = results.first { $0.variant == "mean_diff" }
                if let pc, let pu, let mc, let mu {
                    let d = (0..<pc.heldoutValues.count).compactMap { i -> Double? in
                        guard let a = pc.heldoutValues[i], let b = pu.heldoutValues[i], let x = mc.heldoutValues[i], let y = mu.heldoutValues[i] else { return nil }
                        return (a - b) - (x - y)
                    }
                    if let ci = Statistics.bootstrapCI(d, resamples: resamples, seed: seed &+ 4) {
                        out.append(f(builtIn[3], (ci.estimate, ci.low, ci.high, ci.n, verdict(ci), "\(label(pc)) − probe", "\(label(mc)) − mean_diff", nil)))
                    } else {
                        out.append(f(builtIn[3], (nil, nil, nil, 0, .notTested, label(pc), label(mc), "no held-out item has all four values")))
                    }
                } else {
                    out.append(f(builtIn[3], (nil, nil, nil, 0, .notTested, "probe + cleaned probe", "mean_diff + cleaned mean_diff",
                                              "needs probe, mean_diff and a cleaned variant of each")))
                }
            }
            // 5. Coefficients: −log2(cleaned / uncleaned relative coefficient) over cleaned
            // variants whose held-out Δ is at least their uncleaned method's (positive: lower).
            do {
                var d: [Double] = [], used: [String] = []
                for r in results {
                    guard let u = r.uncleaned, let ur = results.first(where: { $0.variant == u }), r.delta.estimate >= ur.delta.estimate,
                          let a = r.relativeCoefficient ?? Optional(r.config.absoluteCoefficient),
                          let b = ur.relativeCoefficient ?? Optional(ur.config.absoluteCoefficient), a > 0, b > 0 else { continue }
                    d.append(-Foundation.log2(a / b))
                    used.append(r.variant)
                }
                if d.count >= 2, let ci = Statistics.bootstrapCI(d, resamples: resamples, seed: seed &+ 5) {
                    out.append(f(builtIn[4], (ci.estimate, ci.low, ci.high, ci.n, verdict(ci), used.joined(separator: ", "), "their uncleaned methods",
                                              "Δ is −log2(coefficient ratio) over variants, not items: +1 means half the coefficient")))
                } else {
                    out.append(f(builtIn[4], (nil, nil, nil, d.count, .notTested, used.joined(separator: ", "), "uncleaned methods",
                                              "fewer than 2 cleaned variants reach their uncleaned method's held-out Δ")))
                }
            }
            // 6. No effect: the best cleaned variant against the best uncleaned one; supported
            // only when the CI lies within ±20% of the uncleaned Δ (an equivalence test).
            do {
                let a = side { !$0.isBaseline }, b = side { $0.isBaseline }
                var r = compare(a, b, missingA: "cleaned variants", missingB: "uncleaned variants")
                if let lo = r.1, let hi = r.2, let b {
                    let margin = 0.2 * abs(b.delta.estimate)
                    r.4 = (lo > 0 || hi < 0) ? .contradicted : (lo >= -margin && hi <= margin ? .supported : .inconclusive)
                    r.7 = "supported when the CI lies within ±\(String(format: "%.2f", margin)) (20% of the uncleaned Δ); contradicted when it excludes 0"
                }
                out.append(f(builtIn[5], r))
            }
            for (name, a, b) in custom {
                out.append(f(name, compare(side { a.contains($0.name) }, side { b.contains($0.name) },
                                           missingA: a.sorted().joined(separator: ", "), missingB: b.sorted().joined(separator: ", "))))
            }
        }
        // Threshold sensitivity: a claim whose tested verdicts differ across gates.
        var verdicts: [String: Set<Verdict>] = [:]
        for x in out where x.verdict != .notTested { verdicts[x.claim, default: []].insert(x.verdict) }
        for i in out.indices { out[i].thresholdSensitive = (verdicts[out[i].claim]?.count ?? 0) > 1 }
        return out
    }

    static func verdict(_ ci: ConfidenceInterval) -> Verdict { ci.low > 0 ? .supported : ci.high < 0 ? .contradicted : .inconclusive }
}
