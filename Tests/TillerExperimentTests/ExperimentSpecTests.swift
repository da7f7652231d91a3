import XCTest
@testable import TillerExperiment
import TillerEval
import TillerSteering

final class ExperimentSpecTests: XCTestCase {
    let minimal = """
    name: t
    models: smollm2-135m-instruct
    traits: [refusal]
    methods: [probe, mean_diff]
    cleaning: [preclean_la2, postclean_u2]
    layers: "6-18:3"
    coefficients: {scale: relative, values: [0.5, 1, 2]}
    judge: local:smollm2-135m-instruct
    coherence_thresholds: [68, 70]
    """

    func testParsesYAMLAndDerivesVariants() throws {
        let s = try ExperimentSpec.parse(minimal, path: "x.yaml")
        XCTAssertEqual(s.models, ["smollm2-135m-instruct"])
        XCTAssertEqual(s.layers.layers, [6, 9, 12, 15, 18])
        XCTAssertEqual(s.coefficients.scale, .relative)
        XCTAssertEqual(s.coefficients.values, [0.5, 1, 2])
        XCTAssertEqual(try s.variantSpecs().map(\.name),
                       ["probe", "probe_preclean_la2", "probe_postclean_u2", "mean_diff", "mean_diff_preclean_la2", "mean_diff_postclean_u2"])
        XCTAssertEqual(s.coherenceThresholds, [68, 70])
        XCTAssertEqual(s.questionsPerTrait, 10)
    }

    func testJSONIsAccepted() throws {
        let json = """
        {"name": "j", "models": ["m"], "traits": ["refusal"], "variants": ["probe_preclean_la2"], "layers": [3, 4],
         "coefficients": [50, 100], "judge": "openai:gpt-4.1-mini", "coherence_thresholds": 70}
        """
        let s = try ExperimentSpec.parse(json, path: "x.json")
        XCTAssertEqual(s.coefficients.scale, .absolute)
        XCTAssertEqual(s.coefficients.values, [50, 100])
        XCTAssertEqual(s.coherenceThresholds, [70])
        XCTAssertEqual(try s.variantSpecs().map(\.name), ["probe_preclean_la2"])
    }

    func testSearchAndLayerObject() throws {
        let y = minimal.replacingOccurrences(of: "coefficients: {scale: relative, values: [0.5, 1, 2]}",
                                             with: "coefficients: {scale: relative, search: {start: 0.25, factor: 2, max_steps: 5}}")
            .replacingOccurrences(of: "layers: \"6-18:3\"", with: "layers: {from: 2, to: 4}")
        let s = try ExperimentSpec.parse(y, path: "x.yaml")
        XCTAssertEqual(s.layers.layers, [2, 3, 4])
        XCTAssertEqual(s.coefficients.search, CoefficientSearch(start: 0.25, factor: 2, maxSteps: 5, refine: 2))
    }

    func assertError(_ yaml: String, contains: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ExperimentSpec.parse(yaml, path: "bad.yaml"), file: file, line: line) { e in
            let d = "\(e)"
            XCTAssertTrue(d.contains("bad.yaml"), "error does not name the file: \(d)", file: file, line: line)
            XCTAssertTrue(d.contains(contains), "expected \"\(contains)\" in: \(d)", file: file, line: line)
        }
    }

    func testClearErrors() {
        assertError(minimal + "\nlayer: 3", contains: "unknown key layer")
        assertError(minimal.replacingOccurrences(of: "judge: local:smollm2-135m-instruct\n", with: ""), contains: "evaluators: judge is listed but no judge is given")
        assertError(minimal.replacingOccurrences(of: "[probe, mean_diff]", with: "[probe, pca]"), contains: "unknown method \"pca\"")
        assertError(minimal.replacingOccurrences(of: "preclean_la2", with: "preclean_x2"), contains: "cleaning: \"preclean_x2\"")
        assertError(minimal.replacingOccurrences(of: "\"6-18:3\"", with: "\"18-6\""), contains: "range is empty")
        assertError(minimal.replacingOccurrences(of: "[0.5, 1, 2]", with: "[0.5, -1]"), contains: "not a positive number")
        assertError(minimal.replacingOccurrences(of: "local:smollm2", with: "remote:smollm2"), contains: "backend \"remote\"")
        assertError(minimal.replacingOccurrences(of: "[68, 70]", with: "[60, 62, 64, 66, 68, 70]"), contains: "one to five thresholds")
        assertError(minimal + "\nevaluators: [logodds, bleu]", contains: "evaluators: \"bleu\" is unknown")
        assertError(minimal + "\nevaluators: [perplexity]", contains: "measures the trait")
        assertError(minimal + "\nmax_perplexity_ratio: 0.9", contains: "must be a ratio above 1")
        assertError(minimal + "\nextraction: {vetting: maybe}", contains: "extraction.vetting")
        assertError(minimal + "\nextraction: {top_p: 0}", contains: "extraction.top_p")
        assertError(minimal + "\nclaims: [{name: x, a: [probe], b: [probe_wash]}]", contains: "not a variant name")
        assertError(minimal + "\nsamples_per_question: 3", contains: "temperature is 0")
        assertError(minimal.replacingOccurrences(of: "layers: \"6-18:3\"", with: "layers: [1, 1]"), contains: "duplicates")
        assertError(minimal + "\nsteer_positions: prompt", contains: "steer_positions \"prompt\" is unknown")
        assertError("name: [", contains: "not valid YAML")
        assertError(minimal.replacingOccurrences(of: "name: t", with: "name: a b"), contains: "name \"a b\"")
    }

    /// Every evaluator kind has one registered value; the file's evaluators are built in its
    /// order, a configured but unlisted judge is validated as an instrument, and check names are
    /// unique across evaluators.
    func testEvaluatorsAreBuiltFromTheFile() throws {
        XCTAssertEqual(Set(ExperimentEvaluators.registry.keys), Set(EvaluatorKind.allCases))
        for (k, make) in ExperimentEvaluators.registry { XCTAssertEqual(make(try ExperimentSpec.parse(minimal, path: "x.yaml")).kind, k) }
        let spec = try ExperimentSpec.parse(minimal + "\nevaluators: [perplexity, logodds, degeneration]", path: "x.yaml")
        let built = ExperimentEvaluators.build(spec)
        XCTAssertEqual(built.listed.map(\.kind), [.perplexity, .logodds, .degeneration])
        XCTAssertEqual(built.instruments.map(\.kind), [.perplexity, .logodds, .degeneration, .judge])
        XCTAssertEqual(built.listed.filter(\.isTeacherForced).map(\.kind), [.perplexity, .logodds])
        let checks = built.instruments.flatMap(\.checks)
        XCTAssertEqual(Set(checks).count, checks.count)
        XCTAssertEqual(checks.map(\.description), ["perplexity/damage_auc", "logodds/primed_auc", "degeneration/repetition_auc",
                                                   "judge/trait_auc", "judge/coherence_auc"])
        XCTAssertEqual(try ExperimentSpec.parse(minimal + "\nextraction: {top_p: 0.9}", path: "x.yaml").extraction.topP, 0.9)
    }

    /// Each stage's settings come from the file's keys; a file that states none gives the
    /// settings' own defaults, which are the defaults of the commands' flags (`tiller extract
    /// --vetting judge`, `tiller judge --validate`). `tiller extract --vet` used to validate without
    /// relevance and vet by coherence only while `tiller run` defaulted to relevance on.
    func testStageSettingsComeFromTheFileAndDefaultToTheCommands() throws {
        let plain = try ExperimentSpec.parse(minimal + "\nextraction: {vetting: judge}", path: "x.yaml")
        XCTAssertEqual(try ExtractionStage(spec: plain).settings, ExtractionSettings())
        XCTAssertEqual(VettingStage(spec: plain)?.settings, VettingStage.Settings())
        XCTAssertEqual(JudgeValidationStage(spec: plain)?.settings, JudgeValidationStage.Settings())
        XCTAssertEqual(JudgingStage(spec: plain).settings, JudgingStage.Settings())
        XCTAssertEqual(JudgeValidationStage.Settings().relevance, true)
        XCTAssertEqual(VettingStage.Settings().relevance, true)
        XCTAssertNil(VettingStage(spec: try ExperimentSpec.parse(minimal, path: "x.yaml")), "vetting: none has no vetting stage")

        let set = try ExperimentSpec.parse(minimal + """

        seed: 7
        positions: response
        judge_relevance: false
        judge_validation: {items: 6, min_auc: 0.8}
        extraction: {vetting: judge, min_vetted: 2, top_p: 0.9, temperature: 1, max_new_tokens: 9, batch_size: 3, max_pairs: 2, max_questions: 3, form: instructions}
        """, path: "x.yaml")
        var e = ExtractionSettings()
        e.form = .instructions
        e.positions = .responseMean
        e.maxNewTokens = 9
        e.temperature = 1
        e.topP = 0.9
        e.seed = 7
        e.batchSize = 3
        e.maxPairs = 2
        e.maxQuestions = 3
        XCTAssertEqual(try ExtractionStage(spec: set).settings, e)
        XCTAssertEqual(try ExtractionStage(spec: set).settings.key["top_p"], "0.9")
        var v = JudgeValidationStage.Settings()
        v.items = 6
        v.minAUC = 0.8
        v.relevance = false
        v.seed = 7
        XCTAssertEqual(JudgeValidationStage(spec: set)?.settings, v)
        var vet = VettingStage.Settings()
        vet.minVetted = 2
        vet.relevance = false
        XCTAssertEqual(VettingStage(spec: set)?.settings, vet)
        XCTAssertEqual(JudgingStage(spec: set).settings.relevance, false)
    }

    /// The judge-validation call count, written once: 2 trait scores and 5 coherence scores per
    /// item (a fluent answer and its degenerate versions), each coherence score a second call
    /// for relevance.
    func testJudgeValidationCallCount() {
        XCTAssertEqual(JudgeValidation.scoresPerItem, 3 + Degeneration.versions(of: "one two three four", seed: 1).count)
        XCTAssertEqual(JudgeValidation.scoresPerItem, 7)
        XCTAssertEqual(JudgeValidation.calls(items: 12, relevance: false), 12 * 7)
        XCTAssertEqual(JudgeValidation.calls(items: 12, relevance: true), 12 * 2 + 12 * 5 * 2)
    }

    /// `device:` is read as written (the CLI parses it with DeviceChoice and names the file in its error).
    func testDeviceIsReadFromTheFile() throws {
        XCTAssertNil(try ExperimentSpec.parse(minimal, path: "x.yaml").device)
        XCTAssertEqual(try ExperimentSpec.parse(minimal + "\ndevice: vulkan:1", path: "x.yaml").device, "vulkan:1")
    }

    func testShardParsing() throws {
        XCTAssertEqual(try Shard(parsing: "2/4"), Shard(index: 2, count: 4))
        XCTAssertThrowsError(try Shard(parsing: "4/4"))
        XCTAssertThrowsError(try Shard(parsing: "1"))
    }

    func testUnitsAreFixedAndShardsPartitionThem() {
        let configs = SweepPlanner.grid(model: "m", trait: "t", variants: ["probe", "mean_diff"], layers: [1, 2],
                                        plan: CoefficientPlan(scale: .relative, values: [0.5, 1]), norm: { Double($0) * 10 })
        XCTAssertEqual(configs.count, 1 + 2 * 2 * 2)
        XCTAssertEqual(configs[0].id, "m/t/baseline")
        XCTAssertEqual(configs[1].id, "m/t/probe/L1/rel0.5")
        XCTAssertEqual(configs[1].absoluteCoefficient, 5)
        let units = SweepPlanner.units(configs: configs, questions: 3, samples: 1, batchSize: 4)
        XCTAssertEqual(units.map(\.items.count).reduce(0, +), 27)
        XCTAssertEqual(units.count, 7)
        let shards = (0..<3).map { s in units.filter { Shard(index: s, count: 3).owns($0.index) } }
        XCTAssertEqual(Set(shards.flatMap { $0.flatMap { $0.items.map(\.key) } }).count, 27)
        XCTAssertEqual(shards.map(\.count).reduce(0, +), units.count)
    }

    func testSearchBracketsTheCliff() {
        // Coherence falls below 50 above coefficient 6.
        let s = CoefficientSearch(start: 1, factor: 2, maxSteps: 6, refine: 2)
        var history: [(coefficient: Double, coherence: Double?)] = []
        var asked: [Double] = []
        while let c = SweepPlanner.nextCoefficient(s, threshold: 50, history: history) {
            asked.append(c)
            history.append((c, c <= 6 ? 80 : 20))
            XCTAssertLessThan(asked.count, 20)
        }
        XCTAssertEqual(Array(asked.prefix(4)), [1, 2, 4, 8])
        XCTAssertEqual(asked.count, 6)
        XCTAssertEqual(asked[4], 5.66, accuracy: 0.01)  // √(4·8)
        XCTAssertEqual(asked[5], 6.73, accuracy: 0.01)  // √(5.66·8)
        // Incoherent from the start: the search walks down.
        var h2: [(coefficient: Double, coherence: Double?)] = []
        var a2: [Double] = []
        while let c = SweepPlanner.nextCoefficient(s, threshold: 50, history: h2) {
            a2.append(c)
            h2.append((c, c <= 0.3 ? 90 : nil))
        }
        XCTAssertEqual(Array(a2.prefix(3)), [1, 0.5, 0.25])
    }
}

/// The shipped example experiments stay valid.
final class ShippedExperimentTests: XCTestCase {
    func testExampleExperimentsParse() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("experiments").path
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertTrue(files.contains("demo.yaml"), "\(dir): \(files)")
        for f in files {
            let s = try ExperimentSpec.load(path: dir + "/" + f)
            XCTAssertFalse(try s.variantSpecs().isEmpty, f)
        }
        let demo = try ExperimentSpec.load(path: dir + "/demo.yaml")
        XCTAssertEqual(demo.models, ["smollm2-135m-instruct"])
        XCTAssertEqual(demo.traits, ["refusal"])
        XCTAssertEqual(demo.layers.layers.count, 2)
        // The demo measures steering without a judge, and validates every instrument it uses.
        XCTAssertEqual(Set(demo.evaluators), [.logodds, .perplexity, .degeneration])
    }
}

/// What can fail from the file and the environment fails before any model work.
final class RunnerPreflightTests: XCTestCase {
    func testOpenAIJudgeWithoutAKeyFailsBeforeAnyWork() throws {
        let dir = NSTemporaryDirectory() + "tiller-preflight-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let yaml = """
        name: preflight
        models: [smollm2-135m-instruct]
        traits: [refusal]
        methods: [probe]
        layers: [12]
        coefficients: {scale: relative, values: [0.5]}
        judge: openai:gpt-4.1-mini
        questions_per_trait: 4
        """
        try yaml.write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let names = ["OPENAI_API_KEY", "TILLER_JUDGE_API_KEY", "TILLER_JUDGE_BASE_URL", "OPENAI_BASE_URL"]
        let saved: [(String, String?)] = names.map { n in (n, ProcessInfo.processInfo.environment[n]) }
        defer { for (k, v) in saved { if let v { setenv(k, v, 1) } else { unsetenv(k) } } }
        for (k, _) in saved { unsetenv(k) }
        var o = RunOptions()
        o.showProgress = false
        let t = Date()
        let r = try ExperimentRunner(spec: try ExperimentSpec.load(path: dir + "/p.yaml"), baseDirectory: dir, outputDirectory: dir + "/out", options: o)
        XCTAssertThrowsError(try r.run()) { XCTAssertTrue("\($0)".contains("OPENAI_API_KEY"), "\($0)") }
        XCTAssertLessThan(Date().timeIntervalSince(t), 10)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out/smollm2-135m-instruct/scan.json"), "no scan ran")
    }
}
