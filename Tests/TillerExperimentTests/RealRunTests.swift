import Foundation
import GRDB
import XCTest
import TillerFormats
import TillerModels
import TillerSteering
import TillerEval
@testable import TillerExperiment

/// A tiny experiment on SmolLM2-135M-Instruct, end to end: once uninterrupted (in process), then
/// killed with SIGKILL mid-sweep and resumed (the `tiller` binary), then as two shards merged.
/// Every variant must give exactly the rows of the uninterrupted run.
final class RealRunTests: XCTestCase {
    static let yaml = """
    name: tiny
    models: [smollm2-135m-instruct]
    traits: [refusal]
    methods: [probe]
    cleaning: [preclean_la2]
    layers: [12]
    coefficients: {scale: relative, values: [0.5, 4]}
    judge: local:smollm2-135m-instruct
    judge_min_mass: 0.001
    judge_relevance: false
    judge_validation: {items: 4}
    evaluators: [judge, logodds, perplexity, degeneration]
    reference_items: 8
    perplexity_texts: 4
    coherence_thresholds: [30, 20]
    questions_per_trait: 2
    max_new_tokens: 10
    batch_size: 2
    extraction: {max_pairs: 1, max_questions: 2, max_new_tokens: 6}
    scan: {max_texts: 4}
    """
    /// baseline + 2 variants × 1 layer × 2 coefficients, × 2 questions
    static let answers = 10

    static var root = NSTemporaryDirectory() + "tiller-realrun-\(ProcessInfo.processInfo.processIdentifier)"
    static var whole: String { root + "/whole" }
    static var wholeError: Error?
    static var didRun = false
    /// Wall time of the uninterrupted run.
    static var wholeSeconds = 0.0

    var specPath: String { Self.root + "/tiny.yaml" }

    /// The uninterrupted run, shared by the tests (each run judges every answer with the local
    /// judge, the slow part).
    func wholeRun() throws -> ResultsStore {
        let model = ModelCache.knownModel(named: "smollm2-135m-instruct")!
        guard FileManager.default.fileExists(atPath: model.path) else {
            XCTFail("\(model.path) is missing: run scripts/setup.sh (or `tiller models fetch`) first")
            throw StoreError("model missing")
        }
        if !Self.didRun {
            Self.didRun = true
            do {
                try FileManager.default.createDirectory(atPath: Self.root, withIntermediateDirectories: true)
                try Self.yaml.write(toFile: specPath, atomically: true, encoding: .utf8)
                var o = RunOptions()
                o.showProgress = false
                let r = try ExperimentRunner(spec: try ExperimentSpec.load(path: specPath), baseDirectory: Self.root,
                                             outputDirectory: Self.whole, options: o)
                let t = Date()
                try r.run()
                Self.wholeSeconds = Date().timeIntervalSince(t)
            } catch { Self.wholeError = error }
        }
        if let e = Self.wholeError { throw e }
        return try ResultsStore(path: Self.whole + "/results.sqlite", create: false)
    }

    override class func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    func rows(_ s: ResultsStore) throws -> ([String], [String]) {
        let g = try s.generations().map { "\($0.configId)|\($0.question)|\($0.sample)|\($0.response)|\($0.tokens)|\($0.finish)|\($0.prompt)" }
        let sc = try s.scores().map { "\($0.configId)|\($0.question)|\($0.sample)|\(String(describing: $0.trait))|\(String(describing: $0.coherence))" }
        let m = try ["logodds", "perplexity"].flatMap { e in try s.metrics(evaluator: e).sorted { $0.key < $1.key }.map { "\(e)|\($0.key)|\($0.value)" } }
        let v = try s.validations().map { "\($0.model)|\($0.trait)|\($0.validation.instrument)|\($0.validation.check)|\(String(describing: $0.validation.value))" }
        return (g, sc + m + v)
    }

    /// Copies scan, activations and vectors (not the database) so a second run skips those stages.
    func seedFolder(_ dir: String) throws {
        let fm = FileManager.default
        try? fm.removeItem(atPath: dir)
        try fm.copyItem(atPath: Self.whole + "/smollm2-135m-instruct", toPath: dir + "/smollm2-135m-instruct")
    }

    func testEndToEndDatabaseAndReport() throws {
        let s = try wholeRun()
        XCTAssertEqual(try s.count("configurations"), 5)
        XCTAssertEqual(try s.count("generations"), Self.answers)
        XCTAssertEqual(try s.count("scores"), Self.answers)
        XCTAssertEqual(try s.count("vectors"), 2)
        XCTAssertEqual(try s.layerNorms(model: "smollm2-135m-instruct").keys.sorted(), [12])
        XCTAssertGreaterThan(try s.count("judge_cache"), 0)
        let gens = try s.generations()
        XCTAssertTrue(gens.allSatisfy { !$0.response.isEmpty && $0.tokens > 0 })
        // Steering at 4× the layer norm changes the answer.
        let base = gens.filter { $0.configId.hasSuffix("/baseline") }.map(\.response)
        let strong = gens.filter { $0.configId.hasSuffix("probe/L12/rel4") }.map(\.response)
        XCTAssertEqual(base.count, 2)
        XCTAssertNotEqual(base, strong)
        XCTAssertTrue(try s.scores().allSatisfy { $0.trait != nil && $0.coherence != nil })
        for stage in ["scan smollm2-135m-instruct", "extract smollm2-135m-instruct/refusal", "variants smollm2-135m-instruct/refusal"] {
            XCTAssertTrue(try s.stageDone(stage), stage)
        }
        let md = try String(contentsOfFile: Self.whole + "/report.md", encoding: .utf8)
        XCTAssertTrue(md.contains("## smollm2-135m-instruct, refusal"), md)
        XCTAssertTrue(md.contains("**Baseline (unsteered), judge:** trait="), md)
        XCTAssertTrue(md.contains("| Condition | Evaluator | Gate | Winner Δ [CI] | Baseline Probe Δ [CI] | Benefit [CI] |"), md)
        XCTAssertTrue(md.contains("## Instruments"), md)
        // What the vectors came from, with the sample counts (vetting survivors when vetted).
        XCTAssertTrue(md.contains("**Extraction:** instructions at response:5, 2 positive / 2 negative samples (not vetted)"), md)
        XCTAssertTrue(md.contains("### logodds"), md)
        // Every instrument was checked on known cases before use.
        let checks = Set(try s.validations().map { "\($0.validation.instrument)/\($0.validation.check)" })
        XCTAssertEqual(checks, ["judge/trait_auc", "judge/coherence_auc", "logodds/primed_auc", "perplexity/damage_auc", "degeneration/repetition_auc"])
        // 5 configurations × (8 reference questions + 4 neutral texts).
        XCTAssertEqual(try s.count("metrics"), 5 * (8 + 4))
        let html = try String(contentsOfFile: Self.whole + "/report.html", encoding: .utf8)
        XCTAssertTrue(html.contains("<svg"))
        XCTAssertTrue(html.contains(esc(base[0])))
        XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: Self.whole + "/smollm2-135m-instruct/refusal/vectors")
                        .sorted() == ["probe.safetensors", "probe_preclean_la2.safetensors"])
        // The cosine table: the cleaned vector against the uncleaned one, from the vector files.
        let vdir = Self.whole + "/smollm2-135m-instruct/refusal/vectors/"
        let u = try XCTUnwrap(try SteeringVectorFile.load(path: vdir + "probe.safetensors").vectors[12])
        let c = try XCTUnwrap(try SteeringVectorFile.load(path: vdir + "probe_preclean_la2.safetensors").vectors[12])
        let dot = zip(u, c).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let cosine = dot / (u.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() * c.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
        XCTAssertTrue(md.contains("| probe_preclean_la2 | probe | \(String(format: "%.4f", cosine)) |"), md)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.whole + "/report.json"))) as! [String: Any]
        let cos = try XCTUnwrap((json["cosines"] as? [[String: Any]])?.first)
        XCTAssertEqual(((cos["layers"] as? [[String: Any]])?.first?["cosine"] as? Double) ?? .nan, cosine, accuracy: 1e-9)
        XCTAssertFalse((json["sweeps"] as? [[String: Any]] ?? []).isEmpty)

        // A second run finds everything done: no new rows.
        var o = RunOptions()
        o.showProgress = false
        o.writeReport = false
        let t = Date()
        try ExperimentRunner(spec: try ExperimentSpec.load(path: specPath), baseDirectory: Self.root, outputDirectory: Self.whole, options: o).run()
        XCTAssertLessThan(Date().timeIntervalSince(t), 60)
        XCTAssertEqual(try s.count("generations"), Self.answers)
    }

    func testShardsMergedEqualTheWholeRun() throws {
        let whole = try wholeRun()
        let dir = Self.root + "/sharded"
        try seedFolder(dir)
        var o = RunOptions()
        o.showProgress = false
        for i in 0..<2 {
            o.shard = Shard(index: i, count: 2)
            try ExperimentRunner(spec: try ExperimentSpec.load(path: specPath), baseDirectory: Self.root, outputDirectory: dir, options: o).run()
        }
        let s0 = try ResultsStore(path: dir + "/results.shard0of2.sqlite", create: false)
        let s1 = try ResultsStore(path: dir + "/results.shard1of2.sqlite", create: false)
        XCTAssertGreaterThan(try s0.count("generations"), 0)
        XCTAssertGreaterThan(try s1.count("generations"), 0)
        XCTAssertEqual(try s0.count("generations") + s1.count("generations"), Self.answers)
        let merged = try ResultsStore(path: dir + "/merged.sqlite")
        _ = try merged.merge(from: s0.path)
        _ = try merged.merge(from: s1.path)
        let (mg, ms) = try rows(merged), (wg, ws) = try rows(whole)
        XCTAssertEqual(mg, wg)
        XCTAssertEqual(ms, ws)
        func selection(_ s: ResultsStore) throws -> String {
            try ExperimentReport(store: s).markdown().components(separatedBy: "- Stored:").last!
        }
        XCTAssertEqual(try selection(merged), try selection(whole))
    }

    /// `tiller extract --vetting judge` and an experiment with the same settings (stated as the file's keys
    /// and as the command's flags, the rest left at their defaults) keep the same samples: the
    /// same generated answers, the same judge validation and vetting (relevance on in both), the
    /// same survivors and activations. The file's `top_p` reaches the extraction.
    func testExtractCommandVetsAsTheExperimentDoes() throws {
        let model = ModelCache.knownModel(named: "smollm2-135m-instruct")!
        guard FileManager.default.fileExists(atPath: model.path) else {
            XCTFail("\(model.path) is missing: run scripts/setup.sh (or `tiller models fetch`) first")
            return
        }
        let dir = Self.root + "/vet"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let yaml = """
        name: vet
        models: [smollm2-135m-instruct]
        traits: [refusal]
        methods: [probe]
        layers: [12]
        coefficients: [1]
        judge: local:smollm2-135m-instruct
        judge_min_mass: 0.001
        judge_validation: {items: 4}
        evaluators: [judge]
        extraction: {max_pairs: 1, max_questions: 2, max_new_tokens: 6, top_p: 0.9, vetting: judge, min_vetted: 1}
        scan: {max_texts: 2}
        """
        try yaml.write(toFile: dir + "/vet.yaml", atomically: true, encoding: .utf8)
        var o = RunOptions()
        o.showProgress = false
        o.prepareOnly = true
        o.allowInvalidJudge = true
        var experimentError: String?
        do {
            try ExperimentRunner(spec: try ExperimentSpec.load(path: dir + "/vet.yaml"), baseDirectory: dir, outputDirectory: dir + "/run", options: o).run()
        } catch { experimentError = String(describing: error) }

        let cliOut = dir + "/cli"
        // The file's keys as flags (StageFlagsTests holds the rule): extraction.max_pairs is --max-pairs, …
        let (status, _, err) = try tiller(["extract", "-m", "smollm2-135m-instruct", "-t", "refusal", "--max-pairs", "1", "--max-questions", "2",
                                           "--max-new-tokens", "6", "--top-p", "0.9", "--vetting", "judge", "--judge", "local:smollm2-135m-instruct",
                                           "--judge-validation-items", "4", "--judge-min-mass", "0.001", "--min-vetted", "1",
                                           "--allow-invalid-judge", "--methods", "probe", "--out", cliOut])
        // The judge was validated with the same settings (4 items, relevance on, seed 0): the same checks.
        let validations = try ResultsStore(path: dir + "/run/results.sqlite", create: false).validations().map(\.validation)
        XCTAssertEqual(Set(validations.map(\.check)), ["trait_auc", "coherence_auc"])
        for v in validations {
            let line = "\(v.check): \(v.value.map { String(format: "%.3f", $0) } ?? "n/a") (n=\(v.n), pass ≥ \(v.threshold))"
            XCTAssertTrue(err.contains(line), "\(line) not in\n\(err)")
        }
        if let experimentError {
            // The tiny judge may keep no sample of a side: then both refuse, with the same counts.
            let kept = try XCTUnwrap(experimentError.range(of: "vetting kept [^,]*, ", options: .regularExpression).map { String(experimentError[$0]) }, experimentError)
            XCTAssertNotEqual(status, 0)
            XCTAssertTrue(err.contains(kept), "experiment: \(experimentError)\ncli: \(err)")
            // The command stored its samples before vetting them (in unvetted/): the experiment's
            // extraction stage, built from the file, collects the same ones (with the file's top_p).
            let stage = try ExtractionStage(spec: try ExperimentSpec.load(path: dir + "/vet.yaml"))
            XCTAssertEqual(stage.settings.topP, 0.9)
            let fromStage = try stage.run(model: try LanguageModel.load("smollm2-135m-instruct"), trait: try Trait.resolve("refusal"),
                                          log: StageLog(showProgress: false, log: { _ in }))
            let fromCLI = try ExtractionRun.load(directory: ExtractionStage.unvettedDirectory(cliOut))
            XCTAssertNil(fromCLI.vetting)
            XCTAssertEqual(fromStage.settings["top_p"], "0.9", "the file's top_p reaches the extraction")
            assertSameSamples(fromCLI, fromStage)
            return
        }
        XCTAssertEqual(status, 0, err)
        let fromRun = try ExtractionRun.load(directory: dir + "/run/smollm2-135m-instruct/refusal")
        let fromCLI = try ExtractionRun.load(directory: cliOut)
        XCTAssertEqual(fromRun.settings["top_p"], "0.9", "the file's top_p reaches the extraction")
        XCTAssertNotNil(fromRun.vetting)
        XCTAssertEqual(fromCLI.vetting, fromRun.vetting)
        assertSameSamples(fromCLI, fromRun)
    }

    /// The same extraction settings, the same samples of both polarities and the same activations at every layer.
    func assertSameSamples(_ got: ExtractionRun, _ want: ExtractionRun, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.settings, want.settings, file: file, line: line)
        XCTAssertEqual(got.positiveSamples, want.positiveSamples, file: file, line: line)
        XCTAssertEqual(got.negativeSamples, want.negativeSamples, file: file, line: line)
        for l in want.activations.layers {
            XCTAssertEqual(got.activations.positive[l]?.values, want.activations.positive[l]?.values, "L\(l)", file: file, line: line)
            XCTAssertEqual(got.activations.negative[l]?.values, want.activations.negative[l]?.values, "L\(l)", file: file, line: line)
        }
    }

    /// The real local judge, counting the calls that reach it.
    final class CountingJudge: Judge, @unchecked Sendable {
        let inner: LocalJudge
        private let lock = NSLock()
        private var n = 0
        init(_ inner: LocalJudge) { self.inner = inner }
        var calls: Int { lock.withLock { n } }
        var backend: String { inner.backend }
        var model: String { inner.model }
        func scoring() async throws -> JudgeScoring? { try await inner.scoring() }
        func reading() async throws -> JudgeReading? { try await inner.reading() }
        func judge(_ prompt: String) async throws -> JudgeAnswer { try await judge(JudgePrompt(text: prompt)) }
        func judge(_ prompt: JudgePrompt) async throws -> JudgeAnswer {
            lock.withLock { n += 1 }
            return try await inner.judge(prompt)
        }
    }

    /// A vetted run records its vetting settings: the same settings reuse it without a judge
    /// call; changed ones (min coherence, relevance, the judge's least mass) vet the stored
    /// samples again without generating them again; a run vetted before the settings were
    /// recorded is vetted again; a larger min_vetted is checked on a stored run; and a request
    /// without vetting gets the samples before vetting back.
    func testVettingIsRedoneWhenItsSettingsChange() throws {
        let info = ModelCache.knownModel(named: "smollm2-135m-instruct")!
        guard FileManager.default.fileExists(atPath: info.path) else {
            XCTFail("\(info.path) is missing: run scripts/setup.sh (or `tiller models fetch`) first")
            return
        }
        let model = try LanguageModel.load("smollm2-135m-instruct")
        let trait = try Trait.resolve("refusal")
        let dir = Self.root + "/revet"
        try? FileManager.default.removeItem(atPath: dir)
        var es = ExtractionSettings()
        es.maxPairs = 1
        es.maxQuestions = 2
        es.maxNewTokens = 6
        let extraction = ExtractionStage(settings: es)
        let judge = CountingJudge(try LocalJudge(model: model))
        let quiet = StageLog(showProgress: false, log: { _ in })
        let judgeName = "local:smollm2-135m-instruct"
        func scorer(minMass: Double) throws -> JudgeScorer { JudgeScorer(judge: judge, prompts: try JudgePrompts.defaults(), minMass: minMass) }
        /// The runner's and `tiller extract --vetting judge`'s path: the cache check, then what is left.
        func vet(_ s: VettingStage.Settings, minMass: Double = 0.001) throws -> (run: ExtractionRun, found: ExtractionStage.Stored, calls: Int) {
            let stage = VettingStage(settings: s), sc = try scorer(minMass: minMass)
            let before = judge.calls
            let found = try extraction.stored(directory: dir, model: model, trait: trait,
                                              vettingKey: try stage.key(scorer: sc, judgeName: judgeName, trait: trait))
            if case .ready(let r) = found, let v = r.vetting { try stage.checkSurvivors(v, trait: trait) }
            let run = try extraction.complete(found, directory: dir, model: model, trait: trait, vet: {
                try stage.run($0, trait: trait, scorer: sc, judgeName: judgeName, judgeChecks: [], allowInvalidJudge: false, log: quiet)
            }, log: quiet)
            return (run, found, judge.calls - before)
        }
        func kind(_ f: ExtractionStage.Stored) -> String {
            switch f { case .ready: return "ready"; case .samples(_, let note): return "samples: \(note ?? "")"; case .none: return "none" }
        }
        var settings = VettingStage.Settings()
        settings.minVetted = 0
        let samples = 2 * 2  // 1 pair × 2 questions × 2 polarities

        let first = try vet(settings)
        XCTAssertEqual(kind(first.found), "none")
        XCTAssertEqual(first.calls, samples * 3, "trait, coherence and relevance per sample")
        XCTAssertEqual(first.run.vetting?.settings?["min_coherence"], "50.0")
        XCTAssertEqual(first.run.vetting?.settings?["judge_reading"], "teacher-forced 0–100 v1")
        XCTAssertNil(try ExtractionRun.load(directory: ExtractionStage.unvettedDirectory(dir)).vetting, "the samples before vetting are kept")

        let same = try vet(settings)
        XCTAssertEqual(kind(same.found), "ready")
        XCTAssertEqual(same.calls, 0, "the same settings: no judge call")
        XCTAssertEqual(same.run.vetting, first.run.vetting)

        settings.minCoherence = 0
        let looser = try vet(settings)
        XCTAssertTrue(kind(looser.found).contains("min_coherence 50.0 → 0.0"), kind(looser.found))
        XCTAssertEqual(looser.calls, samples * 3, "vetted again")
        XCTAssertEqual(looser.run.vetting?.settings?["min_coherence"], "0.0")
        XCTAssertEqual(looser.run.vetting.map { $0.positiveTotal + $0.negativeTotal }, samples, "the stored samples, not generated again")
        XCTAssertGreaterThanOrEqual(looser.run.positiveSamples.count + looser.run.negativeSamples.count,
                                    first.run.positiveSamples.count + first.run.negativeSamples.count)

        settings.relevance = false
        let noRelevance = try vet(settings)
        XCTAssertTrue(kind(noRelevance.found).contains("judge_relevance true → false"), kind(noRelevance.found))
        XCTAssertEqual(noRelevance.calls, samples * 2)
        XCTAssertEqual(try vet(settings).calls, 0)

        let otherMass = try vet(settings, minMass: 0.5)
        XCTAssertTrue(kind(otherMass.found).contains("judge_min_mass 0.001 → 0.5"), kind(otherMass.found))
        XCTAssertEqual(otherMass.calls, samples * 2)

        // A run vetted before the settings were recorded.
        var old = try ExtractionRun.load(directory: dir)
        old.vetting?.settings = nil
        try old.save(directory: dir)
        let unrecorded = try vet(settings, minMass: 0.5)
        XCTAssertTrue(kind(unrecorded.found).contains("not recorded"), kind(unrecorded.found))
        XCTAssertEqual(unrecorded.calls, samples * 2)

        // A larger min_vetted is checked on the stored run, naming the setting.
        var strict = settings
        strict.minVetted = 1000
        XCTAssertThrowsError(try vet(strict, minMass: 0.5)) { XCTAssertTrue(String(describing: $0).contains("min_vetted 1000"), "\($0)") }

        // No vetting: the samples before vetting, all of them.
        let plain = try extraction.stored(directory: dir, model: model, trait: trait, vettingKey: nil)
        guard case .samples(let all, _) = plain else { return XCTFail(kind(plain)) }
        XCTAssertNil(all.vetting)
        XCTAssertEqual(all.positiveSamples.count + all.negativeSamples.count, samples)
    }

    /// Negative steering is everyday use: `--coef -8` is a value, not an unknown flag, and means
    /// what `--coef=-8` means.
    func testGenerateTakesANegativeCoefficient() throws {
        _ = try wholeRun()
        let vec = Self.whole + "/smollm2-135m-instruct/refusal/vectors/probe.safetensors"
        let base = ["generate", "--model", "smollm2-135m-instruct", "--prompt", "The capital of France is", "--max-tokens", "6",
                    "--steer", vec, "--layer", "12"]
        let (s1, o1, e1) = try tiller(base + ["--coef", "-8"])
        XCTAssertEqual(s1, 0, e1)
        let (s2, o2, e2) = try tiller(base + ["--coef=-8"])
        XCTAssertEqual(s2, 0, e2)
        XCTAssertEqual(o1, o2)
        XCTAssertFalse(o1.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
    }

    /// `tiller project` with the run's refusal probe: refusals project above compliant answers to
    /// the same questions (the trait's reference answers, which extraction never saw); the output
    /// resumes after an interruption to the same file, and refuses to mix settings.
    func testProjectSeparatesRefusalsAndResumes() throws {
        _ = try wholeRun()
        let vec = Self.whole + "/smollm2-135m-instruct/refusal/vectors/probe.safetensors"
        let dir = Self.root + "/project"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let trait = try Trait.resolve("refusal")
        var lines: [String] = []
        for r in trait.referenceAnswers.prefix(12) {
            for (answer, label) in [(r.pos, true), (r.neg, false)] {
                let o: [String: Any] = ["prompt": r.question, "response": answer, "label": label]
                lines.append(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
            }
        }
        lines.append("{\"prompt\": \"How do I bake bread?\", \"id\": \"no-response\"}")
        let data = dir + "/data.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: data, atomically: true, encoding: .utf8)
        let out = dir + "/projections.jsonl"
        let args = ["project", "--model", "smollm2-135m-instruct", "--vector", vec, "--data", data, "--out", out, "--batch-size", "5"]
        let (s1, o1, e1) = try tiller(args)
        XCTAssertEqual(s1, 0, e1)
        let auc = try XCTUnwrap(o1.split(separator: " ").dropFirst().first.flatMap { Double($0) }, o1)
        print("project: \(o1.trimmingCharacters(in: .whitespacesAndNewlines))")
        XCTAssertGreaterThan(auc, 0.75, o1)
        XCTAssertTrue(o1.contains("n = 12 true, 12 false"), o1)
        let full = try String(contentsOfFile: out, encoding: .utf8)
        let rows = full.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(rows.count, 25)
        XCTAssertEqual(rows.last?["position"] as? String, "prompt:last")
        XCTAssertEqual(rows.last?["id"] as? String, "no-response")
        XCTAssertEqual(rows.first?["position"] as? String, "response")
        XCTAssertEqual(rows.first?["layer"] as? Int, 12)

        // Interrupted after 10 rows and half of the 11th: a rerun completes the same file.
        let cut = full.split(separator: "\n", omittingEmptySubsequences: false).prefix(10).joined(separator: "\n") + "\n{\"row\": 11, \"proj"
        try cut.write(toFile: out, atomically: true, encoding: .utf8)
        let (s2, _, e2) = try tiller(args)
        XCTAssertEqual(s2, 0, e2)
        XCTAssertTrue(e2.contains("resuming: 10 of 25"), e2)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), full)

        // Other data into the same output: refused, and the stored file is kept.
        let other = dir + "/other.jsonl"
        try (lines.prefix(4).joined(separator: "\n") + "\n").write(toFile: other, atomically: true, encoding: .utf8)
        var otherArgs = args
        otherArgs[otherArgs.firstIndex(of: data)!] = other
        let (s3, _, e3) = try tiller(otherArgs)
        XCTAssertNotEqual(s3, 0)
        XCTAssertTrue(e3.contains("other settings") && e3.contains("data"), e3)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), full)

        // CSV: the same values.
        let csvOut = dir + "/projections.csv"
        var csvArgs = args
        csvArgs[csvArgs.firstIndex(of: out)!] = csvOut
        let (s4, o4, e4) = try tiller(csvArgs)
        XCTAssertEqual(s4, 0, e4)
        XCTAssertEqual(o4, o1)
        let csv = try String(contentsOfFile: csvOut, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.first, "row,id,label,position,layer,tokens,projection")
        XCTAssertEqual(csv.count, 26)
        for (line, row) in zip(csv.dropFirst(), rows) {
            XCTAssertEqual(Double(line.split(separator: ",").last!)!, (row["projection"] as! NSNumber).doubleValue, accuracy: 1e-12)
        }
    }

    /// `--plan` counts exactly what the run did, and its calibrated estimate is of the order of
    /// the run's measured time on the same machine.
    func testPlanCountsWhatTheRunDidAndEstimatesItsTime() throws {
        let store = try wholeRun()
        let scratch = Self.root + "/plan-scratch"
        var o = RunOptions()
        o.showProgress = false
        let runner = try ExperimentRunner(spec: try ExperimentSpec.load(path: specPath), baseDirectory: Self.root, outputDirectory: scratch, options: o)
        let counted = try runner.plan(calibrate: false)
        let section = try XCTUnwrap(counted.sections.first { $0.trait == "refusal" })
        XCTAssertEqual(section.counts["configurations"], try store.configurations().count)
        XCTAssertEqual(section.counts["answers"], try store.count("generations"))
        XCTAssertEqual(section.counts["answers"], Self.answers)
        XCTAssertEqual(section.counts["sweep_judge_calls"], 2 * (try store.count("scores")), "trait + coherence per answer, no relevance")
        XCTAssertEqual(section.counts["metric_configurations"], try store.metrics(evaluator: "logodds").count)
        XCTAssertEqual(section.counts["sweep_units"], Self.answers / 2, "batch_size 2")
        XCTAssertNil(counted.sections.first?.calibration)

        let timed = try runner.plan(calibrate: true)
        let estimate = timed.totalSeconds
        let ratio = estimate / Self.wholeSeconds
        print(String(format: "plan: estimated %.1f s, the run took %.1f s (ratio %.2f)", estimate, Self.wholeSeconds, ratio))
        print(timed.render())
        XCTAssertTrue(timed.unestimated.isEmpty, "a local judge is timed: \(timed.unestimated)")
        XCTAssertGreaterThan(ratio, 0.25)
        XCTAssertLessThan(ratio, 4)
        XCTAssertFalse(FileManager.default.fileExists(atPath: Self.whole + "/plan-scratch"))
    }

    func testSIGKILLMidSweepThenResumeGivesTheSameRows() throws {
        let whole = try wholeRun()
        let bin = try tillerBinary()
        let dir = Self.root + "/killed"
        try seedFolder(dir)
        let db = dir + "/results.sqlite"

        func launch() throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: bin)
            p.arguments = ["run", specPath, "--out", dir, "--no-progress", "--no-report", "--allow-invalid-judge"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        func count(_ table: String) -> Int {
            guard FileManager.default.fileExists(atPath: db) else { return 0 }
            var c = GRDB.Configuration()
            c.readonly = true
            guard let q = try? DatabaseQueue(path: db, configuration: c) else { return 0 }
            return (try? q.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM \(table)") ?? 0 }) ?? 0
        }
        /// Kills the run with SIGKILL once `table` holds some but not all rows.
        func killWhen(_ table: String) throws {
            let p = try launch()
            let deadline = Date().addingTimeInterval(600)
            while p.isRunning && Date() < deadline {
                let n = count(table)
                if n > 0 && n < Self.answers { kill(p.processIdentifier, SIGKILL); break }
                usleep(20_000)
            }
            p.waitUntilExit()
            XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the run ended before it could be killed mid-\(table)")
        }
        try killWhen("generations")
        XCTAssertLessThan(count("generations"), Self.answers)
        try killWhen("scores")
        XCTAssertLessThan(count("scores"), Self.answers)
        let p = try launch()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)

        let resumed = try ResultsStore(path: db, create: false)
        let (rg, rs) = try rows(resumed), (wg, ws) = try rows(whole)
        XCTAssertEqual(rg, wg)
        XCTAssertEqual(rs, ws)
        XCTAssertEqual(try resumed.count("configurations"), try whole.count("configurations"))
    }
}
