import Foundation
import TillerEval
import TillerSteering

// What a researcher would otherwise plot by hand from results.sqlite, as data (report.json) and
// as inline SVG (report.html):
// - sweeps: per condition × trait evaluator × variant × layer, each swept coefficient's Δ against
//   the unsteered baseline over all the evaluator's items (paired bootstrap 95% CI; descriptive,
//   both halves) and the gate metric (judge coherence, or perplexity ratio on neutral text);
// - cosines: each cleaned variant's cosine similarity to its uncleaned method's vector per layer;
// - threshold curves: the held-out Δ of the named winner, the uncleaned probe and the best variant
//   when selection (on the selection half, by Selection itself) runs at each gate threshold of a
//   fine grid.

public struct SweepPoint: Sendable, Equatable {
    public var configId: String
    public var coefficient: Double
    public var relativeCoefficient: Double?
    public var delta: Double
    public var ciLow: Double
    public var ciHigh: Double
    public var n: Int
    public var gateValue: Double?
}

public struct SweepSeries: Sendable {
    public var condition: String
    public var evaluator: EvaluatorKind
    public var variant: String
    public var layer: Int
    /// "coherence" (judge) or "perplexity_ratio"; nil when no gate instrument ran.
    public var gateMetric: String?
    public var points: [SweepPoint]
}

public struct CosineRow: Sendable, Equatable {
    public var condition: String
    public var variant: String
    public var uncleaned: String
    /// Layer → cosine similarity of the cleaned vector to the uncleaned one.
    public var cosines: [Int: Double]
}

public struct ThresholdPoint: Sendable {
    public var threshold: Double
    public var winner: HeldoutResult?
    public var probe: HeldoutResult?
    /// The variant with the best selection-half Δ at this threshold.
    public var best: HeldoutResult?
}

public struct ThresholdCurve: Sendable {
    public var condition: String
    public var evaluator: EvaluatorKind
    public var gateMetric: String
    /// The experiment's own gates on this metric.
    public var configured: [Double]
    public var winner: String?
    public var points: [ThresholdPoint]
}

extension EvaluatorKind {
    /// The metric of this trait evaluator's gate.
    func gateMetric(_ spec: ExperimentSpec) -> String? {
        self == .judge ? "coherence" : spec.evaluators.contains(.perplexity) ? "perplexity_ratio" : nil
    }
}

/// What the report derives beyond Selection, kept after the first use (the Markdown, HTML and
/// JSON all show it; threshold curves rerun selection at every threshold of the grid).
final class ReportDerived {
    var sweeps: [SweepSeries]?
    var cosines: [CosineRow]?
    var curves: [ThresholdCurve]?
}

extension ExperimentReport {
    // MARK: Data

    /// Every swept configuration's Δ (all items, paired bootstrap over items) and gate value.
    public func sweeps() throws -> [SweepSeries] {
        if let s = derived.sweeps { return s }
        let s = try computeSweeps()
        derived.sweeps = s
        return s
    }

    public func cosines() throws -> [CosineRow] {
        if let c = derived.cosines { return c }
        let c = try computeCosines()
        derived.cosines = c
        return c
    }

    public func thresholdCurves() throws -> [ThresholdCurve] {
        if let c = derived.curves { return c }
        let c = try computeThresholdCurves()
        derived.curves = c
        return c
    }

    func computeSweeps() throws -> [SweepSeries] {
        let configs = try store.configurations()
        var out: [SweepSeries] = []
        for c in selection.conditions {
            let norms = (try? store.layerNorms(model: c.model)) ?? [:]
            let mine = configs.filter { $0.model == c.model && $0.trait == c.trait }
            guard let base = mine.first(where: \.isBaseline) else { continue }
            let coherence = Dictionary(c.results.map { ($0.config.id, $0.coherence) }, uniquingKeysWith: { a, _ in a })
            for e in c.evaluators {
                guard let bv = e.values[base.id] else { continue }
                let metric = e.evaluator.gateMetric(spec)
                for v in c.variants {
                    for layer in Set(mine.filter { $0.variant == v && !$0.isBaseline }.map(\.layer)).sorted() {
                        let pts = mine.filter { $0.variant == v && $0.layer == layer && !$0.isBaseline }
                            .sorted { $0.absoluteCoefficient < $1.absoluteCoefficient }
                            .compactMap { cf -> SweepPoint? in
                                guard let cv = e.values[cf.id] else { return nil }
                                let d = zip(cv, bv).compactMap { x, y -> Double? in
                                    guard let x, let y else { return nil }
                                    return x - y
                                }
                                guard let ci = Statistics.bootstrapCI(d, resamples: selection.resamples, seed: selection.splitSeed &+ 7) else { return nil }
                                let gv: Double? = metric == "coherence" ? coherence[cf.id] ?? nil : metric == nil ? nil : c.perplexityRatio[cf.id]
                                let rel = norms[layer].flatMap { $0.excludingMassive > 0 ? cf.absoluteCoefficient / $0.excludingMassive : nil }
                                return SweepPoint(configId: cf.id, coefficient: cf.absoluteCoefficient, relativeCoefficient: rel, delta: ci.estimate,
                                                  ciLow: ci.low, ciHigh: ci.high, n: ci.n, gateValue: gv)
                            }
                        if !pts.isEmpty {
                            out.append(SweepSeries(condition: c.label, evaluator: e.evaluator, variant: v, layer: layer, gateMetric: metric, points: pts))
                        }
                    }
                }
            }
        }
        return out
    }

    /// Cosine of each cleaned variant's vector to its uncleaned method's, per swept layer, read
    /// from the vector files the sweep recorded (looked for beside the database when moved).
    func computeCosines() throws -> [CosineRow] {
        let records = try store.vectorRecords()
        let dbDir = (store.path as NSString).deletingLastPathComponent
        var files: [String: SteeringVectorFile] = [:]
        func load(_ path: String) -> SteeringVectorFile? {
            if let f = files[path] { return f }
            let comps = (path as NSString).pathComponents
            let moved = comps.count >= 4 ? (dbDir as NSString).appendingPathComponent(NSString.path(withComponents: Array(comps.suffix(4)))) : path
            guard let f = (try? SteeringVectorFile.load(path: path)) ?? (try? SteeringVectorFile.load(path: moved)) else { return nil }
            files[path] = f
            return f
        }
        var out: [CosineRow] = []
        for c in selection.conditions {
            let mine = records.filter { $0.model == c.model && $0.trait == c.trait }
            for v in c.variants {
                guard let s = try? VariantSpec(name: v), !s.isBaseline else { continue }
                let u = s.method.rawValue
                var cos: [Int: Double] = [:]
                for r in mine where r.variant == v {
                    guard let ur = mine.first(where: { $0.variant == u && $0.layer == r.layer }),
                          let a = load(r.file)?.vectors[r.layer], let b = load(ur.file)?.vectors[r.layer], a.count == b.count else { continue }
                    var dot = 0.0, na = 0.0, nb = 0.0
                    for i in a.indices { dot += Double(a[i]) * Double(b[i]); na += Double(a[i]) * Double(a[i]); nb += Double(b[i]) * Double(b[i]) }
                    if na > 0, nb > 0 { cos[r.layer] = dot / (na.squareRoot() * nb.squareRoot()) }
                }
                if !cos.isEmpty { out.append(CosineRow(condition: c.label, variant: v, uncleaned: u, cosines: cos)) }
            }
        }
        return out
    }

    /// The gate thresholds a curve runs over: every whole coherence point across the observed
    /// range, or for the perplexity ratio 60 steps from 1 to past the largest observed ratio
    /// (log-spaced) plus each observed ratio; the configured gates always included.
    func thresholdGrid(metric: String) -> [Double] {
        var grid: [Double]
        if metric == "coherence" {
            let seen = selection.conditions.flatMap { $0.results.compactMap(\.coherence) } + spec.coherenceThresholds
            let lo = max(0, Foundation.floor((seen.min() ?? 0) - 2)), hi = min(100, Foundation.ceil((seen.max() ?? 100) + 2))
            grid = stride(from: lo, through: hi, by: 1).map { $0 } + spec.coherenceThresholds
        } else {
            let seen = selection.conditions.flatMap { $0.perplexityRatio.values }.filter(\.isFinite)
            let hi = max((seen.max() ?? 2) * 1.05, (spec.maxPerplexityRatio.max() ?? 1.5) * 1.1, 1.1)
            grid = (0...60).map { Foundation.pow(hi, Double($0) / 60) } + seen.filter { $0 >= 1 && $0 <= hi } + spec.maxPerplexityRatio
        }
        // Rounded up, so that a grid point at a configuration's own gate value still admits it
        // (rounded to nearest, about half of them fell just below their value and excluded it).
        return Array(Set(grid.map { ($0 * 1e9).rounded(.up) / 1e9 })).sorted()
    }

    /// Selection rerun at each threshold of the grid (selection half chooses, held-out half
    /// reports, exactly as at the configured gates), for every condition and trait evaluator.
    func computeThresholdCurves() throws -> [ThresholdCurve] {
        var s = spec
        s.winner = selection.winner
        let metrics = Set(selection.conditions.flatMap { $0.evaluators.compactMap { $0.evaluator.gateMetric(spec) } })
        if metrics.contains("coherence") { s.coherenceThresholds = thresholdGrid(metric: "coherence") }
        if metrics.contains("perplexity_ratio") { s.maxPerplexityRatio = thresholdGrid(metric: "perplexity_ratio") }
        guard !metrics.isEmpty else { return [] }
        let rerun = try Selection(store: store, spec: s)
        var out: [ThresholdCurve] = []
        for c in rerun.conditions {
            for e in c.evaluators {
                guard let metric = e.evaluator.gateMetric(spec) else { continue }
                let pts = e.gates.compactMap { g -> ThresholdPoint? in
                    guard let t = g.threshold else { return nil }
                    let list = e.best[g] ?? []
                    let top = list.max { $0.selectionDelta != $1.selectionDelta ? $0.selectionDelta < $1.selectionDelta : $0.variant > $1.variant }
                    return ThresholdPoint(threshold: t, winner: rerun.winner.flatMap { e.best($0, gate: g) }, probe: e.best("probe", gate: g), best: top)
                }
                out.append(ThresholdCurve(condition: c.label, evaluator: e.evaluator, gateMetric: metric,
                                          configured: metric == "coherence" ? spec.coherenceThresholds : spec.maxPerplexityRatio,
                                          winner: rerun.winner, points: pts))
            }
        }
        return out
    }

    // MARK: JSON

    func sweepsJSON(_ sweeps: [SweepSeries]) -> [[String: Any]] {
        sweeps.map { s in
            ["condition": s.condition, "evaluator": s.evaluator.rawValue, "variant": s.variant, "layer": s.layer,
             "gate_metric": s.gateMetric ?? NSNull(),
             "points": s.points.map { p in
                 ["config": p.configId, "coef": p.coefficient, "coef_relative": p.relativeCoefficient ?? NSNull(), "delta": p.delta,
                  "ci_low": p.ciLow, "ci_high": p.ciHigh, "n": p.n, "gate_value": p.gateValue ?? NSNull()] as [String: Any]
             }] as [String: Any]
        }
    }

    func cosinesJSON(_ rows: [CosineRow]) -> [[String: Any]] {
        rows.map { r in
            ["condition": r.condition, "variant": r.variant, "uncleaned": r.uncleaned,
             "layers": r.cosines.keys.sorted().map { ["layer": $0, "cosine": r.cosines[$0]!] as [String: Any] }] as [String: Any]
        }
    }

    func thresholdCurvesJSON(_ curves: [ThresholdCurve]) -> [[String: Any]] {
        func cell(_ h: HeldoutResult?) -> Any {
            guard let h else { return NSNull() }
            return ["variant": h.variant, "layer": h.config.layer, "coef": h.config.absoluteCoefficient, "coef_relative": h.relativeCoefficient ?? NSNull(),
                    "delta": h.delta.estimate, "ci_low": h.delta.low, "ci_high": h.delta.high, "n": h.delta.n] as [String: Any]
        }
        return curves.map { c in
            ["condition": c.condition, "evaluator": c.evaluator.rawValue, "gate_metric": c.gateMetric, "configured": c.configured,
             "winner": c.winner ?? NSNull(),
             "points": c.points.map { ["threshold": $0.threshold, "winner": cell($0.winner), "probe": cell($0.probe), "best": cell($0.best)] as [String: Any] }]
                as [String: Any]
        }
    }

    // MARK: Markdown

    func cosineMarkdown(_ rows: [CosineRow]) -> String {
        guard !rows.isEmpty else { return "" }
        let layers = Set(rows.flatMap { $0.cosines.keys }).sorted()
        var s = "**Cosine similarity of each cleaned vector to its uncleaned one** (1 = cleaning left the direction unchanged):\n\n"
        s += "| Variant | vs | " + layers.map { "L\($0)" }.joined(separator: " | ") + " |\n|---|---|" + layers.map { _ in "---|" }.joined() + "\n"
        for r in rows {
            s += "| \(r.variant) | \(r.uncleaned) | " + layers.map { r.cosines[$0].map { String(format: "%.4f", $0) } ?? "–" }.joined(separator: " | ") + " |\n"
        }
        return s + "\n"
    }

    // MARK: Figures

    static func metricTitle(_ metric: String?) -> String {
        metric == "coherence" ? "judge coherence" : metric == "perplexity_ratio" ? "perplexity ratio" : "gate"
    }

    /// Per condition and evaluator: one panel per layer (Δ with its CI band above, the gate metric
    /// below with the configured gates dotted), one line per variant, the variant's selected
    /// configuration at the first gate ringed.
    func sweepFigures(_ c: ConditionResult, _ e: EvaluatorResult, sweeps: [SweepSeries]) -> [SVGFigure] {
        let mine = sweeps.filter { $0.condition == c.label && $0.evaluator == e.evaluator }
        guard !mine.isEmpty else { return [] }
        let layers = Set(mine.map(\.layer)).sorted()
        let relative = mine.allSatisfy { $0.points.allSatisfy { $0.relativeCoefficient != nil } }
        func xv(_ p: SweepPoint) -> Double { relative ? p.relativeCoefficient! : p.coefficient }
        let all = mine.flatMap(\.points)
        let metric = mine[0].gateMetric
        let gates = e.gates.compactMap(\.threshold)
        let xAxis = Axis(all.map(xv), log: true)
        let yAxis = Axis(all.flatMap { [$0.ciLow, $0.ciHigh] }, log: false, include: [0])
        let gAxis = Axis(all.compactMap(\.gateValue), log: metric == "perplexity_ratio", include: gates)
        let colour = Dictionary(uniqueKeysWithValues: c.variants.enumerated().map { ($1, palette[$0 % palette.count]) })
        let first = e.gates.first.flatMap { e.best[$0] } ?? []
        var figs: [SVGFigure] = []
        // The legend, once, above the panels.
        var legend = SVGFigure(width: 1100, height: 0)
        let bottom = legend.legend(mine.map(\.variant).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }.map { ($0, colour[$0]!, "") },
                                   x: 4, y: 14, maxWidth: 1090)
        legend.height = bottom
        figs.append(legend)
        let xTicks = Array(Set(all.map(xv))).sorted()
        // Many variants' bands on one panel: lighter, so that they stay readable where they overlap.
        let bandOpacity = c.variants.count > 3 ? 0.06 : 0.15
        for layer in layers {
            var f = SVGFigure(width: 360, height: 390)
            let top = PlotArea(x0: 52, y0: 24, width: 296, height: 190, x: xAxis, y: yAxis)
            let low = PlotArea(x0: 52, y0: 256, width: 296, height: 90, x: xAxis, y: gAxis)
            f.text(SVGLabel("L\(layer)", x: 52, y: 14, size: 12, bold: true))
            f.axes(top, xTicks: xTicks, xTitle: nil, yTitle: "Δ \(e.evaluator.rawValue)", xLabels: true)
            f.axes(low, xTicks: xTicks, xTitle: relative ? "coefficient × layer norm (log)" : "coefficient (log)", yTitle: Self.metricTitle(metric))
            f.shape("<line x1=\"\(svgN(top.x0))\" x2=\"\(svgN(top.x0 + top.width))\" y1=\"\(svgN(top.Y(0)))\" y2=\"\(svgN(top.Y(0)))\" stroke=\"#888\"/>")
            for g in gates where gAxis.contains(g) {
                f.shape("<line x1=\"\(svgN(low.x0))\" x2=\"\(svgN(low.x0 + low.width))\" y1=\"\(svgN(low.Y(g)))\" y2=\"\(svgN(low.Y(g)))\" stroke=\"#c00\" stroke-dasharray=\"2,3\"/>")
            }
            if let g = gates.first, gAxis.contains(g) {
                f.text(SVGLabel("gate \(fmt(g))", x: low.x0 + low.width - 2, y: low.Y(g) - 3, size: 9, anchor: .end, fill: "#c00"))
            }
            for s in mine where s.layer == layer {
                let col = colour[s.variant]!
                let xs = s.points.map { top.X(xv($0)) }
                f.shape(band(xs, s.points.map { top.clampY($0.ciLow) }, s.points.map { top.clampY($0.ciHigh) }, colour: col,
                             opacity: bandOpacity))
                f.shape(polyline(zip(xs, s.points.map { top.Y($0.delta) }).map { ($0, $1) }, colour: col))
                for p in s.points {
                    f.shape("<circle cx=\"\(svgN(top.X(xv(p))))\" cy=\"\(svgN(top.Y(p.delta)))\" r=\"2.2\" fill=\"\(col)\"><title>\(esc(s.variant)) L\(layer) ×\(fmt(xv(p))): Δ \(signed(p.delta)) [\(signed(p.ciLow)), \(signed(p.ciHigh))]</title></circle>")
                }
                let g = s.points.compactMap { p in p.gateValue.map { (low.X(xv(p)), low.Y($0)) } }
                f.shape(polyline(g, colour: col))
                for (x, y) in g { f.shape("<circle cx=\"\(svgN(x))\" cy=\"\(svgN(y))\" r=\"2\" fill=\"\(col)\"/>") }
                if let b = first.first(where: { $0.variant == s.variant && $0.config.layer == layer }),
                   let p = s.points.first(where: { $0.configId == b.config.id }) {
                    f.shape("<circle cx=\"\(svgN(top.X(xv(p))))\" cy=\"\(svgN(top.Y(p.delta)))\" r=\"5.5\" fill=\"none\" stroke=\"#000\" stroke-width=\"1.5\"><title>\(esc(s.variant)) selected: L\(layer) ×\(fmt(xv(p)))</title></circle>")
                }
            }
            figs.append(f)
        }
        return figs
    }

    /// Trait Δ against the gate metric, each configuration a point, each variant's frontier (the
    /// configurations no other of the variant beats on both) a line.
    func scatterFigure(_ c: ConditionResult, _ e: EvaluatorResult, sweeps: [SweepSeries]) -> SVGFigure? {
        let mine = sweeps.filter { $0.condition == c.label && $0.evaluator == e.evaluator }
        guard let metric = mine.first?.gateMetric else { return nil }
        let lowerIsBetter = metric == "perplexity_ratio"
        let pts = mine.flatMap { s in s.points.compactMap { p in p.gateValue.map { (s.variant, $0, p.delta, s.layer) } } }
        guard !pts.isEmpty else { return nil }
        let gates = e.gates.compactMap(\.threshold)
        var f = SVGFigure(width: 560, height: 0)
        let colour = Dictionary(uniqueKeysWithValues: c.variants.enumerated().map { ($1, palette[$0 % palette.count]) })
        let variants = c.variants.filter { v in pts.contains { $0.0 == v } }
        let y0 = f.legend(variants.map { ($0, colour[$0]!, "") }, x: 4, y: 14, maxWidth: 550)
        let p = PlotArea(x0: 56, y0: y0 + 8, width: 480, height: 260,
                         x: Axis(pts.map(\.1), log: lowerIsBetter, include: gates), y: Axis(pts.map(\.2), log: false, include: [0]))
        f.height = p.y0 + p.height + 34
        f.axes(p, xTitle: "\(Self.metricTitle(metric))\(lowerIsBetter ? " (log; lower is better)" : "") — all items", yTitle: "Δ \(e.evaluator.rawValue)")
        for g in gates where p.x.contains(g) {
            f.shape("<line x1=\"\(svgN(p.X(g)))\" x2=\"\(svgN(p.X(g)))\" y1=\"\(svgN(p.y0))\" y2=\"\(svgN(p.y0 + p.height))\" stroke=\"#c00\" stroke-dasharray=\"2,3\"/>")
        }
        for v in variants {
            let col = colour[v]!
            let vs = pts.filter { $0.0 == v }
            for q in vs {
                f.shape("<circle cx=\"\(svgN(p.X(q.1)))\" cy=\"\(svgN(p.Y(q.2)))\" r=\"2.5\" fill=\"\(col)\" fill-opacity=\"0.7\"><title>\(esc(v)) L\(q.3): \(Self.metricTitle(metric)) \(fmt(q.1)), Δ \(signed(q.2))</title></circle>")
            }
            // Frontier: walk from the most coherent (lowest ratio) end, keeping each point that
            // raises the best Δ so far.
            let order = vs.sorted { lowerIsBetter ? ($0.1, -$0.2) < ($1.1, -$1.2) : ($0.1, $0.2) > ($1.1, $1.2) }
            var frontier: [(Double, Double)] = []
            var bestY = -Double.infinity
            for q in order where q.2 > bestY { bestY = q.2; frontier.append((p.X(q.1), p.Y(q.2))) }
            f.shape(polyline(frontier, colour: col, width: 1.5))
        }
        return f
    }

    /// Held-out Δ of the winner, the uncleaned probe and the best variant against the gate
    /// threshold; each with its CI band; the configured gates dotted.
    func thresholdFigure(_ curve: ThresholdCurve) -> SVGFigure? {
        let series: [(String, (ThresholdPoint) -> HeldoutResult?, String)] = [
            ("winner (\(curve.winner ?? "none"))", { $0.winner }, palette[3]), ("probe (uncleaned)", { $0.probe }, palette[0]),
            ("best variant at each threshold", { $0.best }, palette[2]),
        ]
        let vals = curve.points.flatMap { p in series.compactMap { $0.1(p) }.flatMap { [$0.delta.low, $0.delta.high] } }
        guard !vals.isEmpty else { return nil }
        let log = curve.gateMetric == "perplexity_ratio"
        var f = SVGFigure(width: 560, height: 0)
        let y0 = f.legend(series.map { ($0.0, $0.2, $0.0.hasPrefix("best") ? " stroke-dasharray=\"5,3\"" : "") }, x: 4, y: 14, maxWidth: 550)
        let p = PlotArea(x0: 56, y0: y0 + 8, width: 480, height: 240,
                         x: Axis(curve.points.map(\.threshold), log: log, pad: 0.02), y: Axis(vals, log: false, include: [0]))
        f.height = p.y0 + p.height + 34
        f.axes(p, xTitle: curve.gateMetric == "coherence" ? "coherence gate (≥ threshold, selection half)" : "perplexity ratio gate (≤ threshold, log)",
               yTitle: "held-out Δ \(curve.evaluator.rawValue)")
        f.shape("<line x1=\"\(svgN(p.x0))\" x2=\"\(svgN(p.x0 + p.width))\" y1=\"\(svgN(p.Y(0)))\" y2=\"\(svgN(p.Y(0)))\" stroke=\"#888\"/>")
        for g in curve.configured where p.x.contains(g) {
            f.shape("<line x1=\"\(svgN(p.X(g)))\" x2=\"\(svgN(p.X(g)))\" y1=\"\(svgN(p.y0))\" y2=\"\(svgN(p.y0 + p.height))\" stroke=\"#c00\" stroke-dasharray=\"2,3\"/>")
            f.text(SVGLabel(fmt(g), x: p.X(g) + 2, y: p.y0 + 10, size: 9, fill: "#c00"))
        }
        for (name, pick, col) in series {
            // Runs of consecutive thresholds where the curve exists.
            var runs: [[(Double, HeldoutResult)]] = [[]]
            for q in curve.points {
                if let h = pick(q) { runs[runs.count - 1].append((q.threshold, h)) } else if !runs[runs.count - 1].isEmpty { runs.append([]) }
            }
            for run in runs where !run.isEmpty {
                let xs = run.map { p.X($0.0) }
                if !name.hasPrefix("best") { f.shape(band(xs, run.map { p.clampY($0.1.delta.low) }, run.map { p.clampY($0.1.delta.high) }, colour: col)) }
                f.shape(polyline(zip(xs, run.map { p.Y($0.1.delta.estimate) }).map { ($0, $1) }, colour: col,
                                 dash: name.hasPrefix("best") ? " stroke-dasharray=\"5,3\"" : ""))
                for (t, h) in run {
                    f.shape("<circle cx=\"\(svgN(p.X(t)))\" cy=\"\(svgN(p.Y(h.delta.estimate)))\" r=\"1.6\" fill=\"\(col)\"><title>\(fmt(t)): \(esc(h.variant)) L\(h.config.layer) Δ \(signed(h.delta.estimate)) [\(signed(h.delta.low)), \(signed(h.delta.high))]</title></circle>")
                }
            }
        }
        return f
    }

    /// Every figure of the report, in page order, with where it goes (for the HTML and tests).
    func figures(sweeps: [SweepSeries], curves: [ThresholdCurve]) -> [(condition: String, title: String, figures: [SVGFigure])] {
        var out: [(condition: String, title: String, figures: [SVGFigure])] = []
        for c in selection.conditions {
            for e in c.evaluators {
                let sw = sweepFigures(c, e, sweeps: sweeps)
                if !sw.isEmpty {
                    out.append((c.label, "Sweep: Δ \(e.evaluator.rawValue) (all \(e.items) items, 95% CI band) and \(Self.metricTitle(e.evaluator.gateMetric(spec))) vs coefficient, per layer; ringed: each variant's configuration selected at \(e.gates.first?.description ?? "no gate")", sw))
                }
                if let s = scatterFigure(c, e, sweeps: sweeps) {
                    out.append((c.label, "Δ \(e.evaluator.rawValue) vs \(Self.metricTitle(e.evaluator.gateMetric(spec))): every configuration, and each variant's frontier", [s]))
                }
                if let curve = curves.first(where: { $0.condition == c.label && $0.evaluator == e.evaluator }), let t = thresholdFigure(curve) {
                    out.append((c.label, "Threshold curve (\(e.evaluator.rawValue)): held-out Δ when selection runs at each gate threshold; dotted: the configured gates", [t]))
                }
            }
        }
        return out
    }
}
