import Foundation
import TillerFormats
import TillerTensor
import XCTest
@testable import TillerModels

/// A second backend: every call is counted by name and then done by the CPU backend. If a model
/// file did per-token work outside the backend, this backend could not see (or, on a GPU, do) it.
final class RecordingBackend: Backend, @unchecked Sendable {
    let cpu = CPUBackend()
    private let lock = NSLock()
    private(set) var calls: [String: Int] = [:]
    var name: String { "recording" }

    private func record(_ op: String) { lock.withLock { calls[op, default: 0] += 1 } }
    func reset() { lock.withLock { calls = [:] } }

    func matrix(_ raw: RawTensor, modelBytesFP32: Int) throws -> MatrixOperator {
        record("matrix")
        return RecordingMatrix(inner: try cpu.matrix(raw, modelBytesFP32: modelBytesFP32), backend: self)
    }
    func parallelFor(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) { record("parallelFor"); cpu.parallelFor(n, body) }
    func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, width: Int, scale: UnsafePointer<Float>, eps: Float, into y: UnsafeMutablePointer<Float>) {
        record("rmsNorm"); cpu.rmsNorm(x, rows: rows, width: width, scale: scale, eps: eps, into: y)
    }
    func rope(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
        record("rope"); cpu.rope(x, rows: rows, heads: heads, headDim: headDim, cos: cos, sin: sin)
    }
    func gatedActivation(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int, kind: Activation) {
        record("gatedActivation"); cpu.gatedActivation(gate, up, count: count, kind: kind)
    }
    func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) { record("add"); cpu.add(x, into: y, count: count) }
    func addBias(_ b: UnsafePointer<Float>, width: Int, rows: Int, into y: UnsafeMutablePointer<Float>) {
        record("addBias"); cpu.addBias(b, width: width, rows: rows, into: y)
    }
    func addScaled(_ x: UnsafePointer<Float>, _ a: Float, into y: UnsafeMutablePointer<Float>, count: Int) {
        record("addScaled"); cpu.addScaled(x, a, into: y, count: count)
    }
    func projectOut(_ d: UnsafePointer<Float>, from x: UnsafeMutablePointer<Float>, count: Int) {
        record("projectOut"); cpu.projectOut(d, from: x, count: count)
    }
    func scale(_ x: UnsafeMutablePointer<Float>, by s: Float, count: Int) { record("scale"); cpu.scale(x, by: s, count: count) }
    func softcap(_ x: UnsafeMutablePointer<Float>, cap: Float, count: Int) { record("softcap"); cpu.softcap(x, cap: cap, count: count) }
    func ropeTables(positions: [Int], invFreq: UnsafePointer<Float>, half: Int, cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>) {
        record("ropeTables"); cpu.ropeTables(positions: positions, invFreq: invFreq, half: half, cos: cos, sin: sin)
    }
    func copy(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int) { record("copy"); cpu.copy(src, into: dst, count: count) }
    func attention(_ jobs: [AttentionJob], scratch: UnsafeMutablePointer<Float>) { record("attention"); cpu.attention(jobs, scratch: scratch) }

    final class RecordingMatrix: MatrixOperator, @unchecked Sendable {
        let inner: MatrixOperator
        unowned let backend: RecordingBackend
        init(inner: MatrixOperator, backend: RecordingBackend) { self.inner = inner; self.backend = backend }
        var outFeatures: Int { inner.outFeatures }
        var inFeatures: Int { inner.inFeatures }
        func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
            backend.record("matmul"); inner.apply(x, rows: rows, into: y)
        }
        func row(_ index: Int, into out: UnsafeMutablePointer<Float>) { backend.record("embeddingRow"); inner.row(index, into: out) }
    }
}

final class BackendSeamTests: XCTestCase {
    /// Gemma 2 (embedding scale, soft-caps, sliding window) and Qwen2 (q/k/v biases), steered
    /// with an add and an ablation, captured and generated: every per-token operation goes
    /// through the backend, and the second backend's results equal the CPU backend's exactly.
    func testEveryPerTokenOperationGoesThroughTheBackend() throws {
        for (name, specific) in [("tiny-gemma2", ["scale", "softcap"]), ("tiny-qwen2", ["addBias"])] {
            let recording = RecordingBackend()
            let cpu = try LanguageModel.load(Fixtures.path(name))
            let rec = try LanguageModel.load(Fixtures.path(name), backend: recording)
            let tokens = try fixturePrompts(name)[0]
            let H = cpu.hiddenSize
            let v = (0..<H).map { Float(($0 * 7) % 11) / 11 - 0.5 }
            let steering = SteeringSpec(edits: [.add(layer: 1, vector: v, coef: 2, positions: .response),
                                                .ablate(layer: 0, direction: Array(v.reversed()), positions: .all)])
            recording.reset()
            let capture = CaptureSpec(layers: [0, 1], positions: .all)
            let a = try cpu.forward([tokens], capture: capture, steering: [steering], logits: .all, promptLengths: [tokens.count - 2])
            let b = try rec.forward([tokens], capture: capture, steering: [steering], logits: .all, promptLengths: [tokens.count - 2])
            XCTAssertEqual(a.logits, b.logits, name)
            XCTAssertEqual(a.activations[0].layers, b.activations[0].layers, name)
            let opts = GenerationOptions(maxNewTokens: 4, stopTokens: [])
            XCTAssertEqual(try cpu.generate([tokens], options: opts, steering: [steering])[0].tokens,
                           try rec.generate([tokens], options: opts, steering: [steering])[0].tokens, name)
            let ran = Set(recording.calls.keys)
            let expected: Set<String> = ["embeddingRow", "matmul", "rmsNorm", "ropeTables", "rope", "attention", "copy", "gatedActivation",
                                         "add", "addScaled", "projectOut"]
            XCTAssertTrue(expected.union(specific).isSubset(of: ran), "\(name): missing \(expected.union(specific).subtracting(ran).sorted())")
            print("\(name) through the recording backend: \(recording.calls.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: ", "))")
        }
    }
}
