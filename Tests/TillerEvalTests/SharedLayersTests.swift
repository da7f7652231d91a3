import Foundation
import XCTest
import TillerModels
import TillerSteering
import TillerTestSupport
@testable import TillerEval

/// The shared layer prefix on SmolLM2 as the demo's metrics unit uses it (8 configurations, the
/// baseline among them, at L8 and L10): log-odds, A/B and perplexity are the unshared path's
/// bits (the paths step the same rows in different groupings: see the determinism rule in
/// TeacherForcing.swift); the times of both paths are printed (alternating, two rounds).
final class SharedLayersTests: XCTestCase {
    func testMetricsUnitSharedEqualsUnshared() throws {
        let model = try SharedModels.shared.get(smolFile, name: "smollm2-135m-instruct")
        let refs = Array(try Trait.resolve("refusal").referenceAnswers.prefix(12))
        let neutral = Array(try PromptFile.shippedNeutral().prefix(8))
        var rng = StatsRNG(seed: 5)
        func unit() -> [Float] {
            var v = (0..<model.hiddenSize).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53) - 0.5) }
            let n = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            v = v.map { $0 / n }
            return v
        }
        var edits: [SteeringEdit?] = [nil]
        for i in 1..<8 {
            let layer = i % 2 == 0 ? 8 : 10
            edits.append(SteeringEdit.add(layer: layer, vector: unit(), coef: Float(4 * i)))
        }
        for positions in [SteeringPositions.all, .response] {
            let tf = try TeacherForcedEvaluator(model: model, references: refs, abItems: ABItem.fromReferences(refs, seed: 0),
                                                neutralTexts: neutral, positions: positions)
            var times: [Bool: [Double]] = [false: [], true: []]
            var results: [Bool: [[[Double]]]] = [:]
            for round in 0..<2 {
                for shared in [false, true] {
                    tf.sharedPrefix = shared
                    let t = Date()
                    let r = [try tf.logOdds(edits), try tf.ab(edits), try tf.meanNLL(edits)]
                    times[shared]!.append(Date().timeIntervalSince(t))
                    if round == 0 { results[shared] = r } else { XCTAssertEqual(results[shared]!, r, "reproducible") }
                }
            }
            let off = results[false]!, on = results[true]!
            for (m, name) in ["logodds", "ab", "perplexity"].enumerated() {
                var differ: [String] = []
                for c in edits.indices {
                    for i in off[m][c].indices where off[m][c][i] != on[m][c][i] {
                        differ.append("configuration \(c) item \(i): \(off[m][c][i]) vs \(on[m][c][i])")
                    }
                }
                XCTAssertTrue(differ.isEmpty, "\(positions) \(name): \(differ.count) values differ, e.g. \(differ.prefix(3).joined(separator: "; "))")
                XCTAssertNotEqual(off[m][1], off[m][0], "\(name): steering changed nothing")
            }
            var worst = 0.0
            for m in off.indices {
                for c in off[m].indices {
                    for i in off[m][c].indices { worst = max(worst, abs(off[m][c][i] - on[m][c][i]) / max(abs(off[m][c][i]), 1e-3)) }
                }
            }
            print(String(format: "shared layers, steering at %@: unshared %.2f / %.2f s, shared %.2f / %.2f s (ratio %.2f), worst relative difference %.1e",
                         positions.rawValue, times[false]![0], times[false]![1], times[true]![0], times[true]![1],
                         (times[false]![0] + times[false]![1]) / (times[true]![0] + times[true]![1]), worst))
        }
    }
}
