import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TillerFormats
import TillerModels
import TillerSteering
import TillerTokenizers
import XCTest
@testable import TillerServer

/// The routes beyond a single chat answer: text completions on a base model (Gemma 3 270M),
/// n > 1, the vector list and run-time loading, and several steering entries in one request.
/// Every answer is compared with the engine's own output for the same prompt, options and steering.
final class CompletionsTests: ServerTestCase {
    func generate(_ server: ChatServer, _ ids: [Int], _ options: GenerationOptions, steering: SteeringSpec? = nil) throws -> String {
        try server.model.generate([ids], options: options, steering: [steering])[0].text!
    }

    func choices(_ obj: [String: Any]) -> [[String: Any]] { obj["choices"] as? [[String: Any]] ?? [] }

    func test(_ obj: [String: Any], _ key: String) -> [Any] { choices(obj).map { $0[key] as Any } }

    /// The text of a text-completion choice, or of a chat choice.
    func choiceText(_ c: [String: Any]) -> String? {
        (c["text"] as? String) ?? (c["message"] as? [String: Any])?["content"] as? String
    }

    func writeVector(_ layers: [Int: [Float]], _ name: String, metadata: [String: String] = [:]) throws -> String {
        var w = SafetensorsWriter(metadata: metadata)
        for l in layers.keys.sorted() { try w.add("layer.\(l)", floats: layers[l]!, shape: [layers[l]!.count]) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("serve-test-\(name)-\(getpid()).safetensors").path
        try w.write(to: path)
        return path
    }

    func randomVector(_ seed: UInt64, _ count: Int = 576) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float(Double(rng.next() >> 11) * 0x1p-53 * 2 - 1) }
    }

    /// Choice index → its streamed text, and finish reasons; the payloads before [DONE].
    func streamed(_ data: Data, kind: String) throws -> (texts: [Int: String], finish: [Int: String], payloads: [[String: Any]]) {
        let events = String(decoding: data, as: UTF8.self).components(separatedBy: "\n\n").filter { !$0.isEmpty }
        XCTAssertEqual(events.last, "data: [DONE]")
        var texts: [Int: String] = [:], finish: [Int: String] = [:], payloads: [[String: Any]] = []
        for e in events.dropLast() {
            XCTAssertTrue(e.hasPrefix("data: "), e)
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(e.dropFirst(6).utf8)) as? [String: Any])
            payloads.append(o)
            XCTAssertEqual(o["object"] as? String, kind)
            for c in choices(o) {
                let i = try XCTUnwrap(c["index"] as? Int)
                let t = (c["text"] as? String) ?? (c["delta"] as? [String: Any])?["content"] as? String ?? ""
                texts[i, default: ""] += t
                if let f = c["finish_reason"] as? String { XCTAssertNil(finish[i], "one finish per choice"); finish[i] = f }
            }
        }
        return (texts, finish, payloads)
    }

    func send(_ base: URL, _ method: String, _ path: String, _ body: Any? = nil) async throws -> (Int, [String: Any]) {
        var req = URLRequest(url: base.appendingPathComponent(path))
        req.httpMethod = method
        if let body { req.httpBody = try JSONSerialization.data(withJSONObject: body) }
        let (data, resp) = try await Self.session.data(for: req)
        return ((resp as! HTTPURLResponse).statusCode, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
    }

    func testTextCompletionsOnABaseModelMatchTheEngine() async throws {
        let (server, base) = try makeServer(file: gemmaFile, name: "gemma-3-270m")
        defer { server.shutdown() }
        let tok = server.model.tokenizer!
        let prompts = ["The capital of France is", "Water boils at a temperature of"]
        let ids = prompts.map { tok.encode($0, addSpecialTokens: true) }
        let expected = try ids.map { try generate(server, $0, GenerationOptions(maxNewTokens: 12)) }
        XCTAssertNotEqual(expected[0], expected[1])

        // Two prompts, greedy: one choice each, in order, equal to the engine.
        let (s, obj, data) = try await post(base, ["model": "gemma-3-270m", "prompt": prompts, "max_tokens": 12, "temperature": 0], path: "/v1/completions")
        XCTAssertEqual(s, 200, String(decoding: data, as: UTF8.self))
        XCTAssertEqual(obj["object"] as? String, "text_completion")
        XCTAssertEqual(test(obj, "index") as? [Int], [0, 1])
        XCTAssertEqual(choices(obj).map(choiceText), expected)
        let usage = try XCTUnwrap(obj["usage"] as? [String: Any])
        XCTAssertEqual(usage["prompt_tokens"] as? Int, ids[0].count + ids[1].count)

        // Token ids are the same prompt as the text; the default budget is 16 tokens.
        let (_, byIds, _) = try await post(base, ["prompt": ids[0], "max_tokens": 12, "temperature": 0], path: "/v1/completions")
        XCTAssertEqual(choices(byIds).first.flatMap(choiceText), expected[0])
        let (_, dflt, _) = try await post(base, ["prompt": prompts[0], "temperature": 0], path: "/v1/completions")
        XCTAssertEqual(choices(dflt).first.flatMap(choiceText), try generate(server, ids[0], GenerationOptions(maxNewTokens: 16)))

        // n sampled answers: choice j samples with seed + j, as the engine does alone.
        let (_, sampled, _) = try await post(base, ["prompt": prompts[0], "max_tokens": 6, "temperature": 0.9, "seed": 11, "n": 3], path: "/v1/completions")
        let texts = choices(sampled).map(choiceText)
        XCTAssertEqual(texts.count, 3)
        for j in 0..<3 {
            XCTAssertEqual(texts[j], try generate(server, ids[0], GenerationOptions(maxNewTokens: 6, temperature: 0.9, seed: 11 + UInt64(j))), "choice \(j)")
        }
        XCTAssertGreaterThan(Set(texts.compactMap { $0 }).count, 1, "different seeds sample different answers")

        // Log-probabilities in the completions format: the tokens spell the text, offsets start after the prompt.
        let (_, lp, _) = try await post(base, ["prompt": prompts[0], "max_tokens": 8, "temperature": 0, "logprobs": 2], path: "/v1/completions")
        let lpc = try XCTUnwrap(choices(lp).first)
        let l = try XCTUnwrap(lpc["logprobs"] as? [String: Any])
        let tokens = try XCTUnwrap(l["tokens"] as? [String])
        let values = try XCTUnwrap(l["token_logprobs"] as? [Double])
        let offsets = try XCTUnwrap(l["text_offset"] as? [Int])
        let tops = try XCTUnwrap(l["top_logprobs"] as? [[String: Double]])
        XCTAssertEqual(tokens.count, (lp["usage"] as? [String: Any])?["completion_tokens"] as? Int)
        XCTAssertEqual([tokens.count, tokens.count, tokens.count], [values.count, offsets.count, tops.count])
        XCTAssertTrue(tokens.joined().hasPrefix(choiceText(lpc)!))
        XCTAssertEqual(offsets.first, prompts[0].unicodeScalars.count)
        XCTAssertEqual(offsets, offsets.sorted())
        for (t, v) in zip(tops, values) {
            XCTAssertEqual(t.count, 2)
            XCTAssertEqual(t.values.max()!, v, accuracy: 1e-9, "greedy: the chosen token is the most likely")
        }
        // The first token's log-probability is the model's.
        let row = try server.model.forward([ids[0]], logits: .last).logits[0]
        let m = Double(row.max()!)
        XCTAssertEqual(values[0], Double(row.max()!) - (m + log(row.reduce(0.0) { $0 + exp(Double($1) - m) })), accuracy: 1e-9)

        // Streaming: per choice, the deltas add up to the non-streamed text.
        var req = URLRequest(url: base.appendingPathComponent("/v1/completions"))
        req.httpMethod = "POST"
        req.httpBody = try JSONSerialization.data(withJSONObject: ["prompt": prompts, "max_tokens": 12, "temperature": 0, "stream": true,
                                                                   "stream_options": ["include_usage": true]])
        let (sdata, sresp) = try await Self.session.data(for: req)
        XCTAssertEqual((sresp as! HTTPURLResponse).value(forHTTPHeaderField: "Content-Type"), "text/event-stream")
        let st = try streamed(sdata, kind: "text_completion")
        XCTAssertEqual(st.texts[0], expected[0])
        XCTAssertEqual(st.texts[1], expected[1])
        XCTAssertEqual(st.finish.count, 2)
        XCTAssertEqual((st.payloads.last?["usage"] as? [String: Any])?["prompt_tokens"] as? Int, ids[0].count + ids[1].count)
        XCTAssertGreaterThan(st.payloads.count, 8, "events as tokens are sampled")

        // Errors name the field.
        func expect(_ body: [String: Any], _ fragment: String, line: UInt = #line) async throws {
            let (s, o, d) = try await post(base, body, path: "/v1/completions")
            XCTAssertEqual(s, 400, String(decoding: d, as: UTF8.self), line: line)
            XCTAssertTrue(((o["error"] as? [String: Any])?["message"] as? String ?? "").contains(fragment), "\(o)", line: line)
        }
        try await expect(["max_tokens": 4], "prompt is required")
        try await expect(["prompt": [1, "a"]], "prompt must be")
        try await expect(["prompt": [1, 999_999_999]], "token ids")
        try await expect(["prompt": "x", "echo": true, "suffix": "y"], "echo and suffix")
        try await expect(["prompt": "x", "max_tokens": 0], "0 only with echo")
        try await expect(["prompt": "x", "n": 3, "best_of": 2], "best_of (2) must be at least n (3)")
        try await expect(["prompt": "x", "best_of": 2, "stream": true], "best_of cannot be streamed")
        try await expect(["prompt": "x", "n": 0], "n must be")
        try await expect(["prompt": "x", "logprobs": 30], "logprobs")
        try await expect(["prompt": Array(repeating: "x", count: 9), "n": 2], "choices")
    }

    /// `echo` (the prompt, scored when logprobs are asked, as lm-evaluation-harness uses it),
    /// `best_of` (the best candidates by mean token log-probability) and `suffix` (FIM).
    func testEchoBestOfAndSuffixFollowTheEngine() async throws {
        let (server, base) = try makeServer(file: gemmaFile, name: "gemma-3-270m")
        defer { server.shutdown() }
        let tok = server.model.tokenizer!
        let prompt = "The capital of France is"
        let ids = tok.encode(prompt, addSpecialTokens: true)
        let expected = try generate(server, ids, GenerationOptions(maxNewTokens: 6))

        // echo alone: the prompt's text, then the answer.
        let (s0, plain, d0) = try await post(base, ["prompt": prompt, "max_tokens": 6, "temperature": 0, "echo": true], path: "/v1/completions")
        XCTAssertEqual(s0, 200, String(decoding: d0, as: UTF8.self))
        XCTAssertEqual(choices(plain).first.flatMap(choiceText), prompt + expected)

        // echo + logprobs + max_tokens 0: every prompt token scored; the first has none.
        let (s1, scored, d1) = try await post(base, ["prompt": prompt, "max_tokens": 0, "echo": true, "logprobs": 1], path: "/v1/completions")
        XCTAssertEqual(s1, 200, String(decoding: d1, as: UTF8.self))
        let c1 = try XCTUnwrap(choices(scored).first)
        XCTAssertEqual(choiceText(c1), prompt)
        XCTAssertEqual(c1["finish_reason"] as? String, "length")
        let l1 = try XCTUnwrap(c1["logprobs"] as? [String: Any])
        let values = try XCTUnwrap(l1["token_logprobs"] as? [Any])
        XCTAssertEqual(values.count, ids.count)
        XCTAssertTrue(values[0] is NSNull)
        XCTAssertTrue((l1["top_logprobs"] as? [Any])?.first is NSNull)
        let reference = try server.model.teacherForced(TeacherForcedRequest(groups: [.init(prompt: [ids[0]], continuations: [Array(ids.dropFirst())])], reuse: .none))[0][0]
        for (v, r) in zip(values.dropFirst(), reference) { XCTAssertEqual(try XCTUnwrap(v as? Double), r, accuracy: 1e-4) }
        let offsets = try XCTUnwrap(l1["text_offset"] as? [Int])
        XCTAssertEqual(offsets.first, 0)
        XCTAssertEqual(offsets, offsets.sorted())
        XCTAssertEqual((scored["usage"] as? [String: Any])?["completion_tokens"] as? Int, 0)

        // echo + logprobs + an answer: prompt tokens, then the answer's; streamed alike.
        let body: [String: Any] = ["prompt": prompt, "max_tokens": 6, "temperature": 0, "echo": true, "logprobs": 0]
        let (_, both, _) = try await post(base, body, path: "/v1/completions")
        let c2 = try XCTUnwrap(choices(both).first)
        XCTAssertEqual(choiceText(c2), prompt + expected)
        let tokens2 = try XCTUnwrap((c2["logprobs"] as? [String: Any])?["tokens"] as? [String])
        XCTAssertEqual(tokens2.count, ids.count + ((both["usage"] as? [String: Any])?["completion_tokens"] as? Int ?? -1))
        var req = URLRequest(url: base.appendingPathComponent("/v1/completions"))
        req.httpMethod = "POST"
        var sbody = body
        sbody["stream"] = true
        req.httpBody = try JSONSerialization.data(withJSONObject: sbody)
        let (sdata, _) = try await Self.session.data(for: req)
        let st = try streamed(sdata, kind: "text_completion")
        XCTAssertEqual(st.texts[0], prompt + expected)

        // best_of 4, n 1: the candidate with the highest mean token log-probability among the
        // four that n = 4 samples with the same seed (choice j uses seed + j).
        let sampling: [String: Any] = ["prompt": prompt, "max_tokens": 6, "temperature": 1.0, "seed": 21]
        var all = sampling
        all["n"] = 4
        all["logprobs"] = 0
        let (_, four, _) = try await post(base, all, path: "/v1/completions")
        let means = try choices(four).map { c -> Double in
            let v = try XCTUnwrap((c["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double])
            return v.reduce(0, +) / Double(v.count)
        }
        XCTAssertEqual(means.count, 4)
        let winner = means.indices.max { means[$0] < means[$1] || (means[$0] == means[$1] && $0 > $1) }!
        var bestOf = sampling
        bestOf["best_of"] = 4
        let (sb, picked, db) = try await post(base, bestOf, path: "/v1/completions")
        XCTAssertEqual(sb, 200, String(decoding: db, as: UTF8.self))
        XCTAssertEqual(choices(picked).count, 1)
        XCTAssertEqual(choices(picked).first.flatMap(choiceText), choices(four)[winner]["text"] as? String)
        XCTAssertTrue(choices(picked).first?["logprobs"] is NSNull, "ranked with logprobs, returned without them")
        XCTAssertEqual((picked["usage"] as? [String: Any])?["completion_tokens"] as? Int,
                       (four["usage"] as? [String: Any])?["completion_tokens"] as? Int, "every candidate counts")

        // suffix: fill-in-the-middle in the vocabulary's own tokens, or a 400 saying there are none.
        let fim = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"].allSatisfy { tok.encode($0, addSpecialTokens: false).count == 1 }
            || ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"].allSatisfy { tok.encode($0, addSpecialTokens: false).count == 1 }
        let (sg, og, _) = try await post(base, ["prompt": "def add(a, b):\n    return", "suffix": "\n\nprint(add(1, 2))", "max_tokens": 4], path: "/v1/completions")
        if !fim {
            XCTAssertEqual(sg, 400)
            XCTAssertTrue(((og["error"] as? [String: Any])?["message"] as? String ?? "").contains("fill-in-the-middle"), "\(og)")
        }
        let (smol, smolBase) = try makeServer()
        defer { smol.shutdown() }
        let (sf, of, _) = try await post(smolBase, ["prompt": "def add(a, b):\n    return", "suffix": "\n\nprint(add(1, 2))", "max_tokens": 4], path: "/v1/completions")
        XCTAssertEqual(sf, 400, "SmolLM2's vocabulary has no FIM tokens")
        XCTAssertTrue(((of["error"] as? [String: Any])?["message"] as? String ?? "").contains("smollm2-135m-instruct's vocabulary has none"), "\(of)")
    }

    /// suffix on a vocabulary with FIM tokens (Qwen2.5's spelling, added to the Qwen2-style
    /// fixture tokenizer): prefix, suffix, middle, each FIM marker one token.
    func testSuffixBuildsAFillInTheMiddlePromptFromTheVocabularysTokens() throws {
        let style = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TillerTokenizersTests/Fixtures/styles/qwen2")
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: style.appendingPathComponent("tokenizer.json"))) as? [String: Any])
        var model = try XCTUnwrap(json["model"] as? [String: Any])
        var vocab = try XCTUnwrap(model["vocab"] as? [String: Int])
        var added = try XCTUnwrap(json["added_tokens"] as? [[String: Any]])
        let names = ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]
        let first = vocab.count
        for (i, n) in names.enumerated() {
            vocab[n] = first + i
            added.append(["id": first + i, "content": n, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true])
        }
        model["vocab"] = vocab
        json["model"] = model
        json["added_tokens"] = added
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fim-tokenizer-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("tokenizer.json"))
        try FileManager.default.copyItem(at: style.appendingPathComponent("tokenizer_config.json"), to: dir.appendingPathComponent("tokenizer_config.json"))
        let tok = try loadTokenizer(directory: dir.path)
        let text = try ChatServer.fillInTheMiddle(tok, model: "fixture", prefix: "def f(x):", suffix: "return y")
        XCTAssertEqual(text, "<|fim_prefix|>def f(x):<|fim_suffix|>return y<|fim_middle|>")
        let ids = tok.encode(text, addSpecialTokens: true)
        let at = [first, first + 2, first + 1].map { ids.firstIndex(of: $0) }
        XCTAssertTrue(at.allSatisfy { $0 != nil }, "\(ids)")
        XCTAssertEqual(at.compactMap { $0 }, at.compactMap { $0 }.sorted(), "prefix, suffix, middle")
        XCTAssertEqual(ids.last, first + 1, "the answer follows <|fim_middle|>")
        // Without the tokens: the error names the model.
        let plain = try loadTokenizer(directory: style.path)
        XCTAssertThrowsError(try ChatServer.fillInTheMiddle(plain, model: "fixture", prefix: "a", suffix: "b")) { e in
            XCTAssertTrue(((e as? ServerError)?.message ?? "").contains("fixture's vocabulary has none"), "\(e)")
        }
    }

    func testNChoicesInChatEachEqualTheEngine() async throws {
        let (server, base) = try makeServer()
        defer { server.shutdown() }
        let q = "Write a sentence about the moon."
        let (s, obj, _) = try await post(base, chat(q, maxTokens: 10, extra: ["temperature": 0.9, "seed": 5, "n": 3]))
        XCTAssertEqual(s, 200)
        let texts = choices(obj).map(choiceText)
        XCTAssertEqual(test(obj, "index") as? [Int], [0, 1, 2])
        for j in 0..<3 {
            XCTAssertEqual(texts[j], try engine(server, q, GenerationOptions(maxNewTokens: 10, temperature: 0.9, seed: 5 + UInt64(j))), "choice \(j)")
        }
        XCTAssertGreaterThan(Set(texts.compactMap { $0 }).count, 1)
        XCTAssertEqual(((obj["tiller"] as? [String: Any])?["batch_size"] as? Int), 3, "the choices share the engine's steps")
        // Choice 0 is the n = 1 answer with the same seed.
        let (_, one, _) = try await post(base, chat(q, maxTokens: 10, extra: ["temperature": 0.9, "seed": 5]))
        XCTAssertEqual(content(one), texts[0])

        // Streamed, per index.
        var req = URLRequest(url: base.appendingPathComponent("/v1/chat/completions"))
        req.httpMethod = "POST"
        req.httpBody = try JSONSerialization.data(withJSONObject: chat(q, maxTokens: 10, extra: ["temperature": 0.9, "seed": 5, "n": 3, "stream": true]))
        let (data, _) = try await Self.session.data(for: req)
        let st = try streamed(data, kind: "chat.completion.chunk")
        XCTAssertEqual((0..<3).map { st.texts[$0] }, texts)
        XCTAssertEqual(st.finish.count, 3)
        let roles = st.payloads.flatMap(choices).filter { ($0["delta"] as? [String: Any])?["role"] as? String == "assistant" }
        XCTAssertEqual(roles.count, 3, "each choice opens with the assistant role")

        let (bad, err, _) = try await post(base, chat(q, extra: ["n": 17]))
        XCTAssertEqual(bad, 400)
        XCTAssertEqual((err["error"] as? [String: Any])?["param"] as? String, "n")
    }

    func testVectorsAreListedAndLoadedAtRunTime() async throws {
        let (server, base) = try makeServer()
        defer { server.shutdown() }
        let (s0, list0) = try await send(base, "GET", "/v1/vectors")
        XCTAssertEqual(s0, 200)
        let first = try XCTUnwrap((list0["data"] as? [[String: Any]])?.first)
        XCTAssertEqual(first["id"] as? String, "random")
        XCTAssertEqual(first["layers"] as? [Int], [10])
        XCTAssertEqual(first["hidden"] as? Int, 576)
        XCTAssertEqual(first["site"] as? String, "resid_post")
        let v10 = try SafetensorsFile(path: Self.vectorPath).floats("layer.10")
        let norm = sqrt(v10.reduce(0.0) { $0 + Double($1) * Double($1) })
        XCTAssertEqual(((first["norms"] as? [String: Any])?["10"] as? NSNumber)?.doubleValue ?? 0, norm, accuracy: 1e-9)

        let a5 = randomVector(21), a10 = randomVector(22)
        let path = try writeVector([5: a5, 10: a10], "two", metadata: ["trait": "test-trait", "method": "mean_diff", "positions": "response:5"])
        let (s1, e1) = try await send(base, "POST", "/v1/vectors", ["name": "two", "path": path])
        XCTAssertEqual(s1, 200, "\(e1)")
        XCTAssertEqual(e1["layers"] as? [Int], [5, 10])
        XCTAssertEqual((e1["extraction"] as? [String: Any])?["trait"] as? String, "test-trait")
        XCTAssertEqual((e1["extraction"] as? [String: Any])?["positions"] as? String, "response:5")
        let (s2, e2) = try await send(base, "POST", "/v1/vectors", ["name": "two", "path": path])
        XCTAssertEqual(s2, 409, "\(e2)")
        let replaced = try await send(base, "POST", "/v1/vectors", ["name": "two", "path": path, "replace": true]).0
        XCTAssertEqual(replaced, 200)
        // The file's bytes, uploaded.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let (s3, e3) = try await send(base, "POST", "/v1/vectors", ["name": "up", "data": bytes.base64EncodedString()])
        XCTAssertEqual(s3, 200, "\(e3)")
        XCTAssertEqual(e3["file"] as? String, "upload:up")

        // Checked on load: hidden size and layers against the model.
        func expect(_ body: [String: Any], _ status: Int, _ fragment: String, line: UInt = #line) async throws {
            let (s, o) = try await send(base, "POST", "/v1/vectors", body)
            XCTAssertEqual(s, status, "\(o)", line: line)
            XCTAssertTrue(((o["error"] as? [String: Any])?["message"] as? String ?? "").contains(fragment), "\(o)", line: line)
        }
        try await expect(["name": "small", "path": try writeVector([3: randomVector(1, 64)], "small")], 400, "hidden size is 576")
        try await expect(["name": "deep", "path": try writeVector([40: randomVector(2)], "deep")], 400, "beyond the model's 30 layers")
        try await expect(["name": "junk", "data": Data("not a vector file".utf8).base64EncodedString()], 400, "vector \"junk\"")
        try await expect(["name": "missing", "path": "/nonexistent/v.safetensors"], 400, "no vector file at /nonexistent/v.safetensors")
        try await expect(["name": "passwd", "path": "/etc/passwd"], 400, "path must name a vector file")
        try await expect(["name": "none"], 400, "exactly one of path")
        try await expect(["name": "both", "path": path, "data": "AAAA"], 400, "exactly one of path")
        try await expect(["name": "bad name!", "path": path], 400, "name must be")
        let (s4, list) = try await send(base, "GET", "/v1/vectors")
        XCTAssertEqual(s4, 200)
        XCTAssertEqual((list["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, ["random", "two", "up"])
        let deleted = try await send(base, "DELETE", "/v1/vectors").0
        XCTAssertEqual(deleted, 405)

        // A loaded vector steers at once.
        let q = "Tell me about dogs."
        let (_, steered, _) = try await post(base, chat(q, maxTokens: 10, extra: ["steering": [["vector": "up", "layer": 5, "coef": 10]]]))
        XCTAssertEqual(content(steered), try engineGreedy(server, q, maxTokens: 10, steering: SteeringSpec(.add(layer: 5, vector: a5, coef: 10))))
    }

    /// Several entries in one request act together — across layers, at one layer, adding and
    /// ablating — exactly as the engine applies the same list of edits.
    func testSeveralSteeringEntriesActTogether() async throws {
        let (server, base) = try makeServer()
        defer { server.shutdown() }
        let a5 = randomVector(31), a10 = randomVector(32)
        let path = try writeVector([5: a5, 10: a10], "multi")
        try server.vectors.add(name: "multi", path: path)
        let r10 = try SafetensorsFile(path: Self.vectorPath).floats("layer.10")
        let q = "Tell me about cats."
        let entries: [[String: Any]] = [
            ["vector": "multi", "layer": 5, "coef": 6],
            ["vector": "random", "layer": 10, "coef": 5, "positions": "response"],
            ["vector": "multi", "layer": 10, "coef": -4],
            ["vector": "random", "layer": 10, "kind": "ablate"],
        ]
        let spec = SteeringSpec(edits: [
            SteeringEdit(layer: 5, vector: a5, coef: 6),
            SteeringEdit(layer: 10, vector: r10, coef: 5, positions: .response),
            SteeringEdit(layer: 10, vector: a10, coef: -4),
            SteeringEdit(layer: 10, vector: r10, coef: 1, kind: .ablate),
        ])
        let expected = try engineGreedy(server, q, maxTokens: 12, steering: spec)
        let single = try engineGreedy(server, q, maxTokens: 12, steering: SteeringSpec(spec.edits[0]))
        XCTAssertNotEqual(expected, single, "the later entries change the answer")
        async let a = post(base, chat(q, maxTokens: 12, extra: ["steering": entries]))
        async let b = post(base, chat(q, maxTokens: 12, extra: ["steering": [entries[0]]]))
        let (ra, rb) = try await (a, b)
        XCTAssertEqual(content(ra.1), expected)
        XCTAssertEqual(content(rb.1), single)
        let (s, o, _) = try await post(base, chat(q, extra: ["steering": [["vector": "random", "layer": 10, "kind": "scale"]]]))
        XCTAssertEqual(s, 400)
        XCTAssertTrue(((o["error"] as? [String: Any])?["message"] as? String ?? "").contains("kind"))
        let (s2, o2, _) = try await post(base, chat(q, extra: ["steering": [["vector": "random", "layer": 10, "coeff": 3]]]))
        XCTAssertEqual(s2, 400)
        XCTAssertTrue(((o2["error"] as? [String: Any])?["message"] as? String ?? "").contains("unknown field \"coeff\""))
    }
}
