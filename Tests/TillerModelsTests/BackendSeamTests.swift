import Foundation
import TillerFormats
import TillerTensor
import XCTest
@testable import TillerModels

/// A second backend: every recorded op is counted by name and then done by the CPU backend's
/// recorder, and every submit is counted with the reads recorded before it. If a model file did
/// per-token work outside the recorder, or read back more than once a step, this backend would
/// see it.
final class RecordingBackend: Backend, @unchecked Sendable {
    let cpu = CPUBackend()
    private let lock = NSLock()
    private(set) var calls: [String: Int] = [:]
    /// Per submit: the number of `read`s recorded in that step.
    private(set) var readsPerSubmit: [Int] = []
    var name: String { "recording" }

    fileprivate func record(_ op: String) { lock.withLock { calls[op, default: 0] += 1 } }
    fileprivate func submitted(reads: Int) { lock.withLock { readsPerSubmit.append(reads) } }
    func reset() { lock.withLock { calls = [:]; readsPerSubmit = [] } }

    func matrix(_ raw: RawTensor, modelBytesFP32: Int) throws -> MatrixOperator {
        record("matrix")
        return RecordingMatrix(inner: try cpu.matrix(raw, modelBytesFP32: modelBytesFP32))
    }
    func upload(_ values: [Float]) throws -> BackendBuffer { record("upload"); return try cpu.upload(values) }
    func buffer(count: Int) -> BackendBuffer { cpu.buffer(count: count) }
    func makeRecorder(rowInvariant: Bool) -> StepRecorder { Recorder(backend: self, inner: cpu.makeRecorder(rowInvariant: rowInvariant)) }
    func kernel(for matrix: MatrixOperator, rows: Int) -> String {
        cpu.kernel(for: (matrix as! RecordingMatrix).inner, rows: rows)
    }

    final class RecordingMatrix: MatrixOperator, @unchecked Sendable {
        let inner: MatrixOperator
        init(inner: MatrixOperator) { self.inner = inner }
        var outFeatures: Int { inner.outFeatures }
        var inFeatures: Int { inner.inFeatures }
    }

    final class Recorder: StepRecorder {
        unowned let backend: RecordingBackend
        let inner: StepRecorder
        var reads = 0
        init(backend: RecordingBackend, inner: StepRecorder) { self.backend = backend; self.inner = inner }
        private func r(_ op: String) { backend.record(op) }
        private func m(_ w: MatrixOperator) -> MatrixOperator { (w as! RecordingMatrix).inner }

        func write(_ host: UnsafeBufferPointer<Float>, into dst: BufferSlice) { r("write"); inner.write(host, into: dst) }
        func embed(_ table: MatrixOperator, tokens: [Int], scale: Float?, into x: BufferSlice) {
            r("embed"); if scale != nil { r("embedScale") }
            inner.embed(m(table), tokens: tokens, scale: scale, into: x)
        }
        func matmul(_ w: MatrixOperator, _ x: BufferSlice, rows: Int, into y: BufferSlice) { r("matmul"); inner.matmul(m(w), x, rows: rows, into: y) }
        func rmsNorm(_ x: BufferSlice, rows: Int, width: Int, weight: BufferSlice, eps: Float, into y: BufferSlice) {
            r("rmsNorm"); inner.rmsNorm(x, rows: rows, width: width, weight: weight, eps: eps, into: y)
        }
        func ropeTables(positions: [Int], invFreq: BufferSlice, half: Int, cos: BufferSlice, sin: BufferSlice) {
            r("ropeTables"); inner.ropeTables(positions: positions, invFreq: invFreq, half: half, cos: cos, sin: sin)
        }
        func rope(_ x: BufferSlice, rows: Int, heads: Int, headDim: Int, cos: BufferSlice, sin: BufferSlice) {
            r("rope"); inner.rope(x, rows: rows, heads: heads, headDim: headDim, cos: cos, sin: sin)
        }
        func gatedActivation(_ gate: BufferSlice, _ up: BufferSlice, count: Int, kind: Activation) {
            r("gatedActivation"); inner.gatedActivation(gate, up, count: count, kind: kind)
        }
        func add(_ x: BufferSlice, into y: BufferSlice, count: Int) { r("add"); inner.add(x, into: y, count: count) }
        func addBias(_ bias: BufferSlice, width: Int, rows: Int, into y: BufferSlice) {
            r("addBias"); inner.addBias(bias, width: width, rows: rows, into: y)
        }
        func addScaled(_ vector: BufferSlice, coef: Float, into x: BufferSlice, rows: Int, width: Int) {
            r("addScaled"); inner.addScaled(vector, coef: coef, into: x, rows: rows, width: width)
        }
        func projectOut(_ direction: BufferSlice, from x: BufferSlice, rows: Int, width: Int) {
            r("projectOut"); inner.projectOut(direction, from: x, rows: rows, width: width)
        }
        func softcap(_ x: BufferSlice, cap: Float, count: Int) { r("softcap"); inner.softcap(x, cap: cap, count: count) }
        func copy(_ src: BufferSlice, into dst: BufferSlice, count: Int) { r("copy"); inner.copy(src, into: dst, count: count) }
        func attention(_ jobs: [AttentionJob]) { r("attention"); inner.attention(jobs) }
        func read(_ src: BufferSlice, count: Int, into host: UnsafeMutablePointer<Float>) {
            r("read"); reads += 1; inner.read(src, count: count, into: host)
        }
        func submit() { r("submit"); backend.submitted(reads: reads); reads = 0; inner.submit() }
    }
}

final class BackendSeamTests: XCTestCase {
    /// Gemma 2 (embedding scale, soft-caps, sliding window) and Qwen2 (q/k/v biases), steered
    /// with an add and an ablation, captured and generated: every per-token operation goes
    /// through the recorder, and the second backend's results equal the CPU backend's exactly.
    /// A step reads back only what was asked: at most the captured row blocks (one per captured
    /// layer) and one logits block.
    func testEveryPerTokenOperationGoesThroughTheBackend() throws {
        for (name, specific) in [("tiny-gemma2", ["embedScale", "softcap"]), ("tiny-qwen2", ["addBias"])] {
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
            XCTAssertEqual(recording.readsPerSubmit, [capture.layers.count + 1], "\(name): one step, one read per captured layer and one of logits")
            let opts = GenerationOptions(maxNewTokens: 4, stopTokens: [])
            XCTAssertEqual(try cpu.generate([tokens], options: opts, steering: [steering])[0].tokens,
                           try rec.generate([tokens], options: opts, steering: [steering])[0].tokens, name)
            let ran = Set(recording.calls.keys)
            let expected: Set<String> = ["embed", "matmul", "rmsNorm", "ropeTables", "rope", "attention", "copy", "gatedActivation",
                                         "add", "addScaled", "projectOut", "read", "submit", "upload"]
            XCTAssertTrue(expected.union(specific).isSubset(of: ran), "\(name): missing \(expected.union(specific).subtracting(ran).sorted())")
            XCTAssertLessThanOrEqual(recording.readsPerSubmit.max() ?? 0, capture.layers.count + 1, name)
            print("\(name) through the recording backend: \(recording.calls.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: ", "))")
        }
    }
}
