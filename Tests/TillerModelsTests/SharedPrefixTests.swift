import Foundation
import XCTest
@testable import TillerModels

/// Candidates reading the prompt's keys/values in place (`KVCache.child`), sharing their common
/// prefixes (a trie of `KVCache.sibling`s), give the numbers of a plain forward over the whole text.
final class SharedPrefixTests: XCTestCase {
    /// Expected log-probabilities from one full forward per continuation.
    func reference(_ model: LanguageModel, _ prompt: [Int], _ conts: [[Int]]) throws -> [Double] {
        try conts.map { c in
            guard !c.isEmpty else { return 0 }
            let full = try model.forward([prompt + c], logits: .all)
            var want = 0.0
            for (j, t) in c.enumerated() { want += logSoftmax(full.logits(sequence: 0, row: prompt.count - 1 + j), at: t) }
            return want
        }
    }

    /// Log-probability sums agree to fp32 noise: a candidate computed apart from its prompt rounds
    /// its sgemm rows differently, which tiny-gemma2 (norm scales ≈2, softcaps) amplifies to ~2e-5
    /// relative even for a one-token candidate (as in BatchingSteeringTests); a wrong mask or position moves them by more than 1e-2.
    func close(_ x: Double, _ y: Double, _ name: String, line: UInt = #line) {
        let tolerance = name == "tiny-gemma2" ? 5e-5 : 2e-6
        XCTAssertLessThanOrEqual(abs(x - y), tolerance * max(1, abs(y)), "\(name): \(x) vs \(y)", line: line)
    }

    func testChildrenMatchForwardAndAreReproducible() throws {
        // tiny-gemma2 has a 4-token sliding window on alternate layers: windows that straddle the
        // parent/child split are covered.
        for name in ["tiny-llama31", "tiny-qwen2", "tiny-gemma2", "tiny-gemma3"] {
            let model = try loadTiny(name)
            let f = try FixtureFile(Fixtures.path("\(name).expected.safetensors"))
            let base = try f.ints("tokens.2")
            XCTAssertGreaterThan(base.count, 8, name)
            // Shared prefixes ([9, 10] of [9, 10, 11] and [9, 10, 12]; [5, 6, 7] of two more) run once.
            let conts = [[7], [9, 10, 11], [], [200, 3], [5, 6, 7, 8, 9, 10], [9, 10], [9, 10, 12], [9, 4], [5, 6, 7, 2], [9]]
            let a = try model.teacherForced(TeacherForcedRequest(groups: [.init(prompt: base, continuations: conts)], reuse: .prefixTrie(head: nil), reduction: .sum))[0].map { $0[0] }
            for (x, y) in zip(a, try reference(model, base, conts)) { close(x, y, name) }
            // A score depends on its prompt and candidates only, never on what was scored before.
            let other = Array(base.dropLast(2)) + [17, 23]
            _ = try model.teacherForced(TeacherForcedRequest(groups: [.init(prompt: other, continuations: conts)], reuse: .prefixTrie(head: nil), reduction: .sum))[0].map { $0[0] }
            XCTAssertEqual(try model.teacherForced(TeacherForcedRequest(groups: [.init(prompt: base, continuations: conts)], reuse: .prefixTrie(head: nil), reduction: .sum))[0].map { $0[0] }, a, "\(name): bitwise reproducible")
        }
    }

    func testForkOfChildAndChildOfChild() throws {
        let model = try loadTiny("tiny-gemma2")
        let t = model.transformer
        let prompt = try FixtureFile(Fixtures.path("tiny-gemma2.expected.safetensors")).ints("tokens.2")
        let tail = [11, 12, 13, 14, 15]
        let ws = Workspace(t)
        func lastLogits(_ cache: KVCache, _ tokens: [Int], promptLength: Int) -> [Float] {
            model.run([LanguageModel.SequenceInput(cache: cache, tokens: tokens, promptLength: promptLength, sequence: 0)],
                      plan: nil, logits: .last, ws: ws)[0]
        }
        let parent = t.makeCache(capacity: 4)
        _ = lastLogits(parent, prompt, promptLength: prompt.count)
        let child = parent.child()
        XCTAssertTrue(child.parent === parent)
        XCTAssertEqual(child.base, prompt.count)
        _ = lastLogits(child, Array(tail.prefix(3)), promptLength: prompt.count)
        // Growing past the child's first allocation keeps its positions.
        let grandchild = child.child(extra: 1)
        XCTAssertNil(grandchild.parent, "a child of a child is flattened into its own copy")
        let viaFork = lastLogits(child.fork(), Array(tail.suffix(2)), promptLength: prompt.count)
        let viaGrandchild = lastLogits(grandchild, Array(tail.suffix(2)), promptLength: prompt.count)
        let viaChild = lastLogits(child, Array(tail.suffix(2)), promptLength: prompt.count)
        let want = try model.forward([prompt + tail]).logits[0]
        // tiny-gemma2's fp32 noise bound, as in BatchingSteeringTests.
        XCTAssertLessThanOrEqual(relativeError(viaFork, want), 1e-4)
        XCTAssertLessThanOrEqual(relativeError(viaGrandchild, want), 1e-4)
        XCTAssertLessThanOrEqual(relativeError(viaChild, want), 1e-4)
        XCTAssertEqual(child.length, prompt.count + tail.count)
        child.truncate(to: 0)
        XCTAssertEqual(child.length, prompt.count, "a child never forgets its parent's positions")
    }
}
