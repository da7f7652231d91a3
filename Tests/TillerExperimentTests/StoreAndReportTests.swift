import GRDB
import XCTest
@testable import TillerExperiment
import TillerEval

/// Results store, selection and report on synthetic databases (no model needed).
final class StoreAndReportTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "tiller-exp-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    static let questions = 8
    /// The experiment's judge.
    var judge = "local:m"

    func spec(extra: String = "") throws -> ExperimentSpec {
        try ExperimentSpec.parse("""
        name: synth
        models: [m]
        traits: [refusal]
        methods: [probe]
        cleaning: [preclean_la2, postclean_la2, preclean_u1]
        layers: [3, 5]
        coefficients: [10, 20]
        judge: \(judge)
        coherence_thresholds: [68, 70]
        questions_per_trait: \(Self.questions)
        \(extra)
        """, path: "synth.yaml")
    }

    /// Scores: trait = f(variant, layer, coef) + question effect, coherence falls with the
    /// coefficient. `bonus` gives each variant's advantage, per question when it is a closure.
    func fill(_ store: ResultsStore, only keep: ((WorkItem) -> Bool)? = nil,
              bonus: @escaping (String, Int, Double) -> Double = { v, _, _ in
                  ["probe": 0.0, "probe_preclean_la2": 8, "probe_postclean_la2": 3, "probe_preclean_u1": 5][v]!
              }) throws {
        let s = try spec()
        try store.register(s)
        try store.setLayerNorm(model: "m", layer: 3, mean: 100, excludingMassive: 10, excluded: [7])
        try store.setLayerNorm(model: "m", layer: 5, mean: 200, excludingMassive: 20, excluded: [7])
        let configs = SweepPlanner.grid(model: "m", trait: "refusal", variants: try s.variantSpecs().map(\.name), layers: [3, 5],
                                        plan: s.coefficients, norm: { _ in 1 })
        try store.insert(configurations: configs)
        for u in SweepPlanner.units(configs: configs, questions: Self.questions, samples: 1, batchSize: 3) {
            let items = u.items.filter { keep?($0) ?? true }
            try store.insert(generations: items.map {
                GenerationRow(configId: $0.config.id, question: $0.question, sample: 0, prompt: "q\($0.question)",
                              response: "answer <\($0.config.id)>", tokens: 3, seconds: 0.1, finish: "stop")
            })
            try store.insert(scores: items.map { it in
                let c = it.config
                let q = Double(it.question)
                let trait = c.isBaseline ? 5 + q : 20 + bonus(c.variant, it.question, c.absoluteCoefficient) + c.absoluteCoefficient + Double(c.layer) + 2 * q
                let coh = c.isBaseline ? 90 : (c.absoluteCoefficient == 10 ? 80 : 69) + (q.truncatingRemainder(dividingBy: 2) - 0.5)
                return ScoreRow(configId: c.id, question: it.question, sample: 0, trait: trait, coherence: coh, relevance: 90, offTopic: false, error: nil)
            })
        }
    }

    func testSelectionChoosesOnTheSelectionHalfAndReportsTheHeldOutHalf() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        try fill(store)
        let sel = try Selection(store: store, spec: try spec())
        XCTAssertEqual(sel.conditions.count, 1)
        let c = sel.conditions[0]
        let j = try XCTUnwrap(c.evaluator(.judge))
        let split = Statistics.split(count: Self.questions, seed: 0)
        XCTAssertEqual(j.selection, split.selection)
        XCTAssertEqual(j.heldout, split.heldout)
        XCTAssertEqual(Set(j.selection).intersection(j.heldout), [])
        XCTAssertEqual(j.selection.count + j.heldout.count, Self.questions)
        // Gate 68: coefficient 20 (mean coherence 69 on the selection half) passes; gate 70 only 10.
        let b68 = try XCTUnwrap(j.best("probe_preclean_la2", gate: .coherence(68)))
        XCTAssertEqual(b68.config.absoluteCoefficient, 20)
        XCTAssertEqual(b68.config.layer, 5)
        XCTAssertEqual(b68.relativeCoefficient, 1) // 20 / norm 20
        // Held-out Δ: per question (20 + 8 + 20 + 5 + 2q) − (5 + q), averaged over held-out questions only.
        let heldMean = Double(split.heldout.reduce(0, +)) / Double(split.heldout.count)
        XCTAssertEqual(b68.delta.estimate, 48 + heldMean, accuracy: 1e-9)
        XCTAssertEqual(b68.delta.n, split.heldout.count)
        XCTAssertLessThanOrEqual(b68.delta.low, b68.delta.estimate)
        XCTAssertGreaterThanOrEqual(b68.delta.high, b68.delta.estimate)
        XCTAssertLessThan(b68.delta.low, b68.delta.high) // the question effect makes the CI non-degenerate
        let selMean = Double(split.selection.reduce(0, +)) / Double(split.selection.count)
        XCTAssertEqual(b68.selectionDelta, 48 + selMean, accuracy: 1e-9)
        // Against the uncleaned probe: +8 on every held-out question.
        XCTAssertEqual(b68.uncleaned, "probe")
        XCTAssertEqual(b68.vsUncleaned?.estimate ?? 0, 8, accuracy: 1e-9)
        XCTAssertFalse(b68.noSignificantDifference)
        let b70 = try XCTUnwrap(j.best("probe_preclean_la2", gate: .coherence(70)))
        XCTAssertEqual(b70.config.absoluteCoefficient, 10)
        XCTAssertEqual(j.best[.coherence(68)]?.first?.variant, "probe_preclean_la2")
        let row = try XCTUnwrap(sel.summary.first)
        XCTAssertEqual(row.winner?.variant, "probe_preclean_la2")
        XCTAssertEqual(row.benefit?.estimate ?? 0, 8, accuracy: 1e-9)
        XCTAssertFalse(row.validated, "no judge validation is stored")
    }

    func testReportLabelsAnUnvalidatedJudgeAndWritesReportJSON() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        try fill(store)
        let report = try ExperimentReport(store: store)
        XCTAssertTrue(report.judgeFailedButUsed)
        let paths = try report.write(directory: dir)
        let md = try String(contentsOfFile: paths.markdown, encoding: .utf8)
        XCTAssertTrue(md.contains("No instrument was validated"), md)
        XCTAssertTrue(md.contains("⚠ NOT VALIDATED"), md)
        XCTAssertTrue(md.contains("| probe_preclean_la2 | +"), md)
        XCTAssertTrue(md.contains("coherence ≥ 70"))
        XCTAssertTrue(md.contains("## Findings across conditions"), md)
        let html = try String(contentsOfFile: paths.html, encoding: .utf8)
        XCTAssertTrue(html.contains("<svg"))
        XCTAssertTrue(html.contains("answer &lt;m/refusal/probe_preclean_la2/L5/abs20&gt;"))
        XCTAssertFalse(html.contains("http://") && html.contains("<script src"), "report must be self-contained")
        XCTAssertFalse(html.contains("<link"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/report.json"))) as! [String: Any]
        XCTAssertEqual(json["schema"] as? String, "tiller.report/1")
        let cond = (json["conditions"] as! [[String: Any]])[0]
        let ev = (cond["evaluators"] as! [[String: Any]])[0]
        XCTAssertEqual(ev["evaluator"] as? String, "judge")
        let best = ev["best"] as! [[String: Any]]
        let la2 = try XCTUnwrap(best.first { $0["variant"] as? String == "probe_preclean_la2" && $0["gate"] as? String == "coherence ≥ 68" })
        XCTAssertEqual(la2["split"] as? String, "heldout")
        XCTAssertEqual(la2["layer"] as? Int, 5)
        XCTAssertEqual(la2["coef_relative"] as? Double, 1)
        XCTAssertNotNil(la2["ci_low"] as? Double)
        XCTAssertNotNil(json["findings"] as? [[String: Any]])
        XCTAssertTrue(cond["judge_validation"] is NSNull)

        // A judge that passed validation lifts the label.
        for check in ["trait_auc", "coherence_auc"] {
            try store.record(validation: InstrumentValidation(instrument: "judge", check: check, value: 0.9, n: 16, threshold: 0.75, detail: "synthetic"),
                             model: "m", trait: "refusal")
        }
        let validated = try ExperimentReport(store: store)
        XCTAssertFalse(validated.judgeFailedButUsed)
        XCTAssertTrue(try validated.markdown().contains("(validated)"))
        try store.record(validation: InstrumentValidation(instrument: "judge", check: "trait_auc", value: 0.5, n: 16, threshold: 0.75, detail: "synthetic"),
                         model: "m", trait: "refusal")
        let failed = try ExperimentReport(store: store)
        XCTAssertTrue(failed.judgeFailedButUsed)
        XCTAssertTrue(try failed.markdown().contains("JUDGE FAILED VALIDATION"))
    }

    /// The judge's scoring mode, as its cache in the results database records it, is named in
    /// the Instruments section and report.json; a 0–9 fallback says why.
    func testReportNamesTheJudgesScoringMode() throws {
        judge = "openai:stub"
        let store = try ResultsStore(path: dir + "/r.sqlite")
        try fill(store)
        try JudgeCache(writer: store.db).storeScoring(.digitScale, backend: "openai", model: "stub")
        for check in ["trait_auc", "coherence_auc"] {
            try store.record(validation: InstrumentValidation(instrument: "judge", check: check, value: 0.9, n: 16, threshold: 0.75, detail: "synthetic"),
                             model: "m", trait: "refusal")
        }
        let report = try ExperimentReport(store: store)
        let md = report.instrumentsMarkdown()
        XCTAssertTrue(md.contains("Judge openai:stub scores by **0–9 scale**: its server cannot continue an assistant message"), md)
        XCTAssertTrue(md.contains("| judge (0–9 scale) | trait_auc |"), md)
        let json = try JSONSerialization.jsonObject(with: report.reportJSON()) as! [String: Any]
        let j = json["judge"] as! [String: Any]
        XCTAssertEqual(j["spec"] as? String, "openai:stub")
        XCTAssertEqual(j["scoring_mode"] as? String, "0–9 scale")
        // A local judge is teacher-forced.
        judge = "local:m"
        let local = try ResultsStore(path: dir + "/local.sqlite")
        try fill(local)
        XCTAssertTrue(try ExperimentReport(store: local).instrumentsMarkdown().contains("**teacher-forced 0–100**"))
    }

    /// Findings on score tables whose answer is known.
    func testFindingsVerdicts() throws {
        // A clear win at one gate that turns into a clear loss at the other: supported, then
        // contradicted, and flagged threshold-sensitive.
        let store = try ResultsStore(path: dir + "/r.sqlite")
        try fill(store, bonus: { v, q, coef in
            switch v {
            case "probe": return 0
            case "probe_preclean_la2": return coef == 20 ? 8 : 1       // better at the lenient gate, worse at the strict one
            case "probe_postclean_la2": return coef == 20 ? 3 : 6
            default: return 0
            }
        })
        let report = try ExperimentReport(store: store)
        let fs = report.findings
        func f(_ claim: String, _ gate: String) throws -> Finding { try XCTUnwrap(fs.first { $0.claim == claim && $0.threshold == gate }) }
        // Gate 68 (coefficient 20 allowed): preclean's best (la2, +8) beats postclean (+3) on every question.
        let pre68 = try f(Findings.builtIn[0], "coherence ≥ 68")
        XCTAssertEqual(pre68.verdict, .supported)
        XCTAssertEqual(pre68.delta ?? 0, 5, accuracy: 1e-9)
        // Gate 70 (coefficient 10 only): la2 +1 vs postclean +6: contradicted; the claim flips.
        let pre70 = try f(Findings.builtIn[0], "coherence ≥ 70")
        XCTAssertEqual(pre70.verdict, .contradicted)
        XCTAssertTrue(pre68.thresholdSensitive && pre70.thresholdSensitive)
        let probeVsMD = try f(Findings.builtIn[3], "coherence ≥ 68")
        XCTAssertEqual(probeVsMD.verdict, .notTested, "no mean_diff variants in this experiment")
        XCTAssertNotNil(probeVsMD.note)
    }

    func testNoiseIsInconclusive() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        // u1 against la2: la2 = u1 + noise of mean 0 (±5 alternating by question).
        try fill(store, bonus: { v, q, _ in
            switch v {
            case "probe_preclean_la2": return 5 + (q % 2 == 0 ? 5 : -5)
            case "probe_preclean_u1": return 5
            default: return 0
            }
        })
        let fs = try ExperimentReport(store: store).findings
        let la = try XCTUnwrap(fs.first { $0.claim == Findings.builtIn[1] && $0.threshold == "coherence ≥ 68" })
        XCTAssertEqual(la.verdict, .inconclusive, "\(la)")
        XCTAssertLessThan(la.ciLow!, 0)
        XCTAssertGreaterThan(la.ciHigh!, 0)
    }

    func testInsertsAreIdempotent() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        try fill(store)
        let n = (try store.count("generations"), try store.count("scores"))
        try fill(store)
        XCTAssertEqual(try store.count("generations"), n.0)
        XCTAssertEqual(try store.count("scores"), n.1)
        XCTAssertEqual(n.0, (1 + 4 * 2 * 2) * Self.questions)
    }

    func testMergedShardsEqualTheWhole() throws {
        let whole = try ResultsStore(path: dir + "/whole.sqlite")
        try fill(whole)
        let a = try ResultsStore(path: dir + "/a.sqlite"), b = try ResultsStore(path: dir + "/b.sqlite")
        try fill(a, only: { $0.question < 4 })
        try fill(b, only: { $0.question >= 4 })
        let merged = try ResultsStore(path: dir + "/merged.sqlite")
        _ = try merged.merge(from: a.path)
        _ = try merged.merge(from: b.path)
        _ = try merged.merge(from: b.path) // idempotent
        XCTAssertEqual(try merged.generations(), try whole.generations())
        XCTAssertEqual(try merged.scores(), try whole.scores())
        XCTAssertEqual(try ExperimentReport(store: merged).markdown().components(separatedBy: "- Stored:").last,
                       try ExperimentReport(store: whole).markdown().components(separatedBy: "- Stored:").last)
    }

    func testMergeRefusesConflictingAnswers() throws {
        let a = try ResultsStore(path: dir + "/a.sqlite"), b = try ResultsStore(path: dir + "/b.sqlite")
        try fill(a)
        try fill(b)
        try b.db.write { try $0.execute(sql: "UPDATE generations SET response = 'other' WHERE question = 5") }
        let merged = try ResultsStore(path: dir + "/m.sqlite")
        _ = try merged.merge(from: a.path)
        XCTAssertThrowsError(try merged.merge(from: b.path)) { XCTAssertTrue("\($0)".contains("answers differ"), "\($0)") }
    }

    func testRefusesNewerSchemaAndForeignDatabases() throws {
        let p = dir + "/r.sqlite"
        do { _ = try ResultsStore(path: p) }
        let q = try DatabaseQueue(path: p)
        try q.write { try $0.execute(sql: "UPDATE meta SET value = '99' WHERE key = 'schema_version'") }
        try q.close()
        XCTAssertThrowsError(try ResultsStore(path: p)) { XCTAssertTrue("\($0)".contains("newer Tiller"), "\($0)") }

        let f = dir + "/foreign.sqlite"
        let fq = try DatabaseQueue(path: f)
        try fq.write { try $0.execute(sql: "CREATE TABLE users (id INTEGER)") }
        try fq.close()
        XCTAssertThrowsError(try ResultsStore(path: f)) { XCTAssertTrue("\($0)".contains("not a Tiller results database"), "\($0)") }

        let t = dir + "/text.sqlite"
        try "hello, not a database at all".write(toFile: t, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ResultsStore(path: t)) { XCTAssertTrue("\($0)".contains(t), "\($0)") }
        XCTAssertThrowsError(try ResultsStore(path: dir + "/missing.sqlite", create: false)) { XCTAssertTrue("\($0)".contains("tiller run"), "\($0)") }
    }

    func testResumeWithOtherSettingsIsRefused() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        var s = try spec()
        try store.register(s)
        s.coefficients.values.append(40) // growing the grid is fine
        try store.register(s)
        s.maxNewTokens = 7
        XCTAssertThrowsError(try store.register(s)) { XCTAssertTrue("\($0)".contains("max_new_tokens: 64 → 7"), "\($0)") }
    }
}
