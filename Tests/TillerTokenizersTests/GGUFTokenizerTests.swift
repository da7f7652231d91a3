import Foundation
import XCTest
import TillerFormats
@testable import TillerTokenizers

/// The two default models' tokenizers against transformers' `AutoTokenizer.from_pretrained(dir, gguf_file=...)`.
final class GGUFTokenizerTests: XCTestCase {
    func testSmolLM2MatchesTransformers() throws {
        let tok = try CachedModels.tokenizer(CachedModels.smolLM2)
        let fixture = try Fixtures.object("gguf-smollm2.json")
        XCTAssertEqual(tok.vocabSize, fixture["vocab_size"] as? Int)
        XCTAssertEqual(tok.bosTokenId, fixture["bos_token_id"] as? Int)
        XCTAssertEqual(tok.eosTokenIds.first, fixture["eos_token_id"] as? Int)
        XCTAssertEqual(tok.specialTokens["eos_token"], fixture["eos_token"] as? String)
        for c in EncodeCase.all(fixture) { checkCase(tok, c, "SmolLM2") }
    }

    func testGemma3MatchesTransformers() throws {
        let tok = try CachedModels.tokenizer(CachedModels.gemma3)
        let fixture = try Fixtures.object("gguf-gemma3.json")
        XCTAssertEqual(tok.vocabSize, fixture["vocab_size"] as? Int)
        XCTAssertEqual(tok.bosTokenId, fixture["bos_token_id"] as? Int)
        XCTAssertEqual(tok.eosTokenIds.first, fixture["eos_token_id"] as? Int)
        XCTAssertTrue(tok.eosTokenIds.contains(tok.tokenId("<end_of_turn>")!), "Gemma stops on <end_of_turn> too")
        for c in EncodeCase.all(fixture) { checkCase(tok, c, "Gemma 3") }
    }

    func testSmolLM2ChatMatchesApplyChatTemplate() throws {
        let tok = try CachedModels.tokenizer(CachedModels.smolLM2)
        let fixture = try Fixtures.object("gguf-smollm2.json")
        let chats = fixture["chats"] as! [[String: Any]]
        XCTAssertFalse(chats.isEmpty)
        for chat in chats {
            let messages = chatMessages(chat["messages"])
            let gen = chat["add_generation_prompt"] as! Bool
            let rendered = try renderChat(tok, messages: messages, addGenerationPrompt: gen)
            XCTAssertEqual(rendered, chat["rendered"] as? String)
            XCTAssertEqual(tok.encode(rendered, addSpecialTokens: false), chat["ids"] as? [Int],
                           "apply_chat_template ids for \(messages)")
        }
    }

    func testGemma3BaseModelHasNoChatTemplate() throws {
        let tok = try CachedModels.tokenizer(CachedModels.gemma3)
        XCTAssertNil(tok.chatTemplate)
        XCTAssertThrowsError(try renderChat(tok, messages: [ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true)) {
            XCTAssertEqual(String(describing: $0), "model has no chat template (base model): use plain text")
        }
    }

    func testStreamingDecodeEqualsFullDecode() throws {
        for name in [CachedModels.smolLM2, CachedModels.gemma3] {
            let tok = try CachedModels.tokenizer(name)
            for text in try Fixtures.json("corpus.json") as! [String] {
                let ids = tok.encode(text, addSpecialTokens: true)
                let stream = StreamingDecoder(tokenizer: tok)
                var out = ""
                for id in ids {
                    let piece = stream.push(id)
                    XCTAssertFalse(piece.unicodeScalars.contains("\u{FFFD}"), "\(name): a split character leaked for \(text.debugDescription)")
                    out += piece
                }
                out += stream.finish()
                XCTAssertEqual(out, tok.decode(ids, skipSpecialTokens: false), "\(name): streamed \(text.debugDescription)")
            }
        }
    }

    func testStreamingHoldsBackIncompleteUTF8() throws {
        let tok = try CachedModels.tokenizer(CachedModels.gemma3)
        // A rare character Gemma spells with byte-fallback tokens: nothing comes out until its last byte.
        let ids = tok.encode("𓀀", addSpecialTokens: false)
        XCTAssertEqual(ids.map(tok.token), ["<0xF0>", "<0x93>", "<0x80>", "<0x80>"])
        let stream = StreamingDecoder(tokenizer: tok)
        XCTAssertEqual(ids.dropLast().map(stream.push), ["", "", ""])
        XCTAssertEqual(stream.push(ids.last!), "𓀀")
        XCTAssertEqual(stream.finish(), "")
    }
}
