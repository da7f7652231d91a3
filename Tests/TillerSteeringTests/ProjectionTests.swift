import Foundation
import TillerFormats
import TillerModels
import TillerTokenizers
import XCTest
@testable import TillerSteering

/// `tiller project`'s projections on SmolLM2-135M-Instruct against transformers
/// (Fixtures/projection_smollm2.json, from tools/reference/projection_reference.py), and the data
/// file's parsing and errors.
final class ProjectionTests: XCTestCase {
    struct Reference: Decodable {
        struct Row: Decodable {
            let prompt: String
            let response: String?
            let prompt_ids: [Int]
            let response_ids: [Int]
            let projections: [String: Double]
        }
        let layers: [Int]
        let hidden: Int
        let vector: [Double]
        let rows: [Row]
    }

    func testProjectionsMatchTransformers() throws {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("projection_smollm2.json")
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        let lm = try ExtractionModelTests.smolLM()
        let tokenizer = try XCTUnwrap(lm.tokenizer)
        let inputs = ref.rows.map { ProjectionInput(user: $0.prompt, response: $0.response) }
        let tokens = try inputs.map { try Projection.tokens($0, tokenizer: tokenizer) }
        for (t, r) in zip(tokens, ref.rows) {
            XCTAssertEqual(t.prompt, r.prompt_ids, "prompt of \(r.prompt)")
            XCTAssertEqual(t.response, r.response_ids, "response of \(r.prompt)")
        }
        let vector = ref.vector.map { Float($0) }
        var worst = 0.0
        for layer in ref.layers {
            // Batch size 4 mixes both position kinds across batches.
            let got = try Projection.project(model: lm, vector: vector, layer: layer, rows: tokens, batchSize: 4)
            for (g, r) in zip(got, ref.rows) {
                let want = try XCTUnwrap(r.projections[String(layer)])
                XCTAssertEqual(g.position, r.response == nil ? .promptLast : .responseMean)
                // fp32 through 30 layers of a dequantised model: agree to 1e-3 of the value's scale.
                let err = abs(g.value - want) / max(1, abs(want))
                worst = max(worst, err)
                XCTAssertLessThan(err, 1e-3, "layer \(layer), \(r.prompt) / \(r.response ?? "-"): \(g.value) vs \(want)")
            }
        }
        print("projection parity: worst relative error \(worst)")
        XCTAssertThrowsError(try Projection.project(model: lm, vector: Array(vector.dropLast()), layer: 5, rows: tokens)) {
            XCTAssertTrue("\($0)".contains("hidden size"), "\($0)")
        }
        XCTAssertThrowsError(try Projection.project(model: lm, vector: vector, layer: 99, rows: tokens)) {
            XCTAssertTrue("\($0)".contains("layer 99"), "\($0)")
        }
    }

    func testDataRowsParseAndErrorsNameTheLine() throws {
        let dir = NSTemporaryDirectory() + "tiller-proj-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ text: String) throws -> String {
            let p = dir + "/data-\(UUID().uuidString).jsonl"
            try text.write(toFile: p, atomically: true, encoding: .utf8)
            return p
        }
        let good = try write("""
        {"prompt": "Hi", "response": "Hello", "label": true, "id": "a"}

        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}], "label": 0}
        {"prompt": "Only a prompt", "system": "S"}
        """)
        let rows = try Projection.readData(path: good)
        XCTAssertEqual(rows.count, 3)
        XCTAssertEqual(rows[0].user, "Hi"); XCTAssertEqual(rows[0].response, "Hello"); XCTAssertEqual(rows[0].label, true)
        XCTAssertEqual(rows[0].fields["id"]?.value as? String, "a")
        XCTAssertEqual(rows[1].system, "Be brief.")
        XCTAssertEqual(rows[1].turns, [PromptFormat.Turn(user: "Q1", assistant: "A1")])
        XCTAssertEqual(rows[1].user, "Q2"); XCTAssertEqual(rows[1].response, "A2"); XCTAssertEqual(rows[1].label, false)
        XCTAssertEqual(rows[2].system, "S"); XCTAssertNil(rows[2].response); XCTAssertNil(rows[2].label)

        let cases: [(String, String)] = [
            ("{\"prompt\": \"a\"}\nnot json\n", ":2: not a JSON object"),
            ("{\"response\": \"a\"}\n", ":1: needs \"prompt\""),
            ("{\"prompt\": \"a\", \"label\": \"yes\"}\n", "\"label\" must be true/false or 1/0"),
            ("{\"prompt\": 3}\n", "\"prompt\" must be a string"),
            ("{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}]}\n", "must alternate"),
            ("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"prompt\": \"y\"}\n", "not both"),
            ("\n\n", "no rows"),
        ]
        for (text, expected) in cases {
            let p = try write(text)
            XCTAssertThrowsError(try Projection.readData(path: p)) { error in
                XCTAssertTrue("\(error)".contains(p), "\(error)")
                XCTAssertTrue("\(error)".contains(expected), "\(error) should contain \(expected)")
            }
        }
    }
}
