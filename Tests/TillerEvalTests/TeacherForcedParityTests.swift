import Foundation
import XCTest
import TillerModels
import TillerTestSupport
@testable import TillerEval

/// Teacher-forced log-probabilities of reference answers under steering, on SmolLM2-135M-Instruct,
/// against transformers (Fixtures/logodds_smollm2.json, from tools/reference/logodds_reference.py):
/// `.add` at resid_post.10 with coefficients 0 and ±16 on a random unit vector, `.response` and `.all`.
final class TeacherForcedParityTests: XCTestCase {
    struct Reference: Decodable {
        struct Result: Decodable {
            let coef: Double
            let positions: String
            let pos_logprobs: [Double]
            let neg_logprobs: [Double]
            let pos_sum: Double
            let neg_sum: Double
            let logodds: Double
        }
        struct Item: Decodable {
            let question: String
            let prompt_ids: [Int]
            let pos_ids: [Int]
            let neg_ids: [Int]
            let results: [Result]
        }
        let model: String
        let layer: Int
        let hidden: Int
        /// Exact float32 values, written as doubles.
        let vector: [Double]
        let coefs: [Double]
        let positions: [String]
        let items: [Item]
    }

    func testSteeredLogProbsMatchTransformers() throws {
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("logodds_smollm2.json"))))
        XCTAssertEqual(ref.model, smolFile)
        let model = try SharedModels.shared.get(smolFile, name: "smollm2-135m-instruct")
        XCTAssertEqual(model.hiddenSize, ref.hidden)
        XCTAssertEqual(ref.vector.count, ref.hidden)
        let vector = ref.vector.map { Float($0) }

        // Every (item, coef, positions) × (pos, neg) as one ragged batch.
        var items: [TeacherForcedRequest.Group] = []
        var cases: [(item: Reference.Item, result: Reference.Result)] = []
        for item in ref.items {
            XCTAssertEqual(item.results.count, ref.coefs.count * ref.positions.count, item.question)
            for r in item.results {
                let positions = try XCTUnwrap(SteeringPositions(rawValue: r.positions), r.positions)
                let spec: SteeringSpec? = r.coef == 0 ? nil
                    : SteeringSpec(.add(layer: ref.layer, vector: vector, coef: Float(r.coef), positions: positions))
                items.append(.init(prompt: item.prompt_ids, continuations: [item.pos_ids], steering: spec))
                items.append(.init(prompt: item.prompt_ids, continuations: [item.neg_ids], steering: spec))
                cases.append((item, r))
            }
        }
        let out = try model.teacherForced(TeacherForcedRequest(groups: items, reuse: .none)).map { $0[0] }
        XCTAssertEqual(out.count, items.count)
        guard out.count == items.count else { return }

        var worstToken = 0.0, worstToken_at = ""
        var worstSum = 0.0
        var worstLogOdds = 0.0, worstLogOdds_at = ""
        for (k, c) in cases.enumerated() {
            let label = "\(c.item.question) coef \(c.result.coef) \(c.result.positions)"
            let pos = out[2 * k], neg = out[2 * k + 1]
            XCTAssertEqual(pos.count, c.result.pos_logprobs.count, label)
            XCTAssertEqual(neg.count, c.result.neg_logprobs.count, label)
            for (which, got, want) in [("pos", pos, c.result.pos_logprobs), ("neg", neg, c.result.neg_logprobs)] {
                for (t, (a, b)) in zip(got, want).enumerated() {
                    let d = abs(a - b)
                    if d > worstToken { worstToken = d; worstToken_at = "\(label) \(which)[\(t)]" }
                    XCTAssertEqual(a, b, accuracy: 2e-3, "\(label) \(which) token \(t)")
                }
            }
            let sumPos = pos.reduce(0, +), sumNeg = neg.reduce(0, +)
            worstSum = max(worstSum, abs(sumPos - c.result.pos_sum), abs(sumNeg - c.result.neg_sum))
            let logodds = sumPos - sumNeg
            let d = abs(logodds - c.result.logodds)
            if d > worstLogOdds { worstLogOdds = d; worstLogOdds_at = label }
            XCTAssertEqual(logodds, c.result.logodds, accuracy: 1e-3, "\(label) logodds")
        }
        print(String(format: "teacher-forced parity (%d sequences): max |Δ logprob| %.2e (%@), max |Δ sum| %.2e, max |Δ logodds| %.2e (%@)",
                     items.count, worstToken, worstToken_at, worstSum, worstLogOdds, worstLogOdds_at))

        // The steering must matter at these coefficients (else the parity above proves little).
        for item in ref.items {
            let base = item.results.first(where: { $0.coef == 0 })!.logodds
            let moved = item.results.map { abs($0.logodds - base) }.max()!
            XCTAssertGreaterThan(moved, 0.1, "\(item.question): steering barely moves the reference logodds")
        }
    }
}
