import XCTest
@testable import TillerExperiment
import TillerEval
import TillerSteering

/// Matched claims, the report's sweeps, cosines and threshold curves, and its figures, on
/// synthetic databases (no model needed).
final class ReportFiguresTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "tiller-fig-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    static let questions = 10

    func spec(variants: [String], coefficients: [Double] = [10, 20], extra: String = "") throws -> ExperimentSpec {
        try ExperimentSpec.parse("""
        name: figs
        models: [m]
        traits: [refusal]
        variants: [\(variants.joined(separator: ", "))]
        layers: [3, 5]
        coefficients: [\(coefficients.map { fmt($0) }.joined(separator: ", "))]
        judge: local:m
        coherence_thresholds: [68, 70]
        questions_per_trait: \(Self.questions)
        \(extra)
        """, path: "figs.yaml")
    }

    /// Judge scores: trait = 20 + bonus(variant, question) + coefficient + layer + 2q (baseline
    /// 5 + q); coherence 80 at the smallest coefficient, 69 above (±0.5 by question).
    func fill(_ store: ResultsStore, _ s: ExperimentSpec, bonus: (String, Int) -> Double) throws {
        try store.register(s)
        try store.setLayerNorm(model: "m", layer: 3, mean: 100, excludingMassive: 10, excluded: [7])
        try store.setLayerNorm(model: "m", layer: 5, mean: 200, excludingMassive: 20, excluded: [7])
        let configs = SweepPlanner.grid(model: "m", trait: "refusal", variants: try s.variantSpecs().map(\.name), layers: [3, 5],
                                        plan: s.coefficients, norm: { _ in 1 })
        try store.insert(configurations: configs)
        let smallest = s.coefficients.values.min()!
        for u in SweepPlanner.units(configs: configs, questions: Self.questions, samples: 1, batchSize: 16) {
            try store.insert(generations: u.items.map {
                GenerationRow(configId: $0.config.id, question: $0.question, sample: 0, prompt: "q\($0.question)",
                              response: "answer", tokens: 1, seconds: 0.1, finish: "stop")
            })
            try store.insert(scores: u.items.map { it in
                let c = it.config, q = Double(it.question)
                let trait = c.isBaseline ? 5 + q : 20 + bonus(c.variant, it.question) + c.absoluteCoefficient + Double(c.layer) + 2 * q
                let coh = c.isBaseline ? 90 : (c.absoluteCoefficient == smallest ? 80 : 69) + (q.truncatingRemainder(dividingBy: 2) - 0.5)
                return ScoreRow(configId: c.id, question: it.question, sample: 0, trait: trait, coherence: coh, relevance: 90, offTopic: false, error: nil)
            })
        }
    }

    // MARK: Matched claims

    /// mean_diff is 20 points stronger than probe whatever the cleaning; within each method, la
    /// and u are equal (probe) or la is 4 better (mean_diff). The unmatched claim would have set
    /// mean_diff's la against probe's u and called the method's 20 points a cleaning effect.
    func testClaimFamiliesKeepAMethodDifferenceOutOfACleaningClaim() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        let variants = ["probe", "mean_diff", "probe_preclean_la2", "probe_preclean_u1", "mean_diff_postclean_la2"]
        let s = try spec(variants: variants)
        try fill(store, s) { v, q in v.hasPrefix("mean_diff") ? 20 : (v == "probe_preclean_la2" ? Double(q % 3) - 1 : 0) }
        let fs = try ExperimentReport(store: store).findings.filter { $0.threshold == "coherence ≥ 68" }
        let la = fs.filter { $0.claim == Findings.builtIn[1] }
        // Only probe/preclean holds both laN and uN: mean_diff/postclean has no uN, so no family.
        XCTAssertEqual(la.map(\.family), ["probe, preclean", "pooled"])
        for f in la {
            XCTAssertFalse(f.sideA.contains("mean_diff") || f.sideB.contains("mean_diff"), "\(f)")
            XCTAssertEqual(f.delta ?? .nan, 0, accuracy: 0.5, "la = u within probe: \(f)")
            XCTAssertEqual(f.verdict, .inconclusive, "\(f)")
        }
        // "No effect", per method: probe's cleaned variants against probe, mean_diff's against mean_diff.
        let none = fs.filter { $0.claim == Findings.builtIn[5] }
        XCTAssertEqual(none.map(\.family), ["probe", "mean_diff", "pooled"])
        XCTAssertTrue(none[0].sideB.hasPrefix("probe@"), none[0].sideB)
        XCTAssertTrue(none[1].sideA.hasPrefix("mean_diff_postclean_la2@") && none[1].sideB.hasPrefix("mean_diff@"), "\(none[1])")
        // Custom claims work as written, across methods if the file says so.
        let s2 = try spec(variants: variants, extra: "claims:\n  - {name: md beats probe, a: [mean_diff_postclean_la2], b: [probe_preclean_u1]}")
        let store2 = try ResultsStore(path: dir + "/r2.sqlite")
        try fill(store2, s2) { v, q in v.hasPrefix("mean_diff") ? 20 : (v == "probe_preclean_la2" ? Double(q % 3) - 1 : 0) }
        let custom = try XCTUnwrap(try ExperimentReport(store: store2).findings.first { $0.claim == "md beats probe" && $0.threshold == "coherence ≥ 68" })
        XCTAssertNil(custom.family)
        XCTAssertEqual(custom.delta ?? 0, 20, accuracy: 1e-9)
        XCTAssertEqual(custom.verdict, .supported)
    }

    /// Two families with different effects: each gets its row, and the pooled row is the mean of
    /// the per-item differences over families, bootstrapped over items.
    func testEachFamilyGetsItsRowAndThePooledRowAveragesThem() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        let s = try spec(variants: ["probe", "mean_diff", "probe_preclean_la2", "probe_preclean_u1", "mean_diff_postclean_la2", "mean_diff_postclean_u1",
                                    "probe_preclean_la1"])
        try fill(store, s) { v, q in
            switch v {
            case "mean_diff_postclean_la2": return 30 + Double(q % 2)
            case "mean_diff_postclean_u1": return 26
            case "probe_preclean_la2": return 6
            case "probe_preclean_la1": return 1
            case "probe_preclean_u1": return 4
            default: return v == "mean_diff" ? 20 : 0
            }
        }
        let report = try ExperimentReport(store: store)
        let fs = report.findings.filter { $0.threshold == "coherence ≥ 68" }
        let la = fs.filter { $0.claim == Findings.builtIn[1] }
        XCTAssertEqual(la.map(\.family), ["probe, preclean", "mean_diff, postclean", "pooled"])
        let j = try XCTUnwrap(report.selection.conditions[0].evaluator(.judge))
        let held = j.heldout
        let oddShare = Double(held.filter { $0 % 2 == 1 }.count) / Double(held.count)
        XCTAssertEqual(la[0].delta ?? 0, 2, accuracy: 1e-9)                   // probe: la2 (6) − u1 (4)
        XCTAssertEqual(la[1].delta ?? 0, 4 + oddShare, accuracy: 1e-9)        // mean_diff: la2 (30 + q%2) − u1 (26)
        XCTAssertEqual(la[2].delta ?? 0, (2 + 4 + oddShare) / 2, accuracy: 1e-9)
        XCTAssertEqual(la[2].n, held.count, "pooled over families, n counts items")
        XCTAssertEqual(la[2].verdict, .supported)
        XCTAssertTrue(la[2].note?.contains("2 families") ?? false, la[2].note ?? "")
        // top-2 vs top-1/top-3: only probe/preclean holds la2 and la1.
        let top2 = fs.filter { $0.claim == Findings.builtIn[2] }
        XCTAssertEqual(top2.map(\.family), ["probe, preclean", "pooled"])
        XCTAssertEqual(top2[0].delta ?? 0, 5, accuracy: 1e-9)
        // The report names the family in its rows, and report.json carries it.
        let md = try report.markdown()
        XCTAssertTrue(md.contains("| layer-aware (laN) beats uniform (uN) (mean_diff, postclean) |"), md)
        let json = try JSONSerialization.jsonObject(with: try report.reportJSON()) as! [String: Any]
        let rows = json["findings"] as! [[String: Any]]
        XCTAssertTrue(rows.contains { $0["family"] as? String == "mean_diff, postclean" })
        XCTAssertTrue(rows.contains { $0["family"] is NSNull }, "unmatched claims carry a null family")
    }

    // MARK: Sweeps and threshold curves

    func testSweepsAndThresholdCurvesEqualWhatTheStoredValuesGive() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        let s = try spec(variants: ["probe", "probe_preclean_la2", "probe_postclean_la2"], coefficients: [10, 20, 40])
        try fill(store, s) { v, q in ["probe": 0.0, "probe_preclean_la2": 8, "probe_postclean_la2": 3 + Double(q % 4)][v]! }
        let report = try ExperimentReport(store: store)
        try report.write(directory: dir)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/report.json"))) as! [String: Any]
        XCTAssertEqual(json["schema"] as? String, "tiller.report/1")

        // Sweeps: from the scores table, per configuration and question, Δ against the baseline.
        let scores = try store.scores()
        let configs = try store.configurations()
        let base = try XCTUnwrap(configs.first(where: \.isBaseline))
        func perQuestion(_ id: String, _ key: KeyPath<ScoreRow, Double?>) -> [Double] {
            (0..<Self.questions).map { q in
                let xs = scores.filter { $0.configId == id && $0.question == q }.compactMap { $0[keyPath: key] }
                return xs.reduce(0, +) / Double(xs.count)
            }
        }
        let bt = perQuestion(base.id, \.trait)
        let sweeps = json["sweeps"] as! [[String: Any]]
        XCTAssertEqual(sweeps.count, 3 * 2, "variants × layers for the judge")
        var checked = 0
        for sw in sweeps {
            let v = sw["variant"] as! String, layer = sw["layer"] as! Int
            XCTAssertEqual(sw["evaluator"] as? String, "judge")
            XCTAssertEqual(sw["gate_metric"] as? String, "coherence")
            let pts = sw["points"] as! [[String: Any]]
            let mine = configs.filter { $0.variant == v && $0.layer == layer && !$0.isBaseline }.sorted { $0.absoluteCoefficient < $1.absoluteCoefficient }
            XCTAssertEqual(pts.count, mine.count)
            for (p, c) in zip(pts, mine) {
                let d = zip(perQuestion(c.id, \.trait), bt).map { $0 - $1 }
                let ci = try XCTUnwrap(Statistics.bootstrapCI(d, seed: report.selection.splitSeed &+ 7))
                XCTAssertEqual(p["coef"] as! Double, c.absoluteCoefficient)
                XCTAssertEqual(p["coef_relative"] as! Double, c.absoluteCoefficient / (layer == 3 ? 10 : 20), accuracy: 1e-12)
                XCTAssertEqual(p["delta"] as! Double, d.reduce(0, +) / Double(d.count), accuracy: 1e-9)
                XCTAssertEqual(p["ci_low"] as! Double, ci.low, accuracy: 1e-9)
                XCTAssertEqual(p["ci_high"] as! Double, ci.high, accuracy: 1e-9)
                XCTAssertEqual(p["n"] as? Int, Self.questions)
                let coh = perQuestion(c.id, \.coherence)
                XCTAssertEqual(p["gate_value"] as! Double, coh.reduce(0, +) / Double(coh.count), accuracy: 1e-9)
                checked += 1
            }
        }
        XCTAssertEqual(checked, 3 * 2 * 3)

        // Threshold curves: at the configured gates they are the report's own selection.
        let curves = json["threshold_curves"] as! [[String: Any]]
        XCTAssertEqual(curves.count, 1)
        let curve = curves[0]
        XCTAssertEqual(curve["configured"] as? [Double], [68, 70])
        let pts = curve["points"] as! [[String: Any]]
        let thresholds = pts.map { $0["threshold"] as! Double }
        XCTAssertEqual(thresholds, thresholds.sorted())
        XCTAssertTrue(thresholds.contains(68) && thresholds.contains(70))
        XCTAssertGreaterThan(thresholds.count, 20, "a fine grid")
        let j = try XCTUnwrap(report.selection.conditions[0].evaluator(.judge))
        for g in [68.0, 70] {
            let p = try XCTUnwrap(pts.first { $0["threshold"] as? Double == g })
            let probe = try XCTUnwrap(j.best("probe", gate: .coherence(g)))
            let pc = p["probe"] as! [String: Any]
            XCTAssertEqual(pc["delta"] as! Double, probe.delta.estimate, accuracy: 1e-12)
            XCTAssertEqual(pc["ci_low"] as! Double, probe.delta.low, accuracy: 1e-12)
            XCTAssertEqual(pc["coef"] as! Double, probe.config.absoluteCoefficient)
            let w = try XCTUnwrap(j.best(try XCTUnwrap(report.selection.winner), gate: .coherence(g)))
            let wc = p["winner"] as! [String: Any]
            XCTAssertEqual(wc["variant"] as? String, w.variant)
            XCTAssertEqual(wc["delta"] as! Double, w.delta.estimate, accuracy: 1e-12)
            XCTAssertEqual(wc["ci_high"] as! Double, w.delta.high, accuracy: 1e-12)
            let best = p["best"] as! [String: Any]
            let top = (j.best[.coherence(g)] ?? []).max { $0.selectionDelta < $1.selectionDelta }!
            XCTAssertEqual(best["variant"] as? String, top.variant)
        }
        // Between the gates' values and beyond: at 75 only the smallest coefficient passes (its
        // selection-half coherence is 80), at 85 nothing does.
        let p75 = try XCTUnwrap(pts.first { $0["threshold"] as? Double == 75 })
        let w75 = p75["winner"] as! [String: Any]
        XCTAssertEqual(w75["variant"] as? String, report.selection.winner)
        XCTAssertEqual(w75["coef"] as? Double, 10)
        let heldMean = Double(j.heldout.reduce(0, +)) / Double(j.heldout.count)
        // (20 + 8 + 10 + 5 + 2q) − (5 + q) for the winner (preclean la2, layer 5, coefficient 10).
        XCTAssertEqual(w75["variant"] as? String, "probe_preclean_la2")
        XCTAssertEqual(w75["delta"] as! Double, 38 + heldMean, accuracy: 1e-9)
        if let p85 = pts.first(where: { ($0["threshold"] as! Double) >= 85 }) {
            XCTAssertTrue(p85["winner"] is NSNull && p85["probe"] is NSNull && p85["best"] is NSNull)
        }
    }

    /// The judge-free path: log-odds items gated by the perplexity ratio. Sweep gate values are
    /// the ratio exp(mean NLL − baseline NLL); the threshold curve runs over ratios and equals the
    /// report's selection at the configured gates.
    func testJudgeFreeSweepsUseThePerplexityRatio() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        let s = try ExperimentSpec.parse("""
        name: lo
        models: [m]
        traits: [refusal]
        variants: [probe, probe_preclean_la2]
        layers: [3]
        coefficients: [1, 2, 4]
        evaluators: [logodds, perplexity]
        max_perplexity_ratio: [1.25, 1.5]
        """, path: "lo.yaml")
        try store.register(s)
        let configs = SweepPlanner.grid(model: "m", trait: "refusal", variants: ["probe", "probe_preclean_la2"], layers: [3],
                                        plan: s.coefficients, norm: { _ in 1 })
        try store.insert(configurations: configs)
        let items = 12
        var rows: [ResultsStore.MetricRow] = []
        for c in configs {
            let k = c.isBaseline ? 0 : c.absoluteCoefficient
            let bonus = c.variant == "probe_preclean_la2" ? 1.0 : 0
            rows.append(.init(evaluator: "logodds", configId: c.id, values: (0..<items).map { Double($0 % 4) + k * (1 + bonus) }))
            // NLL rises with the coefficient: ratio exp(0.1·k²) → 1.105, 1.49, 4.95.
            rows.append(.init(evaluator: "perplexity", configId: c.id, values: (0..<4).map { 2 + Double($0) * 0.1 + 0.1 * k * k }))
        }
        try store.insert(metrics: rows)
        let report = try ExperimentReport(store: store)
        let sweeps = try report.sweeps()
        XCTAssertEqual(sweeps.map(\.gateMetric), ["perplexity_ratio", "perplexity_ratio"])
        for sw in sweeps {
            for p in sw.points {
                XCTAssertEqual(p.gateValue ?? 0, Foundation.exp(0.1 * p.coefficient * p.coefficient), accuracy: 1e-9)
                XCTAssertEqual(p.delta, p.coefficient * (sw.variant == "probe" ? 1 : 2), accuracy: 1e-9)
                XCTAssertNil(p.relativeCoefficient, "no layer norms stored")
            }
        }
        let curves = try report.thresholdCurves()
        XCTAssertEqual(curves.count, 1)
        XCTAssertEqual(curves[0].gateMetric, "perplexity_ratio")
        let j = try XCTUnwrap(report.selection.conditions[0].evaluator(.logodds))
        for g in [1.25, 1.5] {
            let p = try XCTUnwrap(curves[0].points.first { $0.threshold == g })
            XCTAssertEqual(p.probe?.config.id, j.best("probe", gate: .perplexity(g))?.config.id)
            XCTAssertEqual(p.probe?.delta, j.best("probe", gate: .perplexity(g))?.delta)
        }
        // Below the smallest ratio nothing passes; past 4.95 the largest coefficient does.
        XCTAssertNil(curves[0].points.first?.probe, "threshold 1: no configuration passes")
        let last = try XCTUnwrap(curves[0].points.last)
        XCTAssertGreaterThan(last.threshold, 4.95)
        XCTAssertEqual(last.best?.variant, "probe_preclean_la2")
        XCTAssertEqual(last.best?.config.absoluteCoefficient, 4)
        let figs = report.figures(sweeps: sweeps, curves: curves)
        XCTAssertEqual(figs.count, 3)
        for group in figs { for f in group.figures { XCTAssertTrue(f.labels.overlaps.isEmpty, "\(group.title): \(f.labels.overlaps)") } }
    }

    func testCosinesOfCleanedVectorsToTheirUncleanedOnes() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        let s = try spec(variants: ["probe", "probe_postclean_la2"])
        try fill(store, s) { _, _ in 0 }
        // Vector files at the sweep layers: the cleaned one zeroes dim 0 of (3, 4) → cosine 0.8.
        let vdir = dir + "/m/refusal/vectors"
        try FileManager.default.createDirectory(atPath: vdir, withIntermediateDirectories: true)
        func write(_ name: String, _ v: [Int: [Float]]) throws -> String {
            let p = vdir + "/\(name).safetensors"
            try SteeringVectorFile(vectors: v, metadata: VectorMetadata()).write(to: p)
            return p
        }
        let u = try write("probe", [3: [3, 4], 5: [1, 0]])
        let c = try write("probe_postclean_la2", [3: [0, 4], 5: [-1, 0]])
        for l in [3, 5] {
            try store.record(vector: "u\(l)", model: "m", trait: "refusal", variant: "probe", layer: l, cleanedDims: [], file: u)
            try store.record(vector: "c\(l)", model: "m", trait: "refusal", variant: "probe_postclean_la2", layer: l, cleanedDims: [0], file: "/gone/m/refusal/vectors/probe_postclean_la2.safetensors")
        }
        _ = c
        let report = try ExperimentReport(store: store)
        let rows = try report.cosines()
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows[0].variant, "probe_postclean_la2")
        XCTAssertEqual(rows[0].uncleaned, "probe")
        XCTAssertEqual(rows[0].cosines[3] ?? 0, 0.8, accuracy: 1e-6, "a moved file is found beside the database")
        XCTAssertEqual(rows[0].cosines[5] ?? 0, -1, accuracy: 1e-6)
        XCTAssertTrue(try report.markdown().contains("| probe_postclean_la2 | probe | 0.8000 | -1.0000 |"))
        let json = try JSONSerialization.jsonObject(with: try report.reportJSON()) as! [String: Any]
        let cj = json["cosines"] as! [[String: Any]]
        XCTAssertEqual((cj[0]["layers"] as! [[String: Any]]).map { $0["layer"] as! Int }, [3, 5])
    }

    // MARK: Figures

    /// A report with many variants and a dense coefficient grid: no figure's labels overlap, and
    /// every label lies inside its figure.
    func testFigureLabelsDoNotOverlap() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        let variants = ["probe", "mean_diff", "probe_preclean_la1", "probe_preclean_la2", "probe_preclean_la3", "probe_preclean_u2",
                        "probe_postclean_la2", "mean_diff_postclean_la2", "mean_diff_preclean_la2", "mean_diff_postclean_u1"]
        let coefs: [Double] = [10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 1000, 1200]
        let s = try spec(variants: variants, coefficients: coefs)
        try fill(store, s) { v, q in Double(v.count % 7) + Double(q % 3) }
        let report = try ExperimentReport(store: store)
        let figs = report.figures(sweeps: try report.sweeps(), curves: try report.thresholdCurves())
        XCTAssertEqual(figs.count, 3, "sweep, scatter and threshold curve for the judge")
        var labels = 0
        for group in figs {
            for f in group.figures {
                XCTAssertTrue(f.labels.overlaps.isEmpty, "\(group.title): \(f.labels.overlaps)")
                for l in f.labels.labels {
                    let b = l.box
                    XCTAssertTrue(b.x >= 0 && b.y >= 0 && b.x + b.width <= f.width + 0.5 && b.y + b.height <= f.height + 0.5,
                                  "\(group.title): label \(l.text) at \(b) outside \(f.width)×\(f.height)")
                }
                labels += f.labels.labels.count
            }
        }
        XCTAssertGreaterThan(labels, 50)
        // The geometry refuses overlapping labels: two ticks at the same place.
        var layout = SVGLabelLayout()
        XCTAssertTrue(layout.place(SVGLabel("1000", x: 100, y: 50, anchor: .middle)))
        XCTAssertFalse(layout.place(SVGLabel("1200", x: 110, y: 50, anchor: .middle)))
        XCTAssertTrue(layout.place(SVGLabel("1200", x: 140, y: 50, anchor: .middle)))
    }

    /// The massive-dims heatmap: 24 four-digit column labels over 18-pixel columns.
    func testHeatmapColumnLabelsDoNotOverlap() throws {
        func dim(_ d: Int, _ m: Double) -> String {
            "{\"dim\":\(d),\"max\":\(m),\"mean\":1,\"ratio_median\":\(m),\"ratio_mean\":\(m),\"massive\":\(m > 100),\"carrier_tokens\":1}"
        }
        let layers = (0..<6).map { l in
            "{\"layer\":\(l),\"tokens\":10,\"median_max\":1,\"mean_abs\":1,\"top_for_global\":[],\"top\":[" +
                (0..<24).map { dim(1000 + 37 * $0 + l, Double(1000 - 30 * $0 + l)) }.joined(separator: ",") + "]}"
        }
        let json = """
        {"schema":"tiller.scan/1","model":"m","n_layers":6,"hidden":2048,"tokens_seen":10,"site":"resid_post",
         "parameters":{"top_k":24,"massive_ratio":100,"global_top":3,"global_min_layers":3},"layers":[\(layers.joined(separator: ","))],
         "dominant":{"dim":1000,"layers_top1":6,"layers_present":6,"cv":0.1,"peak_ratio":1000,"typical_ratio":900},
         "global_dims":[],"window":[2,3],"window_top3":[[1000,1037,1074],[1000,1037,1074]]}
        """
        let scan = try JSONDecoder().decode(ScanResult.self, from: Data(json.utf8))
        let (svg, labels) = scan.svgFigure()
        XCTAssertTrue(svg.contains("rotate(-90"))
        XCTAssertTrue(labels.overlaps.isEmpty, "\(labels.overlaps)")
        XCTAssertEqual(labels.labels.filter(\.vertical).count, 24, "every column labelled")
        XCTAssertTrue(labels.labels.allSatisfy { $0.box.y >= 0 }, "no label above the figure")
    }

    // MARK: Rendering

    /// report.html in headless Chromium: a screenshot is taken, and a script run in the page
    /// measures every SVG text element as the browser laid it out: no two in a figure overlap.
    func testReportRendersInHeadlessChromiumWithoutOverlappingLabels() throws {
        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
            .first(where: FileManager.default.isExecutableFile(atPath:)) else {
            return XCTFail("Chromium is missing: run scripts/setup.sh (apt-get install chromium)")
        }
        let store = try ResultsStore(path: dir + "/r.sqlite")
        let variants = ["probe", "mean_diff", "probe_preclean_la1", "probe_preclean_la2", "probe_preclean_la3", "probe_preclean_u2",
                        "probe_postclean_la2", "mean_diff_postclean_la2"]
        let s = try spec(variants: variants, coefficients: [10, 15, 20, 30, 40, 60, 80, 120])
        try fill(store, s) { v, q in Double(v.count % 5) * 2 + Double(q % 3) }
        let paths = try ExperimentReport(store: store).write(directory: dir)
        var html = try String(contentsOfFile: paths.html, encoding: .utf8)
        let check = """
        <script>(function(){var bad=[],n=0;document.querySelectorAll('svg').forEach(function(svg){
        var ts=[].slice.call(svg.querySelectorAll('text')).map(function(t){return [t.textContent,t.getBoundingClientRect()]});n+=ts.length;
        for(var i=0;i<ts.length;i++)for(var j=i+1;j<ts.length;j++){var a=ts[i][1],b=ts[j][1];
        if(a.left<b.right-0.5&&b.left<a.right-0.5&&a.top<b.bottom-0.5&&b.top<a.bottom-0.5)bad.push(ts[i][0]+' / '+ts[j][0]);}});
        var d=document.createElement('pre');d.id='layout';d.textContent='svgs='+document.querySelectorAll('svg').length+' labels='+n+' overlaps='+bad.length+' '+bad.join('; ');
        document.body.appendChild(d);})();</script>
        """
        html = html.replacingOccurrences(of: "</body>", with: check + "</body>")
        let checked = dir + "/checked.html"
        try html.write(toFile: checked, atomically: true, encoding: .utf8)
        func run(_ args: [String]) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: chromium)
            p.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(dir!)/chrome",
                           "--window-size=1366,7000"] + args
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        let dom = try run(["--dump-dom", "file://\(checked)"])
        let line = try XCTUnwrap(dom.components(separatedBy: "\n").first { $0.contains("id=\"layout\"") }, "the page's check did not run")
        print("chromium layout: \(line.prefix(300))")
        XCTAssertTrue(line.contains(" overlaps=0 "), line)
        let svgs = Int(line.components(separatedBy: "svgs=")[1].prefix { $0.isNumber }) ?? 0
        let labels = Int(line.components(separatedBy: "labels=")[1].prefix { $0.isNumber }) ?? 0
        XCTAssertGreaterThanOrEqual(svgs, 5, "legend, two layer panels, scatter, threshold curve")
        XCTAssertGreaterThan(labels, 60)
        let png = dir + "/report.png"
        _ = try run(["--screenshot=\(png)", "file://\(paths.html)"])
        let image = try Data(contentsOf: URL(fileURLWithPath: png))
        XCTAssertEqual(Array(image.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "a PNG")
        XCTAssertGreaterThan(image.count, 20_000, "a rendered page, not a blank one")
        if let keep = ProcessInfo.processInfo.environment["TILLER_KEEP_SCREENSHOT"] { try? image.write(to: URL(fileURLWithPath: keep)) }
    }
}
