import Foundation
import TillerEval
import TillerSteering

// The cleaning conclusions researchers draw from steering tables, tested rather than read off:
// for each model × trait × trait evaluator and at every gate threshold, a paired comparison on
// the held-out items (per item, group A's selected configuration minus group B's), a paired
// bootstrap 95% CI, and a verdict. The built-in cleaning claims are matched: they compare
// variants of one method (and one cleaning mode where the claim is about which dims to clean),
// once per such family the experiment holds, and once pooled over the families, so that a method
// difference never counts as a cleaning difference. A verdict that changes between thresholds is flagged
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
    /// The matched family a built-in claim was tested in ("probe, preclean"), "pooled" for the
    /// claim over all its families, nil for claims that are not matched (4, 5 and custom ones).
    public var family: String?
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
        case claim, condition, evaluator, threshold, family, delta, n, verdict, note
        case ciLow = "ci_low", ciHigh = "ci_high", thresholdSensitive = "threshold_sensitive", sideA = "side_a", sideB = "side_b"
    }

    /// The claim as a table row names it: "layer-aware (laN) beats uniform (uN) (probe, preclean)".
    public var title: String { family.map { "\(claim) (\($0))" } ?? claim }
    var key: String { "\(claim)\u{1}\(family ?? "")" }
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

    /// A matched family: variants of one method (and, for the cleaning-detail claims, one
    /// cleaning mode), so that a comparison inside it differs only in what the claim is about.
    struct Family {
        var label: String
        var a: (VariantSpec) -> Bool
        var b: (VariantSpec) -> Bool
        var missingA: String
        var missingB: String
    }

    /// The families of the matched built-in claims (1, 2, 3 and 6) that a condition's variants
    /// contain (at least one variant on each side).
    static func families(claim: Int, variants: [String]) -> [Family] {
        let specs = variants.compactMap(spec)
        var out: [Family] = []
        func add(_ f: Family) { if specs.contains(where: f.a), specs.contains(where: f.b) { out.append(f) } }
        switch claim {
        case 0: // preclean vs postclean within probe
            add(Family(label: "probe", a: { $0.method == .probe && $0.cleaning?.mode == .preclean },
                       b: { $0.method == .probe && $0.cleaning?.mode == .postclean },
                       missingA: "probe preclean variants", missingB: "probe postclean variants"))
        case 1, 2: // laN vs uN, la2 vs la1/la3: within one method and one cleaning mode
            for m in ExtractionMethod.allCases {
                for mode in CleaningMode.allCases {
                    let same: (VariantSpec) -> Bool = { $0.method == m && $0.cleaning?.mode == mode }
                    let p = "\(m.rawValue)_\(mode.rawValue)_"
                    if claim == 1 {
                        add(Family(label: "\(m.rawValue), \(mode.rawValue)", a: { same($0) && layerAware($0) }, b: { same($0) && uniform($0) },
                                   missingA: p + "laN variants", missingB: p + "uN variants"))
                    } else {
                        add(Family(label: "\(m.rawValue), \(mode.rawValue)", a: { same($0) && layerAware($0, 2) },
                                   b: { same($0) && (layerAware($0, 1) || layerAware($0, 3)) },
                                   missingA: p + "la2", missingB: p + "la1/la3"))
                    }
                }
            }
        default: // cleaning has no effect: each method's cleaned variants against that method uncleaned
            for m in ExtractionMethod.allCases {
                add(Family(label: m.rawValue, a: { $0.method == m && !$0.isBaseline }, b: { $0.method == m && $0.isBaseline },
                           missingA: "cleaned \(m.rawValue) variants", missingB: m.rawValue))
            }
        }
        return out
    }

    /// What each matched claim needs when the experiment holds no family for it.
    static let familyNeeds = [0: "probe preclean and probe postclean variants",
                              1: "laN and uN variants of the same method and cleaning mode",
                              2: "la2 and la1 or la3 variants of the same method and cleaning mode",
                              5: "a method with both cleaned and uncleaned variants"]

    /// Every finding of one condition and evaluator: each claim at each gate (the matched claims
    /// once per family and once pooled), then the threshold-sensitivity flag set across gates.
    public static func evaluate(_ c: ConditionResult, _ e: EvaluatorResult, claims: [ClaimSpec], seed: UInt64,
                                resamples: Int = Statistics.defaultResamples) -> [Finding] {
        typealias Row = (Double?, Double?, Double?, Int, Verdict, String, String, String?)
        var out: [Finding] = []
        let custom = claims.map { cl in (cl.name, Set(cl.a), Set(cl.b)) }
        for g in e.gates {
            let results = e.best[g] ?? []
            func f(_ claim: String, _ r: Row, family: String? = nil) -> Finding {
                Finding(claim: claim, condition: c.label, evaluator: e.evaluator.rawValue, threshold: g.description, family: family, delta: r.0,
                        ciLow: r.1, ciHigh: r.2, n: r.3, verdict: r.4, thresholdSensitive: false, sideA: r.5, sideB: r.6, note: r.7)
            }
            func side(_ keep: (VariantSpec) -> Bool) -> HeldoutResult? {
                results.filter { spec($0.variant).map(keep) ?? false }
                    .max { $0.selectionDelta != $1.selectionDelta ? $0.selectionDelta < $1.selectionDelta : $0.variant > $1.variant }
            }
            func label(_ r: HeldoutResult) -> String {
                "\(r.variant)@L\(r.config.layer)×\(r.relativeCoefficient.map { fmt($0) } ?? fmt(r.config.absoluteCoefficient))"
            }
            func compare(_ a: HeldoutResult?, _ b: HeldoutResult?, missingA: String, missingB: String) -> Row {
                guard let a, let b else {
                    return (nil, nil, nil, 0, .notTested, a.map(label) ?? missingA, b.map(label) ?? missingB,
                            "the experiment has no selected configuration for " + (a == nil ? missingA : missingB))
                }
                guard let ci = Selection.pairedCI(a.heldoutValues, b.heldoutValues, resamples: resamples, seed: seed &+ 3) else {
                    return (nil, nil, nil, 0, .notTested, label(a), label(b), "no held-out item has both values")
                }
                return (ci.estimate, ci.low, ci.high, ci.n, verdict(ci), label(a), label(b), nil)
            }
            // "No effect" is an equivalence test: supported only when the CI lies within ±20% of
            // the uncleaned Δ, contradicted when it excludes 0.
            func equivalence(_ r: inout Row, margin: Double) {
                guard let lo = r.1, let hi = r.2 else { return }
                r.4 = (lo > 0 || hi < 0) ? .contradicted : (lo >= -margin && hi <= margin ? .supported : .inconclusive)
                r.7 = "supported when the CI lies within ±\(String(format: "%.2f", margin)) (20% of the uncleaned Δ); contradicted when it excludes 0"
            }
            // A matched claim: one row per family, then the pooled row (per held-out item the
            // mean of the families' paired differences, bootstrapped over items).
            func matched(_ k: Int) {
                var pairs: [(HeldoutResult, HeldoutResult, String)] = []
                for fam in families(claim: k, variants: c.variants) {
                    let a = side(fam.a), b = side(fam.b)
                    var r = compare(a, b, missingA: fam.missingA, missingB: fam.missingB)
                    if k == 5, let b { equivalence(&r, margin: 0.2 * abs(b.delta.estimate)) }
                    out.append(f(builtIn[k], r, family: fam.label))
                    if let a, let b, r.0 != nil { pairs.append((a, b, fam.label)) }
                }
                guard !pairs.isEmpty else {
                    let none = families(claim: k, variants: c.variants).isEmpty
                    out.append(f(builtIn[k], (nil, nil, nil, 0, .notTested, "–", "–",
                                              none ? "the experiment has no matched family: needs \(familyNeeds[k]!)" : "no family has selected configurations on both sides"),
                                 family: "pooled"))
                    return
                }
                let items = pairs[0].0.heldoutValues.count
                let d = (0..<items).compactMap { i -> Double? in
                    let xs = pairs.compactMap { a, b, _ -> Double? in
                        guard i < a.heldoutValues.count, i < b.heldoutValues.count, let x = a.heldoutValues[i], let y = b.heldoutValues[i] else { return nil }
                        return x - y
                    }
                    return xs.isEmpty ? nil : xs.reduce(0, +) / Double(xs.count)
                }
                let fams = pairs.map(\.2).joined(separator: "; ")
                guard let ci = Statistics.bootstrapCI(d, resamples: resamples, seed: seed &+ 6) else {
                    out.append(f(builtIn[k], (nil, nil, nil, 0, .notTested, fams, fams, "no held-out item has both values"), family: "pooled"))
                    return
                }
                var r: Row = (ci.estimate, ci.low, ci.high, ci.n, verdict(ci), pairs.map { label($0.0) }.joined(separator: "; "),
                              pairs.map { label($0.1) }.joined(separator: "; "),
                              "\(pairs.count) famil\(pairs.count == 1 ? "y" : "ies") (\(fams)): per held-out item the mean of their paired differences, bootstrapped over items")
                if k == 5 {
                    let margin = 0.2 * pairs.map { abs($0.1.delta.estimate) }.reduce(0, +) / Double(pairs.count)
                    let note = r.7!
                    equivalence(&r, margin: margin)
                    r.7 = note + "; " + r.7!
                }
                out.append(f(builtIn[k], r, family: "pooled"))
            }
            // 1. preclean vs postclean, probe. 2. layer-aware vs uniform. 3. la2 vs the better of
            // la1 and la3. Each within one method (and cleaning mode).
            matched(0)
            matched(1)
            matched(2)
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
            // 6. No effect: per method, its best cleaned variant against it uncleaned.
            matched(5)
            for (name, a, b) in custom {
                out.append(f(name, compare(side { a.contains($0.name) }, side { b.contains($0.name) },
                                           missingA: a.sorted().joined(separator: ", "), missingB: b.sorted().joined(separator: ", "))))
            }
        }
        // Threshold sensitivity: a claim (in one family) whose tested verdicts differ across gates.
        var verdicts: [String: Set<Verdict>] = [:]
        for x in out where x.verdict != .notTested { verdicts[x.key, default: []].insert(x.verdict) }
        for i in out.indices { out[i].thresholdSensitive = (verdicts[out[i].key]?.count ?? 0) > 1 }
        return out
    }

    static func verdict(_ ci: ConfidenceInterval) -> Verdict { ci.low > 0 ? .supported : ci.high < 0 ? .contradicted : .inconclusive }
}
