import Foundation
import XCTest
@testable import TillerModels

/// The one teacher-forced request: a shared layer prefix (blocks before a configuration's first
/// steered layer run once, unsteered) gives the bits of running every configuration whole, for
/// each reuse and steering placement; whole sequences, shared prompts and the trie agree.
final class TeacherForcingTests: XCTestCase {
    func unit(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed
        var v = (0..<n).map { _ -> Float in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Double(s >> 11) / Double(1 << 53) - 0.5)
        }
        let norm = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        v = v.map { $0 / norm }
        return v
    }

    /// Configurations at every layer, both placements, an ablation and a two-layer spec.
    func configurations(_ model: LanguageModel, positions: SteeringPositions) -> [SteeringSpec?] {
        let H = model.hiddenSize
        var out: [SteeringSpec?] = [nil]
        for l in 0..<model.layerCount {
            out.append(SteeringSpec(.add(layer: l, vector: unit(H, seed: UInt64(l + 1)), coef: 6, positions: positions)))
            out.append(SteeringSpec(.add(layer: l, vector: unit(H, seed: UInt64(l + 11)), coef: -4, positions: positions)))
        }
        out.append(SteeringSpec(.ablate(layer: 1, direction: unit(H, seed: 7), positions: positions)))
        out.append(SteeringSpec(.add(layer: 2, vector: unit(H, seed: 8), coef: 5, positions: positions),
                                .add(layer: 1, vector: unit(H, seed: 9), coef: 3, positions: positions)))
        return out
    }

    /// Equal to the bit, naming the first values that differ.
    func assertBitwise(_ a: [[[Double]]], _ b: [[[Double]]], _ label: String) {
        guard a != b else { return }
        var diff: [String] = []
        for (g, (x, y)) in zip(a, b).enumerated() {
            for (i, (u, w)) in zip(x, y).enumerated() where u != w { diff.append("group \(g) continuation \(i): \(u) vs \(w)") }
        }
        XCTFail("\(label): \(diff.count) continuations differ, e.g. \(diff.prefix(3).joined(separator: "; "))")
    }

    func assertClose(_ a: [[[Double]]], _ b: [[[Double]]], _ label: String, tolerance: Double) {
        XCTAssertEqual(a.count, b.count, label)
        for (g, (x, y)) in zip(a, b).enumerated() {
            XCTAssertEqual(x.map(\.count), y.map(\.count), "\(label) group \(g)")
            for (i, (u, w)) in zip(x, y).enumerated() {
                for (t, (p, q)) in zip(u, w).enumerated() {
                    XCTAssertLessThanOrEqual(abs(p - q), tolerance * max(1, abs(q)), "\(label) group \(g) continuation \(i) token \(t): \(p) vs \(q)")
                }
            }
        }
    }

    func testSharedLayersEqualWholeRuns() throws {
        for name in ["tiny-llama31", "tiny-qwen2", "tiny-gemma2", "tiny-gemma3"] {
            let model = try loadTiny(name)
            let prompts = try fixturePrompts(name).map { Array($0.prefix(12)) }
            let conts = [[7, 9, 11], [200, 3, 5, 8], [9]]
            for positions in [SteeringPositions.all, .response] {
                let specs = configurations(model, positions: positions)
                // Whole sequences (perplexity's shape) and steered prompts (A/B, log-odds at every
                // position): one group per (configuration, item), configuration-major.
                var whole: [TeacherForcedRequest.Group] = [], grouped: [TeacherForcedRequest.Group] = []
                for s in specs {
                    for (k, p) in prompts.enumerated() {
                        whole.append(.init(prompt: p, continuations: [conts[k]], steering: s))
                        grouped.append(.init(prompt: p, continuations: conts, steering: s))
                    }
                }
                for (label, groups, reuse) in [("whole", whole, TeacherForcedRequest.Reuse.none), ("grouped", grouped, .sharedPrompt)] {
                    let off = try model.teacherForced(TeacherForcedRequest(groups: groups, reuse: reuse))
                    let on = try model.teacherForced(TeacherForcedRequest(groups: groups, reuse: reuse, sharedLayers: true))
                    // Bitwise: the two paths batch the same rows into different steps (and different
                    // numbers of logits rows), and a row's products must not depend on that.
                    assertBitwise(on, off, "\(name) \(label) \(positions)")
                    // The configurations differ from the unsteered model, so equality is not vacuous.
                    let n = prompts.count
                    for c in 1..<specs.count { XCTAssertNotEqual(off[c * n], off[0], "\(name) \(label) \(positions): configuration \(c) changed nothing") }
                    XCTAssertEqual(try model.teacherForced(TeacherForcedRequest(groups: groups, reuse: reuse, sharedLayers: true)), on,
                                   "\(name) \(label): bitwise reproducible")
                }
            }
            // Log-odds with response steering: one unsteered prompt, each configuration's
            // continuations with their own steering.
            let specs = configurations(model, positions: .response)
            var cs: [[Int]] = [], ss: [SteeringSpec?] = []
            for s in specs { for c in conts { cs.append(c); ss.append(s) } }
            let groups = prompts.map { TeacherForcedRequest.Group(prompt: $0, continuations: cs, continuationSteering: ss) }
            let off = try model.teacherForced(TeacherForcedRequest(groups: groups, reuse: .sharedPrompt, reduction: .sum))
            let on = try model.teacherForced(TeacherForcedRequest(groups: groups, reuse: .sharedPrompt, reduction: .sum, sharedLayers: true))
            assertBitwise(on, off, "\(name) per-continuation steering")
        }
    }

    /// Prompts that begin alike (a chat template's head) run that head once per steering of its
    /// rows and continue copies of it: every score is the bits of running each group alone.
    func testCommonHeadsChangeNoBits() throws {
        for name in ["tiny-llama31", "tiny-gemma2"] {
            let model = try loadTiny(name)
            let fixture = try fixturePrompts(name)
            let head = Array(fixture[0].prefix(6))
            let prompts = [head + [5, 17, 33], head + [90], head + [7, 7, 7, 2, 41], head + Array(fixture[1].prefix(4))]
            let conts = [[7, 9, 11], [200, 3, 5, 8], [9]]
            for positions in [SteeringPositions.all, .response] {
                let specs = configurations(model, positions: positions)
                var groups: [TeacherForcedRequest.Group] = []
                for s in specs { for p in prompts { groups.append(.init(prompt: p, continuations: conts, steering: s)) } }
                let heads = try XCTUnwrap(LanguageModel.CommonHeads(groups), "\(name): the prompts share a head")
                XCTAssertEqual(heads.tokens, head)
                // `.response` edits leave the head unsteered: one head; at every position, one per configuration.
                XCTAssertEqual(heads.specs.count, positions == .all ? specs.count : 1, "\(name) \(positions)")
                let alone = try groups.map { try model.teacherForced(TeacherForcedRequest(groups: [$0], reuse: .sharedPrompt))[0] }
                for shared in [false, true] {
                    let together = try model.teacherForced(TeacherForcedRequest(groups: groups, reuse: .sharedPrompt, sharedLayers: shared))
                    assertBitwise(together, alone, "\(name) \(positions) shared layers \(shared)")
                }
            }
            // Per-continuation steering after one unsteered prompt per item (log-odds at `response`).
            let specs = configurations(model, positions: .response)
            var cs: [[Int]] = [], ss: [SteeringSpec?] = []
            for s in specs { for c in conts { cs.append(c); ss.append(s) } }
            let groups = prompts.map { TeacherForcedRequest.Group(prompt: $0, continuations: cs, continuationSteering: ss) }
            XCTAssertNotNil(LanguageModel.CommonHeads(groups))
            let alone = try groups.map { try model.teacherForced(TeacherForcedRequest(groups: [$0], reuse: .sharedPrompt, reduction: .sum))[0] }
            for shared in [false, true] {
                assertBitwise(try model.teacherForced(TeacherForcedRequest(groups: groups, reuse: .sharedPrompt, reduction: .sum, sharedLayers: shared)),
                              alone, "\(name) per-continuation steering, shared layers \(shared)")
            }
        }
        // No head: prompts that differ early, or a single group.
        XCTAssertNil(LanguageModel.CommonHeads([.init(prompt: [1, 2, 3, 4, 5, 6], continuations: [[7]]), .init(prompt: [1, 2, 9, 4, 5, 6], continuations: [[7]])]))
        XCTAssertNil(LanguageModel.CommonHeads([.init(prompt: [1, 2, 3, 4, 5, 6], continuations: [[7]])]))
    }

    /// The three reuses score the same tokens alike, and `.sum` is the sum of `.perToken`.
    func testReusesAgree() throws {
        let model = try loadTiny("tiny-llama31")
        let prompt = try fixturePrompts("tiny-llama31")[1]
        let conts = [[7], [9, 10, 11], [9, 10, 12], [200, 3]]
        let group = TeacherForcedRequest.Group(prompt: prompt, continuations: conts)
        let whole = try model.teacherForced(TeacherForcedRequest(groups: [group], reuse: .none))[0]
        let shared = try model.teacherForced(TeacherForcedRequest(groups: [group], reuse: .sharedPrompt))[0]
        let trie = try model.teacherForced(TeacherForcedRequest(groups: [group], reuse: .prefixTrie(head: nil), reduction: .sum))[0]
        for i in conts.indices {
            XCTAssertEqual(whole[i].count, conts[i].count)
            for t in conts[i].indices { XCTAssertEqual(whole[i][t], shared[i][t], accuracy: 1e-5 * max(1, abs(whole[i][t]))) }
            XCTAssertEqual(trie[i][0], whole[i].reduce(0, +), accuracy: 1e-5 * max(1, abs(trie[i][0])))
        }
        // Steering a prefix trie, or a continuation of a shared prompt at every position, is refused.
        let steered = SteeringSpec(.add(layer: 1, vector: unit(model.hiddenSize, seed: 1), coef: 2))
        XCTAssertThrowsError(try model.teacherForced(TeacherForcedRequest(
            groups: [.init(prompt: prompt, continuations: conts, steering: steered)], reuse: .prefixTrie(head: nil))))
        XCTAssertThrowsError(try model.teacherForced(TeacherForcedRequest(
            groups: [.init(prompt: prompt, continuations: [[7]], continuationSteering: [steered])], reuse: .sharedPrompt))) {
            XCTAssertTrue("\($0)".contains("shared prompt"), "\($0)")
        }
    }
}
