import Foundation
@testable import TillerModels
import XCTest
@testable import TillerVulkan

// Teacher-forced requests with every kind of sharing on the Vulkan backend against the CPU
// backend: shared prompts whose common head runs once per steering (copied into each prompt's
// keys/values on the device), with the shared layer prefix on and off.

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("TillerModelsTests/Fixtures").path

final class VulkanTeacherForcingTests: XCTestCase {
    func testSharedPromptsWithACommonHeadMatchTheCPU() throws {
        let path = fixtures + "/tiny-llama31"
        let cpu = try LanguageModel.load(path)
        let gpu = try LanguageModel.load(path, backend: VulkanBackend(device: try testDevice()))
        let head = [1, 5, 9, 3, 7, 2]
        let prompts = [head + [11, 4], head + [8], head + [6, 6, 13]]
        let conts = [[7, 9, 11], [200, 3], [9]]
        var v = [Float](repeating: 0, count: cpu.hiddenSize)
        for i in v.indices { v[i] = Float((i * 37) % 11) / 11 - 0.5 }
        var groups: [TeacherForcedRequest.Group] = []
        for spec in [nil, SteeringSpec(.add(layer: 1, vector: v, coef: 4)), SteeringSpec(.add(layer: 0, vector: v, coef: -3))] {
            for p in prompts { groups.append(.init(prompt: p, continuations: conts, steering: spec)) }
        }
        XCTAssertEqual(LanguageModel.CommonHeads(groups)?.specs.count, 3, "one head per steering")
        for shared in [false, true] {
            let request = TeacherForcedRequest(groups: groups, reuse: .sharedPrompt, sharedLayers: shared)
            let a = try cpu.teacherForced(request), b = try gpu.teacherForced(request)
            for (g, (x, y)) in zip(a, b).enumerated() {
                for (i, (u, w)) in zip(x, y).enumerated() {
                    XCTAssertEqual(u.count, w.count)
                    for (p, q) in zip(u, w) {
                        XCTAssertEqual(q, p, accuracy: 1e-4 * max(1, abs(p)), "shared layers \(shared): group \(g) continuation \(i)")
                    }
                }
            }
            // Steering changes the scores, so agreement is not vacuous.
            XCTAssertNotEqual(a[0], a[3])
        }
    }
}
