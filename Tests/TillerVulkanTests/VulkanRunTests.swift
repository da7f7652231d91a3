import Foundation
@testable import TillerExperiment
import TillerModels
import TillerSteering
import TillerTestSupport
import XCTest
@testable import TillerVulkan

// A whole small `tiller run` on SmolLM2, once with `device: cpu` and once with `device: vulkan:N`
// (the test device, lavapipe in CI), compared stage by stage: the scan's massive dims, the sampled
// extraction answers and their activations, the vectors, the layer norms, every generation (same
// tokens), every metric value, every instrument check, and the report's selections — the same
// best configuration per method and gate, held-out Δs within 1e-3.
//
// lavapipe runs this experiment ~25–35× slower than the CPU backend (on 2 cores: 7 s vs 190 s,
// 350 CPU seconds; TILLER_VULKAN_PROFILE=1 shows where: two thirds in the tiled matmul, a seventh
// in attention), so the experiment is the smallest that still runs every
// stage and selects between configurations: the logodds evaluator selects (no generated-answer
// judge: one local-judge call is ~650 tokens, seconds on the CPU backend and minutes on lavapipe).
// CI runs it (scripts/test.sh); it prints both runs' wall and CPU seconds.
// That a local judge follows the experiment's device is checked without scoring.

final class VulkanRunTests: XCTestCase {
    /// Every stage, as little as each allows: two short calibration texts, one variant pair at one
    /// layer and two coefficients, the fewest reference items and neutral texts the instruments
    /// accept, two questions with 6 new tokens. The gates let the selection choose: at 5 only the
    /// smaller coefficient passes (SmolLM2's perplexity ratio there is ~3.5), at 1e5 both do.
    static let yaml = """
    name: tiny-device
    models: [smollm2-135m-instruct]
    traits: [refusal]
    methods: [probe]
    cleaning: [preclean_la2]
    layers: [12]
    coefficients: {scale: relative, values: [0.5, 4]}
    evaluators: [logodds, perplexity, degeneration]
    max_perplexity_ratio: [5, 100000]
    reference_items: 4
    perplexity_texts: 2
    questions_per_trait: 2
    max_new_tokens: 6
    batch_size: 2
    extraction: {max_pairs: 1, max_questions: 1, max_new_tokens: 4}
    scan: {texts: calibration.txt}
    """
    static let calibration = "The river had frozen overnight.\nPhotosynthesis converts light energy into chemical energy.\n"

    /// Held-out and selection-half Δs (the scale of their evaluator: 0–100 for the judge), absolute.
    static let deltaTolerance = 1e-3
    /// Every other stored number: |a − b| ≤ this × max(1, |a|).
    static let valueTolerance = 1e-3

    var root = ""

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "tiller-vulkanrun-\(ProcessInfo.processInfo.processIdentifier)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try Self.calibration.write(toFile: root + "/calibration.txt", atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    /// This process's CPU seconds so far (user + system, every thread: lavapipe's workers too).
    static func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    }

    /// Runs the experiment with `device:` set to `device`, the backend chosen from the file as
    /// `tiller run` chooses it; returns the runner, its wall time and the CPU time it took (on a
    /// shared machine the wall time depends on the load, the CPU time much less).
    func run(device: String) throws -> (ExperimentRunner, Double, Double) {
        let path = root + "/\(device.replacingOccurrences(of: ":", with: "")).yaml"
        try (Self.yaml + "\ndevice: \(device)\n").write(toFile: path, atomically: true, encoding: .utf8)
        let spec = try ExperimentSpec.load(path: path)
        XCTAssertEqual(spec.device, device)
        var o = RunOptions()
        o.showProgress = false
        o.log = { _ in }
        o.backend = try DeviceChoice(parsing: try XCTUnwrap(spec.device)).backend { _ in }
        let r = try ExperimentRunner(spec: spec, baseDirectory: root, outputDirectory: root + "/" + device.replacingOccurrences(of: ":", with: ""),
                                     options: o)
        let t = Date(), c = Self.cpuSeconds()
        try r.run()
        return (r, Date().timeIntervalSince(t), Self.cpuSeconds() - c)
    }

    func testWholeRunOnVulkanSelectsWhatTheCPUSelects() throws {
        let device = try testDevice()
        _ = try realModelPath(smolFile)
        let (cpu, cpuSeconds, cpuCPU) = try run(device: "cpu")
        let (gpu, gpuSeconds, gpuCPU) = try run(device: "vulkan:\(device.info.index)")
        XCTAssertTrue(cpu.options.backend is CPUBackend)
        XCTAssertTrue(gpu.options.backend is VulkanBackend, "device: vulkan:N gave \(gpu.options.backend.name)")

        var worst = Worst()
        let a = cpu.store, b = gpu.store

        // The scan (layer norms, massive dims) and the extraction: the same sampled answers, the
        // same activations, the same vectors.
        let na = try a.layerNorms(model: "smollm2-135m-instruct"), nb = try b.layerNorms(model: "smollm2-135m-instruct")
        XCTAssertEqual(na.keys.sorted(), [12])
        XCTAssertEqual(na.keys.sorted(), nb.keys.sorted())
        for (l, x) in na {
            let y = try XCTUnwrap(nb[l])
            XCTAssertEqual(x.excludedDims, y.excludedDims, "layer \(l) massive dims")
            worst.value(x.mean, y.mean, "layer norm \(l)")
            worst.value(x.excludingMassive, y.excludingMassive, "layer norm \(l) excluding massive")
        }
        let dirA = cpu.outputDirectory + "/smollm2-135m-instruct", dirB = gpu.outputDirectory + "/smollm2-135m-instruct"
        try worst.json(try json(dirA + "/scan.json"), try json(dirB + "/scan.json"), path: "scan.json")
        let ea = try ExtractionRun.load(directory: dirA + "/refusal"), eb = try ExtractionRun.load(directory: dirB + "/refusal")
        XCTAssertFalse(ea.positiveSamples.isEmpty)
        XCTAssertEqual(ea.positiveSamples, eb.positiveSamples, "extraction: sampled positive answers")
        XCTAssertEqual(ea.negativeSamples, eb.negativeSamples, "extraction: sampled negative answers")
        for name in ["probe", "probe_preclean_la2"] {
            let va = try SteeringVectorFile.load(path: dirA + "/refusal/vectors/\(name).safetensors")
            let vb = try SteeringVectorFile.load(path: dirB + "/refusal/vectors/\(name).safetensors")
            XCTAssertEqual(va.layers, vb.layers)
            for l in va.layers {
                let e = normalisedError(try XCTUnwrap(vb.vectors[l]), try XCTUnwrap(va.vectors[l]))
                worst.vector = max(worst.vector, e)
                XCTAssertLessThan(e, 1e-4, "vector \(name) layer \(l)")
            }
        }

        // The sweep: the same configurations (their absolute coefficients come from the layer
        // norms), the same greedy answers token for token, close judge scores and metrics.
        let ca = try a.configurations(), cb = try b.configurations()
        XCTAssertEqual(ca.count, 5)
        XCTAssertEqual(ca.map(\.id), cb.map(\.id))
        for (x, y) in zip(ca, cb) { worst.value(x.absoluteCoefficient, y.absoluteCoefficient, "\(x.id) coefficient") }
        let ga = try a.generations(), gb = try b.generations()
        XCTAssertEqual(ga.count, 10)
        XCTAssertEqual(ga.count, gb.count)
        for (x, y) in zip(ga, gb) {
            XCTAssertEqual([x.configId, "\(x.question)", "\(x.sample)", x.prompt], [y.configId, "\(y.question)", "\(y.sample)", y.prompt])
            XCTAssertEqual(x.response, y.response, "\(x.configId) question \(x.question): the greedy answer")
            XCTAssertEqual(x.tokens, y.tokens, "\(x.configId) question \(x.question)")
            XCTAssertEqual(x.finish, y.finish, "\(x.configId) question \(x.question)")
        }
        let sa = try a.scores(), sb = try b.scores()
        XCTAssertEqual(sa.map { "\($0.configId)|\($0.question)|\($0.sample)" }, sb.map { "\($0.configId)|\($0.question)|\($0.sample)" })
        for (x, y) in zip(sa, sb) {
            XCTAssertEqual(x.trait == nil, y.trait == nil)
            XCTAssertEqual(x.coherence == nil, y.coherence == nil)
            if let p = x.trait, let q = y.trait { worst.value(p, q, "\(x.configId) q\(x.question) judge trait") }
            if let p = x.coherence, let q = y.coherence { worst.value(p, q, "\(x.configId) q\(x.question) judge coherence") }
        }
        for e in ["logodds", "perplexity"] {
            let ma = try a.metrics(evaluator: e), mb = try b.metrics(evaluator: e)
            XCTAssertEqual(ma.count, 5, e)
            XCTAssertEqual(ma.keys.sorted(), mb.keys.sorted(), e)
            for (k, xs) in ma {
                let ys = try XCTUnwrap(mb[k])
                XCTAssertEqual(xs.count, ys.count, "\(e) \(k)")
                for (i, (x, y)) in zip(xs, ys).enumerated() { worst.value(x, y, "\(e) \(k) item \(i)") }
            }
        }
        // Every instrument check, on known cases.
        let va = try a.validations(), vb = try b.validations()
        XCTAssertEqual(va.count, 3)
        XCTAssertEqual(va.map { "\($0.validation.instrument)/\($0.validation.check)/\($0.validation.n)/\($0.validation.passed)" },
                       vb.map { "\($0.validation.instrument)/\($0.validation.check)/\($0.validation.n)/\($0.validation.passed)" })
        for (x, y) in zip(va, vb) {
            XCTAssertEqual(x.validation.value == nil, y.validation.value == nil)
            if let p = x.validation.value, let q = y.validation.value { worst.value(p, q, "validation \(x.validation.instrument)/\(x.validation.check)") }
        }

        // The selection: per method and gate the same best configuration, held-out Δs within 1e-3.
        let selA = try Selection(store: a, spec: cpu.spec), selB = try Selection(store: b, spec: gpu.spec)
        XCTAssertEqual(selA.winner, selB.winner)
        var bests = 0
        for (x, y) in zip(selA.conditions, selB.conditions) {
            XCTAssertEqual(x.evaluators.map(\.evaluator), y.evaluators.map(\.evaluator))
            for (p, q) in zip(x.evaluators, y.evaluators) {
                XCTAssertEqual(p.gates, q.gates)
                XCTAssertEqual([p.validated, p.gateValidated], [q.validated, q.gateValidated], "\(p.evaluator) validated")
                for g in p.gates {
                    let bp = p.best[g] ?? [], bq = q.best[g] ?? []
                    XCTAssertEqual(bp.map(\.config.id), bq.map(\.config.id), "\(p.evaluator) gate \(g): the selected configurations")
                    for (u, v) in zip(bp, bq) {
                        bests += 1
                        worst.delta(u.delta.estimate, v.delta.estimate, "\(p.evaluator) \(g) \(u.config.id) held-out Δ")
                        worst.delta(u.selectionDelta, v.selectionDelta, "\(p.evaluator) \(g) \(u.config.id) selection Δ")
                    }
                }
            }
        }
        XCTAssertGreaterThan(bests, 0)
        // report.json as a whole: every string, flag and count equal (variants, verdicts,
        // findings), every number close, every Δ within 1e-3.
        try worst.json(try json(cpu.outputDirectory + "/report.json"), try json(gpu.outputDirectory + "/report.json"), path: "report.json")

        print(String(format: "VulkanRunTests: cpu run %.1fs (%.1f CPU s), vulkan run %.1fs (%.1f CPU s); worst Δ difference %.2e (%@), worst value difference %.2e relative (%@), worst vector error %.2e",
                     cpuSeconds, cpuCPU, gpuSeconds, gpuCPU, worst.deltaDiff, worst.deltaWhere, worst.valueDiff, worst.valueWhere, worst.vector))
    }

    /// A local judge runs on the experiment's device: the experiment's own model when it is the
    /// judge, else the judge model loaded on the same backend.
    func testLocalJudgeFollowsTheExperimentsDevice() throws {
        let device = try testDevice()
        let backend = VulkanBackend(device: device)
        _ = try realModelPath(smolFile)
        let model = try LanguageModel.load("smollm2-135m-instruct", backend: backend)
        for judge in ["smollm2-135m-instruct", "gemma-3-270m"] {
            _ = try realModelPath(judge == "gemma-3-270m" ? gemmaFile : smolFile)
            let path = root + "/judge-\(judge).yaml"
            try (Self.yaml + "\njudge: local:\(judge)\n").write(toFile: path, atomically: true, encoding: .utf8)
            var o = RunOptions()
            o.showProgress = false
            o.log = { _ in }
            o.backend = backend
            let r = try ExperimentRunner(spec: try ExperimentSpec.load(path: path), baseDirectory: root, outputDirectory: root + "/judge-\(judge)",
                                         options: o)
            _ = try r.makeScorer(for: model)
            let m = try XCTUnwrap(r.judgeModels[judge], judge)
            XCTAssertEqual(m.backendName, backend.name, judge)
            XCTAssertEqual(m === model, judge == "smollm2-135m-instruct", judge)
        }
    }

    func json(_ path: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) }
}

/// The largest differences seen, each checked against its tolerance where it is recorded.
private struct Worst {
    var deltaDiff = 0.0, deltaWhere = "" as NSString
    var valueDiff = 0.0, valueWhere = "" as NSString
    var vector = 0.0

    mutating func delta(_ a: Double, _ b: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let d = abs(a - b)
        if !(d <= deltaDiff) { deltaDiff = d; deltaWhere = what as NSString }
        XCTAssertLessThanOrEqual(d, VulkanRunTests.deltaTolerance, "\(what): cpu \(a), vulkan \(b)", file: file, line: line)
    }

    mutating func value(_ a: Double, _ b: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let d = abs(a - b) / max(1, abs(a))
        if !(d <= valueDiff) { valueDiff = d; valueWhere = what as NSString }
        XCTAssertLessThanOrEqual(d, VulkanRunTests.valueTolerance, "\(what): cpu \(a), vulkan \(b)", file: file, line: line)
    }

    /// Walks two JSON trees: the same keys and shapes, equal strings and flags, close numbers
    /// (Δs, named `delta`/`selection_delta`, within the Δ tolerance).
    mutating func json(_ a: Any, _ b: Any, path: String) throws {
        switch (a, b) {
        case let (x as [String: Any], y as [String: Any]):
            XCTAssertEqual(x.keys.sorted(), y.keys.sorted(), path)
            for k in x.keys.sorted() { if let v = y[k] { try json(x[k]!, v, path: path + "." + k) } }
        case let (x as [Any], y as [Any]):
            XCTAssertEqual(x.count, y.count, path)
            for (i, (u, v)) in zip(x, y).enumerated() { try json(u, v, path: path + "[\(i)]") }
        case let (x as NSNumber, y as NSNumber):
            // Flags and integers (counts, layers, dims) are equal; reals are close.
            if !isReal(x) && !isReal(y) {
                XCTAssertEqual(x, y, path)
            } else if path.hasSuffix(".delta") || path.hasSuffix(".selection_delta") {
                delta(x.doubleValue, y.doubleValue, path)
            } else {
                value(x.doubleValue, y.doubleValue, path)
            }
        case let (x as String, y as String):
            XCTAssertEqual(x, y, path)
        case (is NSNull, is NSNull):
            break
        default:
            XCTFail("\(path): cpu \(a), vulkan \(b)")
        }
    }

    private func isReal(_ n: NSNumber) -> Bool {
        let t = String(cString: n.objCType)
        return t == "d" || t == "f"
    }
}
