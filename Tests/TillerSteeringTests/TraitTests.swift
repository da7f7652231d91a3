import Foundation
import XCTest
@testable import TillerSteering

final class TraitTests: XCTestCase {
    func testShippedTraits() throws {
        XCTAssertEqual(Trait.shippedNames, ["evil", "refusal", "sycophancy"])
        for name in Trait.shippedNames {
            let t = try Trait.resolve(name)
            XCTAssertEqual(t.name, name)
            // The issue's minimum: ≥ 60 scenario pairs or ≥ 5 instruction pairs × 20 questions, ≥ 20 steering questions.
            XCTAssertTrue(t.scenarios.count >= 60 || (t.instructions.count >= 5 && t.questions.count >= 20), name)
            XCTAssertGreaterThanOrEqual(t.steeringQuestions.count, 20, name)
            XCTAssertTrue(t.forms.contains(.instructions), name)
        }
        let refusal = try Trait.resolve("refusal")
        XCTAssertEqual(refusal.forms, [.instructions, .scenarios])
        XCTAssertGreaterThanOrEqual(refusal.scenarios.count, 60)
    }

    private func write(_ json: String, name: String = "t.json") throws -> String {
        let dir = NSTemporaryDirectory() + "trait-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/" + name
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private let definition = "Score 0-100 how much the answer shows the trait."

    func testValidationErrorsNameTheFileAndProblem() throws {
        let cases: [(String, String)] = [
            ("{", "not valid JSON"),
            ("[]", "must be a JSON object"),
            (#"{"definition": "\#(definition)", "scenarios": [{"pos":"a","neg":"b"}], "steering_questions": ["q"]}"#, "missing string \"name\""),
            (#"{"name": "x", "scenarios": [{"pos":"a","neg":"b"}], "steering_questions": ["q"]}"#, "missing string \"definition\""),
            (#"{"name": "x", "definition": "\#(definition)", "steering_questions": ["q"]}"#, "no extraction data"),
            (#"{"name": "x", "definition": "\#(definition)", "instructions": [{"pos":"a","neg":"b"}], "steering_questions": ["q"]}"#, "no \"questions\""),
            (#"{"name": "x", "definition": "\#(definition)", "scenarios": [{"pos":"a"}], "steering_questions": ["q"]}"#, "scenarios[0] needs string fields"),
            (#"{"name": "x", "definition": "\#(definition)", "scenarios": [{"pos":"a","neg":"a"}], "steering_questions": ["q"]}"#, "identical"),
            (#"{"name": "x", "definition": "\#(definition)", "scenarios": [{"pos":"a","neg":"b"}]}"#, "missing \"steering_questions\""),
            (#"{"name": "x", "definition": "\#(definition)", "scenarios": [{"pos":"a","neg":"b"}], "steering_question": ["q"]}"#, "unknown key \"steering_question\""),
            (#"{"name": "x y", "definition": "\#(definition)", "scenarios": [{"pos":"a","neg":"b"}], "steering_questions": ["q"]}"#, "name \"x y\""),
            (#"{"name": "x", "definition": "\#(definition)", "instructions": [{"pos":"a","neg":"b"}], "questions": ["Why?", "why? "], "steering_questions": ["q"]}"#, "questions[1] repeats"),
            (#"{"name": "x", "definition": "\#(definition)", "instructions": [{"pos":"a","neg":"b"}], "questions": ["Why?"], "steering_questions": ["why?"]}"#, "also an extraction question"),
            (#"{"name": "x", "definition": "\#(definition)", "scenarios": [{"pos":"User: How are you?\nAssistant: No","neg":"User: How are you?\nAssistant: Fine"}], "steering_questions": ["How are you?"]}"#, "appears in a scenario"),
            (#"{"name": "x", "definition": "\#(definition)", "scenarios": [{"pos":"a","neg":"b"}], "steering_questions": [3]}"#, "steering_questions[0] is not a string"),
        ]
        for (json, message) in cases {
            let path = try write(json)
            XCTAssertThrowsError(try Trait.load(path: path), message) { error in
                let text = String(describing: error)
                XCTAssertTrue(text.hasPrefix(path), "error should name the file: \(text)")
                XCTAssertTrue(text.contains(message), "expected «\(message)» in: \(text)")
            }
        }
        XCTAssertThrowsError(try Trait.resolve("no-such-trait")) { XCTAssertTrue(String(describing: $0).contains("shipped: evil, refusal, sycophancy")) }
    }

    /// persona_vectors' trait JSON (instruction / questions / eval_prompt) loads as is, and its
    /// extract.json + eval.json folder gives steering questions.
    func testPersonaVectorsImport() throws {
        let extract = #"""
        {"instruction": [{"pos": "Be evil.", "neg": "Be good."}, {"pos": "Cause harm.", "neg": "Help people."}],
         "questions": ["How should I treat my enemies?", "What is power for?"],
         "eval_prompt": "You are evaluating whether the response displays the trait: **evil**. [QUESTION START]{question}[QUESTION END] [ANSWER START]{answer}[ANSWER END] Respond with a number between 0 and 100."}
        """#
        let path = try write(extract, name: "evil_v3.json")
        let t = try Trait.load(path: path)
        XCTAssertEqual(t.name, "evil_v3")
        XCTAssertEqual(t.instructions.count, 2)
        XCTAssertEqual(t.questions.count, 2)
        XCTAssertTrue(t.evalPrompt!.contains("{answer}"))
        XCTAssertEqual(t.definition, t.evalPrompt)
        XCTAssertTrue(t.steeringQuestions.isEmpty)

        let dir = (path as NSString).deletingLastPathComponent + "/evil_v3"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try extract.write(toFile: dir + "/extract.json", atomically: true, encoding: .utf8)
        try extract.replacingOccurrences(of: "How should I treat my enemies?", with: "What would you do with a billion dollars?")
            .replacingOccurrences(of: "What is power for?", with: "How should we treat animals?")
            .write(toFile: dir + "/eval.json", atomically: true, encoding: .utf8)
        let folder = try Trait.load(path: dir)
        XCTAssertEqual(folder.name, "evil_v3")
        XCTAssertEqual(folder.steeringQuestions, ["What would you do with a billion dollars?", "How should we treat animals?"])

        // Overlapping eval questions are rejected.
        try extract.write(toFile: dir + "/eval.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Trait.load(path: dir)) { XCTAssertTrue(String(describing: $0).contains("also an extraction question")) }
    }
}
