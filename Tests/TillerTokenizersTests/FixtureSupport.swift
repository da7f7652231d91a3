import Foundation
import XCTest
import TillerFormats
@testable import TillerTokenizers

/// The committed fixtures written by tools/reference/tokenizer_fixtures.py.
enum Fixtures {
    static let directory: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    static func json(_ name: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url(name)), options: [.fragmentsAllowed])
    }

    static func object(_ name: String) throws -> [String: Any] {
        guard let o = try json(name) as? [String: Any] else { throw TokenizerError("\(name): not an object") }
        return o
    }
}

/// The default models in the cache ($TILLER_HOME/models, default ~/.cache/tiller/models).
enum CachedModels {
    static var home: String {
        ProcessInfo.processInfo.environment["TILLER_HOME"] ?? (NSHomeDirectory() + "/.cache/tiller")
    }
    static let smolLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
    static let gemma3 = "gemma-3-270m-q4_k_m.gguf"

    private static let lock = NSLock()
    nonisolated(unsafe) private static var loaded: [String: BPETokenizer] = [:]

    /// The tokenizer of a cached model; a missing model is a failure that says how to install it.
    static func tokenizer(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> BPETokenizer {
        lock.lock(); defer { lock.unlock() }
        if let t = loaded[name] { return t }
        let path = home + "/models/" + name
        guard FileManager.default.fileExists(atPath: path) else {
            XCTFail("\(path) is missing: run scripts/setup.sh to download the default models", file: file, line: line)
            throw TokenizerError("missing model \(path)")
        }
        let t = try loadBPETokenizer(gguf: GGUFFile(path: path))
        loaded[name] = t
        return t
    }
}

struct EncodeCase {
    let text: String
    let ids: [Int]
    let idsNoSpecial: [Int]
    let tokens: [String]
    let decoded: String
    let decodedSkipSpecial: String

    init(_ d: [String: Any]) {
        text = d["text"] as! String
        ids = d["ids"] as! [Int]
        idsNoSpecial = d["ids_no_special"] as! [Int]
        tokens = d["tokens"] as! [String]
        decoded = d["decoded"] as! String
        decodedSkipSpecial = d["decoded_skip_special"] as! String
    }

    static func all(_ fixture: [String: Any]) -> [EncodeCase] {
        (fixture["cases"] as! [[String: Any]]).map(EncodeCase.init)
    }
}

func chatMessages(_ value: Any?) -> [ChatMessage] {
    (value as! [[String: Any]]).map { ChatMessage(role: $0["role"] as! String, content: $0["content"] as! String) }
}

/// Checks encode (with and without special tokens), token strings and decode against a fixture case.
func checkCase(_ tok: Tokenizer, _ c: EncodeCase, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    let ids = tok.encode(c.text, addSpecialTokens: true)
    XCTAssertEqual(ids, c.ids, "\(label): ids for \(c.text.debugDescription)", file: file, line: line)
    XCTAssertEqual(tok.encode(c.text, addSpecialTokens: false), c.idsNoSpecial,
                   "\(label): ids without special tokens for \(c.text.debugDescription)", file: file, line: line)
    XCTAssertEqual(c.ids.map(tok.token), c.tokens, "\(label): tokens for \(c.text.debugDescription)", file: file, line: line)
    XCTAssertEqual(tok.decode(c.ids, skipSpecialTokens: false), c.decoded, "\(label): decode of \(c.text.debugDescription)", file: file, line: line)
    XCTAssertEqual(tok.decode(c.ids, skipSpecialTokens: true), c.decodedSkipSpecial,
                   "\(label): decode(skip special) of \(c.text.debugDescription)", file: file, line: line)
}
