import GRDB
import XCTest
@testable import TillerExperiment

/// Results store, selection and report on synthetic databases (no model needed).
final class StoreAndReportTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "tiller-exp-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func spec() throws -> ExperimentSpec {
        try ExperimentSpec.parse("""
        name: synth
        models: [m]
        traits: [refusal]
        methods: [probe]
        cleaning: [preclean_la2, postclean_la2, preclean_u1]
        layers: [3, 5]
        coefficients: [10, 20]
        judge: local:m
        coherence_thresholds: [68, 70]
        questions_per_trait: 2
        """, path: "synth.yaml")
    }

    /// Scores: trait = f(variant, layer, coef), coherence falls with the coefficient.
    func fill(_ store: ResultsStore, only keep: ((WorkItem) -> Bool)? = nil) throws {
        let s = try spec()
        try store.register(s)
        try store.setLayerNorm(model: "m", layer: 3, mean: 100, excludingMassive: 10, excluded: [7])
        try store.setLayerNorm(model: "m", layer: 5, mean: 200, excludingMassive: 20, excluded: [7])
        let configs = SweepPlanner.grid(model: "m", trait: "refusal", variants: try s.variantSpecs().map(\.name), layers: [3, 5],
                                        plan: s.coefficients, norm: { _ in 1 })
        try store.insert(configurations: configs)
        let bonus = ["probe": 0.0, "probe_preclean_la2": 8, "probe_postclean_la2": 3, "probe_preclean_u1": 5]
        for u in SweepPlanner.units(configs: configs, questions: 2, samples: 1, batchSize: 3) {
            let items = u.items.filter { keep?($0) ?? true }
            try store.insert(generations: items.map {
                GenerationRow(configId: $0.config.id, question: $0.question, sample: 0, prompt: "q\($0.question)",
                              response: "answer <\($0.config.id)>", tokens: 3, seconds: 0.1, finish: "stop")
            })
            try store.insert(scores: items.map { it in
                let c = it.config
                let trait = c.isBaseline ? 5 : 20 + bonus[c.variant]! + c.absoluteCoefficient + Double(c.layer) + Double(it.question)
                let coh = c.isBaseline ? 90 : (c.absoluteCoefficient == 10 ? 80 : 69) + Double(it.question)
                return ScoreRow(configId: c.id, question: it.question, sample: 0, trait: trait, coherence: coh, relevance: 90, offTopic: false, error: nil)
            })
        }
    }

    func testSelectionPicksBestCoherentConfiguration() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        try fill(store)
        let sel = try Selection(store: store, spec: try spec())
        XCTAssertEqual(sel.conditions.count, 1)
        let c = sel.conditions[0]
        XCTAssertEqual(c.baseline?.trait, 5)
        // At coherence ≥ 68 coefficient 20 (mean coherence 69.5) is allowed; at ≥ 70 only 10 is.
        let b68 = try XCTUnwrap(c.best("probe_preclean_la2", threshold: 68))
        XCTAssertEqual(b68.result.config.absoluteCoefficient, 20)
        XCTAssertEqual(b68.result.config.layer, 5)
        XCTAssertEqual(b68.delta, 20 + 8 + 20 + 5 + 0.5 - 5)
        XCTAssertEqual(b68.result.relativeCoefficient, 1) // 20 / norm 20
        let b70 = try XCTUnwrap(c.best("probe_preclean_la2", threshold: 70))
        XCTAssertEqual(b70.result.config.absoluteCoefficient, 10)
        XCTAssertEqual(c.best[68]?.first?.variant, "probe_preclean_la2")
        XCTAssertEqual(sel.summary[0].winnerDelta, b68.delta)
        XCTAssertEqual(sel.summary[0].probeDelta, b68.delta - 8)
        XCTAssertEqual(sel.summary[0].benefit!, 8, accuracy: 1e-9)
        let groups = Dictionary(uniqueKeysWithValues: sel.groupAverages(threshold: 68).map { ($0.name, $0.mean!) })
        XCTAssertEqual(groups["probe preclean"]! - groups["probe postclean"]!, (8 + 5) / 2 - 3, accuracy: 1e-9)
        XCTAssertEqual(groups["top-2 (la2, u2)"]! - groups["top-1 (la1, u1)"]!, (8 + 3) / 2 - 5, accuracy: 1e-9)
    }

    func testReportContainsTablesPlotsAndAnswers() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        try fill(store)
        let report = try ExperimentReport(store: store)
        let paths = try report.write(directory: dir)
        let md = try String(contentsOfFile: paths.markdown, encoding: .utf8)
        XCTAssertTrue(md.contains("**Baseline:** trait=5.0"), md)
        XCTAssertTrue(md.contains("| probe_preclean_la2 | 53.5 | +48.5 | 20 | 1 | L5 | 69.5 |"), md)
        XCTAssertTrue(md.contains("coherence ≥ 70"))
        XCTAssertTrue(md.contains("| m refusal | +48.5 | +40.5 | +8.0 |"), md)
        let html = try String(contentsOfFile: paths.html, encoding: .utf8)
        XCTAssertTrue(html.contains("<svg"))
        XCTAssertTrue(html.contains("answer &lt;m/refusal/probe_preclean_la2/L5/abs20&gt;"))
        XCTAssertFalse(html.contains("http://") && html.contains("<script src"), "report must be self-contained")
        XCTAssertFalse(html.contains("<link"))
    }

    func testInsertsAreIdempotent() throws {
        let store = try ResultsStore(path: dir + "/r.sqlite")
        try fill(store)
        let n = (try store.count("generations"), try store.count("scores"))
        try fill(store)
        XCTAssertEqual(try store.count("generations"), n.0)
        XCTAssertEqual(try store.count("scores"), n.1)
        XCTAssertEqual(n.0, (1 + 4 * 2 * 2) * 2)
    }

    func testMergedShardsEqualTheWhole() throws {
        let whole = try ResultsStore(path: dir + "/whole.sqlite")
        try fill(whole)
        let a = try ResultsStore(path: dir + "/a.sqlite"), b = try ResultsStore(path: dir + "/b.sqlite")
        try fill(a) { $0.question == 0 }
        try fill(b) { $0.question == 1 }
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
        try b.db.write { try $0.execute(sql: "UPDATE generations SET response = 'other' WHERE question = 1") }
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
