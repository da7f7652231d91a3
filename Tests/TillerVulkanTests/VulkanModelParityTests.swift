import Foundation
import TillerFormats
import TillerModels
import TillerTensor
import TillerTestSupport
import XCTest
@testable import TillerVulkan

// Whole models on the Vulkan backend against the CPU backend: resid_post at every layer within
// 1e-4 relative, captures identical in shape, greedy and steered greedy tokens identical; and
// SmolLM2's teacher-forced log-probs within 1e-3 of the transformers fixture.

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("TillerModelsTests/Fixtures").path

private func relative(_ a: [Float], _ b: [Float]) -> Double { normalisedError(a, b) }

private func vulkanBackend() throws -> VulkanBackend { VulkanBackend(device: try testDevice()) }

final class VulkanModelParityTests: XCTestCase {
    func testTinyArchitectures() throws {
        let backend = try vulkanBackend()
        for name in ["tiny-llama31", "tiny-qwen2", "tiny-gemma2", "tiny-gemma3", "tiny-qwen3", "tiny-mistral", "tiny-phi3", "tiny-olmo2"] {
            let path = fixtures + "/" + name
            let cpu = try LanguageModel.load(path)
            let gpu = try LanguageModel.load(path, backend: backend)
            try compare(cpu, gpu, name: name, prompts: [[1, 5, 9, 3, 7, 2, 11, 4, 8, 6], [2, 4, 6, 8, 10, 12, 14]], newTokens: 8)
        }
    }

    func testSmolLM2() throws {
        let path = try realModelPath(smolFile)
        let cpu = try SharedModels.shared.get(smolFile, name: "smollm2-135m-instruct")
        let gpu = try LanguageModel.load(path, backend: try vulkanBackend())
        try compare(cpu, gpu, name: "smollm2", prompts: [[1, 504, 3458, 282, 4649, 314, 253], [1, 23, 678, 9021]], newTokens: 4)
        // Teacher-forced log-probs against transformers (tools/reference fixture).
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/smollm2.logprobs.json"))) as! [String: Any]
        let prompt = json["prompt_ids"] as! [Int]
        let conts = json["continuations"] as! [[String: Any]]
        let request = TeacherForcedRequest(groups: [.init(prompt: prompt, continuations: conts.map { $0["ids"] as! [Int] })],
                                           reuse: .prefixTrie(head: nil), reduction: .sum)
        let got = try gpu.teacherForced(request)[0].map { $0[0] }
        for (c, lp) in zip(conts, got) {
            let want = (c["logprob_total"] as! NSNumber).doubleValue
            XCTAssertEqual(lp, want, accuracy: 1e-3 * max(1, abs(want)), "continuation \(c["text"]!)")
        }
    }

    func testGemma3() throws {
        let path = try realModelPath(gemmaFile)
        let cpu = try SharedModels.shared.get(gemmaFile, name: "gemma-3-270m")
        let gpu = try LanguageModel.load(path, backend: try vulkanBackend())
        try compare(cpu, gpu, name: "gemma3", prompts: [[2, 818, 5279, 529, 7001, 563], [2, 1509, 236764]], newTokens: 3)
    }

    /// A model larger than the device fails at its first matrix, before anything is uploaded, with the sizes.
    func testModelTooLargeFailsBeforeLoading() throws {
        let backend = try vulkanBackend()
        let (raw, owner) = randomMatrix(.f32, rows: 4, cols: 32, seed: 1)
        let before = backend.device.allocatedBytes
        XCTAssertThrowsError(try backend.matrix(raw, modelBytesFP32: 8 * backend.device.info.deviceLocalBytes)) { e in
            XCTAssertTrue("\(e)".contains("MiB"), "\(e)")
        }
        XCTAssertEqual(backend.device.allocatedBytes, before)
        _ = owner
    }

    func compare(_ cpu: LanguageModel, _ gpu: LanguageModel, name: String, prompts: [[Int]], newTokens: Int) throws {
        let layers = Array(0..<cpu.layerCount)
        let capture = CaptureSpec(layers: layers, positions: .all)
        let a = try cpu.forward(prompts, capture: capture, logits: .all)
        let b = try gpu.forward(prompts, capture: capture, logits: .all)
        var worst = 0.0
        for s in prompts.indices {
            for l in layers {
                let x = a.activations[s][l]!, y = b.activations[s][l]!
                XCTAssertEqual(x.count, y.count, "\(name) seq \(s) layer \(l) capture shape")
                XCTAssertEqual(a.activations[s].positions, b.activations[s].positions, "\(name) seq \(s) positions")
                let e = relative(y, x)
                worst = max(worst, e)
                XCTAssertLessThanOrEqual(e, 1e-4, "\(name) seq \(s) resid_post.\(l)")
            }
            let e = relative(b.logits[s], a.logits[s])
            XCTAssertLessThanOrEqual(e, 1e-4, "\(name) seq \(s) logits")
        }
        let opts = GenerationOptions(maxNewTokens: newTokens, stopTokens: [])
        XCTAssertEqual(try gpu.generate(prompts, options: opts).map(\.tokens), try cpu.generate(prompts, options: opts).map(\.tokens), "\(name) greedy")
        // Steered greedy, a different edit per sequence (as the server batches them), one an ablation.
        var rng = Rng(5)
        let v = rng.floats(cpu.hiddenSize)
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let unit = v.map { $0 / norm }
        let steering: [SteeringSpec?] = [
            SteeringSpec(SteeringEdit(layer: cpu.layerCount / 2, vector: v, coef: 4)),
            SteeringSpec(SteeringEdit(layer: 0, vector: unit, kind: .ablate)),
        ]
        let sa = try cpu.generate(prompts, options: opts, steering: steering, capture: CaptureSpec(layers: [cpu.layerCount - 1], positions: .response))
        let sb = try gpu.generate(prompts, options: opts, steering: steering, capture: CaptureSpec(layers: [cpu.layerCount - 1], positions: .response))
        XCTAssertEqual(sb.map(\.tokens), sa.map(\.tokens), "\(name) steered greedy")
        for (x, y) in zip(sa, sb) {
            XCTAssertEqual(x.activations?.positions, y.activations?.positions, "\(name) steered capture positions")
            if let cx = x.activations?[cpu.layerCount - 1], let cy = y.activations?[cpu.layerCount - 1], cx.count == cy.count {
                XCTAssertLessThanOrEqual(relative(cy, cx), 1e-4, "\(name) steered capture")
            } else {
                XCTFail("\(name) steered capture missing or of another shape")
            }
        }
        print("\(name): worst resid_post relative error \(worst)")
    }
}
