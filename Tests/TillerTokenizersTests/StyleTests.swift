import Foundation
import XCTest
@testable import TillerTokenizers

/// Small tokenizer.json files in the shapes of Llama 3, Qwen2, Gemma 2 and Llama 2, against transformers.
final class TokenizerJSONStyleTests: XCTestCase {
    func check(_ style: String) throws {
        let tok = try loadBPETokenizer(directory: Fixtures.url("styles/\(style)").path)
        let expected = try Fixtures.object("styles/\(style).expected.json")
        for c in EncodeCase.all(expected) { checkCase(tok, c, style) }
        for chat in expected["chats"] as! [[String: Any]] {
            let messages = chatMessages(chat["messages"])
            let gen = chat["add_generation_prompt"] as! Bool
            if let error = chat["error"] as? String {
                XCTAssertThrowsError(try renderChat(tok, messages: messages, addGenerationPrompt: gen)) {
                    XCTAssertEqual(String(describing: $0), error)
                }
                continue
            }
            let rendered = try renderChat(tok, messages: messages, addGenerationPrompt: gen)
            XCTAssertEqual(rendered, chat["rendered"] as? String, "\(style): rendered chat")
            XCTAssertEqual(tok.encode(rendered, addSpecialTokens: false), chat["ids"] as? [Int], "\(style): chat ids")
        }
    }

    func testLlama3Style() throws { try check("llama3") }
    func testQwen2Style() throws { try check("qwen2") }
    func testGemma2Style() throws { try check("gemma2") }
    func testLlama2MetaspaceStyle() throws { try check("llama2") }

    func testErrorsNameTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tiller-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("tokenizer.json")
        try #"{"model": {"type": "Unigram", "vocab": []}}"#.write(to: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try loadTokenizer(directory: dir.path)) {
            XCTAssertTrue(String(describing: $0).contains(path.path), "\($0)")
            XCTAssertTrue(String(describing: $0).contains("Unigram"), "\($0)")
        }
        try "{not json".write(to: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try loadTokenizer(directory: dir.path)) {
            XCTAssertTrue(String(describing: $0).contains("not valid JSON"), "\($0)")
        }
    }
}

/// The hand-written split scanners against the regexes as `tokenizers` runs them.
final class SplitScannerTests: XCTestCase {
    func testScannersSplitLikeTheRegexes() throws {
        let corpus = try Fixtures.json("corpus.json") as! [String]
        let splits = try Fixtures.object("splits.json")
        for (name, scanner) in [("gpt2", KnownSplitPattern.gpt2), ("llama3", .llama3), ("qwen2", .qwen2)] {
            let entry = splits[name] as! [String: Any]
            XCTAssertEqual(KnownSplitPattern(pattern: entry["pattern"] as! String).map { "\($0)" }, "\(scanner)",
                           "the fixture's \(name) regex is recognised")
            let expected = entry["splits"] as! [[String]]
            for (text, want) in zip(corpus, expected) {
                let scalars = text.unicodeScalars.map(\.value)
                let got = scanner.matches(scalars).map { String(String.UnicodeScalarView(scalars[$0].map { Unicode.Scalar($0)! })) }
                XCTAssertEqual(got, want, "\(name) on \(text.debugDescription)")
            }
        }
    }

    func testCharacterClassesMatchOniguruma() throws {
        let classes = try Fixtures.object("charclasses.json")
        for (name, cls) in [("L", CharClass.letter), ("N", .number), ("s", .whitespace)] {
            var inClass = Set<UInt32>()
            for r in classes[name] as! [[Int]] { for v in r[0]...r[1] { inClass.insert(UInt32(v)) } }
            var mismatches: [String] = []
            for v in UInt32(1)..<0x110000 where !(0xD800...0xDFFF).contains(v) {
                if (UnicodeClasses.of(v) == cls) != inClass.contains(v) {
                    mismatches.append(String(format: "U+%04X", v))
                }
            }
            XCTAssertTrue(mismatches.isEmpty, "\\p{\(name)}: \(mismatches.count) code points differ, e.g. \(mismatches.prefix(20))")
        }
    }
}
