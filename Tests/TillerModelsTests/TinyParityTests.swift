import Foundation
import TillerFormats
import XCTest
@testable import TillerModels

/// The tiny random-weight checkpoints against transformers (fixtures from tools/reference/model_fixtures.py):
/// resid_post at every layer and logits at every position within 1e-3 relative, greedy ids equal.
final class TinyParityTests: XCTestCase {
    func testLlama31() throws { try checkTiny("tiny-llama31") }
    func testQwen2() throws { try checkTiny("tiny-qwen2") }
    func testGemma2() throws { try checkTiny("tiny-gemma2") }
    func testGemma3() throws { try checkTiny("tiny-gemma3") }
    func testQwen3() throws { try checkTiny("tiny-qwen3") }
    func testMistral() throws { try checkTiny("tiny-mistral") }
    func testPhi3() throws { try checkTiny("tiny-phi3") }
    func testOLMo2() throws { try checkTiny("tiny-olmo2") }

    /// Every config activation name the transformer accepts maps to a kernel, with transformers' values.
    func testGateActivations() throws {
        let be = CPUBackend()
        func run(_ a: Activation, _ x: Float) -> Float {
            let (g, u) = (try! be.upload([x]), try! be.upload([1]))
            var out: Float = .nan
            let rec = be.makeRecorder()
            rec.gatedActivation(g.at(), u.at(), count: 1, kind: a)
            withUnsafeMutablePointer(to: &out) { o in
                rec.read(g.at(), count: 1, into: o)
                rec.submit()
            }
            return out
        }
        // torch.nn.functional.silu / gelu / gelu(approximate="tanh") at ±1.
        XCTAssertEqual(run(try Activation(configName: "silu"), 1), 0.7310586, accuracy: 1e-6)
        XCTAssertEqual(run(try Activation(configName: "gelu"), 1), 0.8413447, accuracy: 1e-6)
        XCTAssertEqual(run(try Activation(configName: "gelu"), -1), -0.1586553, accuracy: 1e-6)
        XCTAssertEqual(run(try Activation(configName: "gelu_pytorch_tanh"), 1), 0.8411920, accuracy: 1e-6)
        for name in ModelConfig.supportedActivations { XCTAssertNoThrow(try Activation(configName: name), name) }
        XCTAssertThrowsError(try Activation(configName: "relu"))
    }

    func checkTiny(_ name: String) throws {
        let model = try loadTiny(name)
        let expected = try FixtureFile(Fixtures.path("\(name).expected.safetensors"))
        let layers = (expected.metadata["layers"] as? [Int]) ?? [0, 1, 2]
        var worst: Float = 0
        for p in 0..<3 {
            let tokens = try expected.ints("tokens.\(p)")
            let out = try model.forward([tokens], capture: CaptureSpec(layers: layers, positions: .all), logits: .all)
            for l in layers {
                let got = out.activations[0][l]!
                let want = try expected.floats("resid_post.\(p).\(l)")
                let e = relativeError(got, want)
                worst = max(worst, e)
                XCTAssertLessThanOrEqual(e, 1e-3, "\(name) prompt \(p) resid_post.\(l)")
            }
            let e = relativeError(out.logits[0], try expected.floats("logits.\(p)"))
            worst = max(worst, e)
            XCTAssertLessThanOrEqual(e, 1e-3, "\(name) prompt \(p) logits")

            let gen = try model.generate([tokens], options: GenerationOptions(maxNewTokens: 12, stopTokens: []))
            XCTAssertEqual(gen[0].tokens, try expected.ints("greedy.\(p)"), "\(name) prompt \(p) greedy")
        }
        print("\(name): worst relative error \(worst)")
    }
}

func loadTiny(_ name: String) throws -> LanguageModel {
    try LanguageModel.load(Fixtures.path(name))
}
