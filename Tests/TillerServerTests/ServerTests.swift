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

/// `tiller serve` on loopback with SmolLM2-135M-Instruct: API errors, greedy parity with the
/// engine, streaming, per-request steering inside shared batches, logprobs, and 32 concurrent requests.
final class ServerTests: ServerTestCase {
    func testErrorsAreOpenAIStyleAndNeverFatal() async throws {
        let (server, base) = try makeServer()
        defer { server.shutdown() }
        func expect(_ body: Any, _ status: Int, _ fragment: String, line: UInt = #line) async throws {
            let (s, obj, data) = try await post(base, body)
            XCTAssertEqual(s, status, String(decoding: data, as: UTF8.self), line: line)
            let err = obj["error"] as? [String: Any]
            XCTAssertNotNil(err?["type"] as? String, line: line)
            XCTAssertTrue((err?["message"] as? String ?? "").contains(fragment), "\(err ?? [:])", line: line)
        }
        try await expect(Data("{not json".utf8), 400, "not valid JSON")
        try await expect(Data("[1,2]".utf8), 400, "JSON object")
        try await expect(Data(), 400, "empty")
        try await expect(["messages": []], 400, "messages")
        try await expect(["messages": [["role": "user"]]], 400, "content")
        try await expect(chat("hi", extra: ["model": "gpt-17"]), 404, "does not exist")
        try await expect(chat("hi", extra: ["temperature": 7]), 400, "temperature")
        try await expect(chat("hi", extra: ["temperature": "hot"]), 400, "temperature")
        try await expect(chat("hi", extra: ["max_tokens": 0]), 400, "max_tokens")
        try await expect(chat("hi", extra: ["top_logprobs": 5]), 400, "logprobs")
        try await expect(chat("hi", extra: ["logprobs": true, "top_logprobs": 50]), 400, "top_logprobs")
        try await expect(chat("hi", extra: ["stop": [1, 2]]), 400, "stop")
        try await expect(chat("hi", extra: ["steering": [["vector": "nope", "layer": 3, "coef": 1]]]), 400, "unknown steering vector")
        try await expect(chat("hi", extra: ["steering": [["vector": "random", "layer": 99, "coef": 1]]]), 400, "out of range")
        try await expect(chat("hi", extra: ["steering": [["vector": "random", "layer": 3, "coef": 1]]]), 400, "no tensor for layer 3")
        try await expect(chat("hi", extra: ["steering": [["vector": "random", "layer": 10, "positions": "middle"]]]), 400, "positions")
        try await expect(Data(repeating: 0x41, count: 100 << 10), 413, "exceeds")
        // Wrong method and route.
        var get = URLRequest(url: base.appendingPathComponent("/v1/chat/completions"))
        get.httpMethod = "GET"
        let (_, r1) = try await URLSession.shared.data(for: get)
        XCTAssertEqual((r1 as! HTTPURLResponse).statusCode, 405)
        let (_, r2) = try await URLSession.shared.data(from: base.appendingPathComponent("/v2/nothing"))
        XCTAssertEqual((r2 as! HTTPURLResponse).statusCode, 404)
        // Raw garbage on the socket: the connection gets 400 and the server lives on.
        try rawSend(port: base.port!, Data("\u{01}\u{02}GARBAGE / HTTP/9\r\n\r\n".utf8))
        let (d, r3) = try await URLSession.shared.data(from: base.appendingPathComponent("/v1/models"))
        XCTAssertEqual((r3 as! HTTPURLResponse).statusCode, 200)
        let models = try JSONSerialization.jsonObject(with: d) as! [String: Any]
        XCTAssertEqual(((models["data"] as! [[String: Any]])[0]["id"] as! String), "smollm2-135m-instruct")
    }

    func testGreedyMatchesEngineAndStreamingCarriesTheSameText() async throws {
        let (server, base) = try makeServer()
        defer { server.shutdown() }
        let q = "What is the capital of France?"
        let (s, obj, _) = try await post(base, chat(q, maxTokens: 16))
        XCTAssertEqual(s, 200)
        let expected = try engineGreedy(server, q, maxTokens: 16)
        XCTAssertEqual(content(obj), expected)
        let usage = obj["usage"] as! [String: Any]
        XCTAssertEqual(usage["prompt_tokens"] as? Int, try server.encode([.init(role: "user", content: q)]).count)

        var req = URLRequest(url: base.appendingPathComponent("/v1/chat/completions"))
        req.httpMethod = "POST"
        req.httpBody = try JSONSerialization.data(withJSONObject: chat(q, maxTokens: 16, extra: ["stream": true]))
        let (data, resp) = try await URLSession.shared.data(for: req)
        XCTAssertEqual((resp as! HTTPURLResponse).value(forHTTPHeaderField: "Content-Type"), "text/event-stream")
        let events = String(decoding: data, as: UTF8.self).components(separatedBy: "\n\n").filter { !$0.isEmpty }
        XCTAssertEqual(events.last, "data: [DONE]")
        var text = ""
        var finish: String?
        for e in events.dropLast() {
            XCTAssertTrue(e.hasPrefix("data: "))
            let o = try JSONSerialization.jsonObject(with: Data(e.dropFirst(6).utf8)) as! [String: Any]
            XCTAssertEqual(o["object"] as? String, "chat.completion.chunk")
            let c = (o["choices"] as! [[String: Any]])[0]
            text += (c["delta"] as? [String: Any])?["content"] as? String ?? ""
            if let f = c["finish_reason"] as? String { finish = f }
        }
        XCTAssertEqual(text, expected)
        XCTAssertNotNil(finish)
        XCTAssertGreaterThan(events.count, 4, "one event per token")

        // Log-probabilities ride along with the text of their tokens, and equal the non-streamed ones.
        let lpBody = chat(q, maxTokens: 16, extra: ["logprobs": true, "top_logprobs": 2])
        let (_, whole, _) = try await post(base, lpBody)
        let wholeLps = ((whole["choices"] as! [[String: Any]])[0]["logprobs"] as! [String: Any])["content"] as! [[String: Any]]
        // One entry per token, and the stop token's when the answer ended on it (as vLLM and
        // llama-server report it; a judge needs how likely the reply was to end).
        let endedOnToken = (whole["choices"] as! [[String: Any]])[0]["finish_reason"] as? String == "stop"
        XCTAssertEqual(wholeLps.count, ((whole["usage"] as! [String: Any])["completion_tokens"] as! Int) + (endedOnToken ? 1 : 0))
        if endedOnToken {
            let stops = Set(server.model.defaultStopTokens.map { server.model.tokenizer!.decode([$0], skipSpecialTokens: false) })
            XCTAssertTrue(stops.contains(wholeLps.last!["token"] as! String), "\(wholeLps.last!)")
        }
        var streamBody = lpBody
        streamBody["stream"] = true
        req.httpBody = try JSONSerialization.data(withJSONObject: streamBody)
        let (sdata, _) = try await URLSession.shared.data(for: req)
        var streamedLps: [[String: Any]] = []
        for e in String(decoding: sdata, as: UTF8.self).components(separatedBy: "\n\n") where e.hasPrefix("data: {") {
            let o = try JSONSerialization.jsonObject(with: Data(e.dropFirst(6).utf8)) as! [String: Any]
            let c = (o["choices"] as! [[String: Any]])[0]
            streamedLps += ((c["logprobs"] as? [String: Any])?["content"] as? [[String: Any]]) ?? []
        }
        XCTAssertEqual(streamedLps.count, wholeLps.count, "one log-probability per token")
        for (a, b) in zip(streamedLps, wholeLps) {
            XCTAssertEqual(a["token"] as? String, b["token"] as? String)
            XCTAssertEqual((a["logprob"] as! NSNumber).doubleValue, (b["logprob"] as! NSNumber).doubleValue, accuracy: 1e-9)
            XCTAssertEqual((a["top_logprobs"] as? [[String: Any]])?.count, 2)
        }

        // A stop string cuts the text.
        if let cut = expected.dropFirst(3).first(where: { $0 == " " }) {
            let (_, o2, _) = try await post(base, chat(q, maxTokens: 16, extra: ["stop": String(cut)]))
            let c = (o2["choices"] as! [[String: Any]])[0]
            XCTAssertEqual(content(o2), String(expected[..<expected.firstIndex(of: cut)!]))
            XCTAssertEqual(c["finish_reason"] as? String, "stop")
        }
    }

    func testLogprobsMatchTheModel() async throws {
        let (server, base) = try makeServer()
        defer { server.shutdown() }
        let q = "Rate from 0 to 100 how sunny 'What a lovely sunny morning' sounds. Answer with one number."
        let (s, obj, _) = try await post(base, chat(q, maxTokens: 1, extra: ["logprobs": true, "top_logprobs": 20]))
        XCTAssertEqual(s, 200)
        let lp = (((obj["choices"] as! [[String: Any]])[0]["logprobs"] as! [String: Any])["content"] as! [[String: Any]])[0]
        let top = lp["top_logprobs"] as! [[String: Any]]
        XCTAssertEqual(top.count, 20)
        let values = top.map { ($0["logprob"] as! NSNumber).doubleValue }
        XCTAssertEqual(values, values.sorted(by: >))
        let ids = try server.encode([.init(role: "user", content: q)])
        let f = try server.model.forward([ids], logits: .last)
        let row = f.logits[0]
        let m = Double(row.max()!)
        let lse = m + log(row.reduce(0.0) { $0 + exp(Double($1) - m) })
        let best = argmax(row[...])
        XCTAssertEqual((lp["logprob"] as! NSNumber).doubleValue, Double(row[best]) - lse, accuracy: 1e-9)
        XCTAssertEqual(values[0], Double(row[best]) - lse, accuracy: 1e-9)
        XCTAssertEqual(lp["token"] as? String, server.model.tokenizer!.decode([best], skipSpecialTokens: false))
    }

    /// A last assistant message is continued as it stands: the template's rendering cut right
    /// after its content (no end of turn), whether asked vLLM's way (`continue_final_message`)
    /// or llama-server's (a trailing assistant message); `add_generation_prompt: true` opens a new
    /// turn instead, and both flags true is a 400.
    func testContinuesAFinalAssistantMessage() async throws {
        let (server, base) = try makeServer()
        defer { server.shutdown() }
        let tok = server.model.tokenizer!
        let q = "What is the capital of France?", partial = "The capital of France is"
        let opened = try renderChat(tok, messages: [.init(role: "user", content: q)], addGenerationPrompt: true)
        let expected = tok.encode(opened + partial, addSpecialTokens: false)
        let messages: [[String: Any]] = [["role": "user", "content": q], ["role": "assistant", "content": partial]]
        XCTAssertEqual(try server.encode(continuing: [.init(role: "user", content: q), .init(role: "assistant", content: partial)]), expected)
        // The continuation's first token: the model's own distribution after exactly those tokens.
        let row = try server.model.forward([expected], logits: .last).logits[0]
        let best = argmax(row[...])
        let m = Double(row.max()!)
        let lse = m + log(row.reduce(0.0) { $0 + exp(Double($1) - m) })
        let vllm: [String: Any] = ["continue_final_message": true, "add_generation_prompt": false]
        for extra in [vllm, [:]] {
            var body = chat(q, maxTokens: 1, extra: ["logprobs": true, "top_logprobs": 5])
            body["messages"] = messages
            for (k, v) in extra { body[k] = v }
            let (s, obj, data) = try await post(base, body)
            XCTAssertEqual(s, 200, String(decoding: data, as: UTF8.self))
            let lp = (((obj["choices"] as! [[String: Any]])[0]["logprobs"] as! [String: Any])["content"] as! [[String: Any]])[0]
            XCTAssertEqual(lp["token"] as? String, tok.decode([best], skipSpecialTokens: false), "\(extra)")
            XCTAssertEqual((lp["logprob"] as! NSNumber).doubleValue, Double(row[best]) - lse, accuracy: 1e-9, "\(extra)")
            let usage = obj["usage"] as! [String: Any]
            XCTAssertEqual(usage["prompt_tokens"] as? Int, expected.count, "\(extra)")
        }
        // A new turn after the assistant message: its end-of-turn and a new assistant header.
        var newTurn = chat(q, maxTokens: 1, extra: ["add_generation_prompt": true])
        newTurn["messages"] = messages
        let (s2, obj2, _) = try await post(base, newTurn)
        XCTAssertEqual(s2, 200)
        let closed = try renderChat(tok, messages: [.init(role: "user", content: q), .init(role: "assistant", content: partial)], addGenerationPrompt: true)
        XCTAssertEqual((obj2["usage"] as! [String: Any])["prompt_tokens"] as? Int, tok.encode(closed, addSpecialTokens: false).count)
        var both = chat(q, maxTokens: 1, extra: ["continue_final_message": true, "add_generation_prompt": true])
        both["messages"] = messages
        let (s3, obj3, _) = try await post(base, both)
        XCTAssertEqual(s3, 400)
        XCTAssertEqual((obj3["error"] as? [String: Any])?["param"] as? String, "continue_final_message")
        let (s4, _, _) = try await post(base, chat(q, maxTokens: 1, extra: ["continue_final_message": true]))
        XCTAssertEqual(s4, 400, "nothing to continue: the last message is the user's")
    }

    func testSteeringIsPerRequestInsideOneBatch() async throws {
        let (server, base) = try makeServer(window: 0.2)
        defer { server.shutdown() }
        let q = "Tell me about cats."
        let steer: [String: Any] = ["steering": [["vector": "random", "layer": 10, "coef": 12, "positions": "all"]]]
        async let a = post(base, chat(q, maxTokens: 12))
        async let b = post(base, chat(q, maxTokens: 12, extra: steer))
        let (ra, rb) = try await (a, b)
        let plain = try engineGreedy(server, q, maxTokens: 12)
        let v = try SafetensorsFile(path: Self.vectorPath).floats("layer.10")
        let steered = try engineGreedy(server, q, maxTokens: 12, steering: SteeringSpec(.add(layer: 10, vector: v, coef: 12, positions: .all)))
        XCTAssertNotEqual(plain, steered, "the test vector must change the text")
        XCTAssertEqual(content(ra.1), plain)
        XCTAssertEqual(content(rb.1), steered)
        XCTAssertEqual((ra.1["tiller"] as? [String: Any])?["batch_size"] as? Int, 2, "both requests shared one engine call")
    }

    /// `--vectors` and `--vector` read what `tiller generate --steer` reads: a llama.cpp control
    /// vector GGUF serves the same direction as the safetensors it was exported from.
    func testControlVectorGGUFServesTheSameVector() throws {
        let st = try SteeringVectorFile.load(path: Self.vectorPath)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serve-test-vectors-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ControlVectorGGUF.export(st, to: dir + "/random_cv.gguf", modelHint: "llama")
        try FileManager.default.copyItem(atPath: Self.vectorPath, toPath: dir + "/random_st.safetensors")
        try "not a vector".write(toFile: dir + "/notes.txt", atomically: true, encoding: .utf8)
        let store = VectorStore()
        try store.addDirectory(dir)
        XCTAssertEqual(store.names, ["random_cv", "random_st"])
        XCTAssertEqual(try store.vector("random_cv", layer: 10, hidden: 576), try store.vector("random_st", layer: 10, hidden: 576))
        XCTAssertThrowsError(try store.vector("random_cv", layer: 10, hidden: 64)) { XCTAssertTrue("\($0)".contains("hidden size is 64"), "\($0)") }
        try Data("GGUF-truncated".utf8).write(to: URL(fileURLWithPath: dir + "/bad.gguf"))
        XCTAssertThrowsError(try store.add(name: "bad", path: dir + "/bad.gguf")) { XCTAssertTrue("\($0)".contains("bad.gguf"), "\($0)") }
    }

    /// 32 concurrent requests: every answer equals the engine's own greedy answer; prints req/s
    /// with batching and with batches of one.
    func testLoad32Concurrent() async throws {
        let questions = (0..<32).map { "Give me one word that rhymes with \(["cat", "dog", "sun", "tree", "blue", "day", "night", "car"][$0 % 8]) (\($0))." }
        var rates: [Int: Double] = [:]
        var expected: [String] = []
        // Batches of one (the baseline) see only the first 8 requests: the rate is per request either way.
        for maxBatch in [32, 1] {
            let (server, base) = try makeServer(maxBatch: maxBatch, window: 0.01)
            if expected.isEmpty { expected = try questions.map { try engineGreedy(server, $0, maxTokens: 8) } }
            let questions = maxBatch == 1 ? Array(questions.prefix(8)) : questions
            let start = Date()
            let answers = try await withThrowingTaskGroup(of: (Int, String?, Int).self) { g in
                for (i, q) in questions.enumerated() {
                    g.addTask {
                        let (s, o, _) = try await self.post(base, self.chat(q, maxTokens: 8))
                        return (i, s == 200 ? self.content(o) : nil, s)
                    }
                }
                var out = [String?](repeating: nil, count: questions.count)
                for try await (i, text, _) in g { out[i] = text }
                return out
            }
            let seconds = Date().timeIntervalSince(start)
            let stats = server.batchStats
            server.shutdown()
            for i in questions.indices { XCTAssertEqual(answers[i], expected[i], "request \(i) (maxBatch \(maxBatch))") }
            rates[maxBatch] = Double(questions.count) / seconds
            print(String(format: "serve load: %d concurrent requests, maxBatch %d: %.2fs, %.2f req/s, %d engine steps (mean batch %.1f, peak %d)",
                         questions.count, maxBatch, seconds, rates[maxBatch]!, stats.steps, Double(stats.sequences) / Double(max(stats.steps, 1)), stats.peak))
            if maxBatch == 32 { XCTAssertGreaterThan(stats.peak, 1, "concurrent requests were batched") }
        }
        print(String(format: "serve load: batching speed-up %.2fx", rates[32]! / rates[1]!))
    }

    /// Sampled requests with their own temperature, top-p, seed and budget share one batch and
    /// each gets what the engine gives it alone.
    func testPerRequestOptionsInsideOneBatch() async throws {
        let (server, base) = try makeServer(window: 0.2)
        defer { server.shutdown() }
        let q = "Write a sentence about the sea."
        async let a = post(base, chat(q, maxTokens: 10, extra: ["temperature": 0.8, "seed": 1]))
        async let b = post(base, chat(q, maxTokens: 5, extra: ["temperature": 1.2, "top_p": 0.9, "seed": 2]))
        async let c = post(base, chat(q, maxTokens: 7))
        let (ra, rb, rc) = try await (a, b, c)
        XCTAssertEqual(content(ra.1), try engine(server, q, GenerationOptions(maxNewTokens: 10, temperature: 0.8, seed: 1)))
        XCTAssertEqual(content(rb.1), try engine(server, q, GenerationOptions(maxNewTokens: 5, temperature: 1.2, topP: 0.9, seed: 2)))
        XCTAssertEqual(content(rc.1), try engineGreedy(server, q, maxTokens: 7))
        XCTAssertNotEqual(content(ra.1), content(rc.1), "sampling at temperature 0.8 differs from greedy")
        for r in [ra, rb, rc] {
            XCTAssertEqual((r.1["tiller"] as? [String: Any])?["batch_size"] as? Int, 3, "all three shared the engine's steps")
        }
        XCTAssertEqual((rb.1["usage"] as? [String: Any])?["completion_tokens"] as? Int, 5)
    }

    /// Streaming is real: the first tokens arrive long before the answer is finished, and a short
    /// request sent while a long one streams joins the running batch and finishes first.
    func testStreamingArrivesAsGeneratedAndShortRequestsOvertake() async throws {
        let (server, base) = try makeServer()
        defer { server.shutdown() }
        let long = "Write a long story about a dragon who learns to bake bread."
        let longTokens = 120
        let expected = try engineGreedy(server, long, maxTokens: longTokens)
        async let longRun = stream(base, chat(long, maxTokens: longTokens, extra: ["stream": true, "stop": "zzqx"]))
        // Send the short request once the long one is generating.
        var waited = 0
        while server.batchStats.active == 0 && waited < 3000 { try await Task.sleep(nanoseconds: 10_000_000); waited += 1 }
        XCTAssertGreaterThan(server.batchStats.active, 0, "the long request was never seen generating")
        let shortStart = Date()
        let (s, shortObj, _) = try await post(base, chat("Say hi.", maxTokens: 4))
        let shortDone = Date()
        let rec = try await longRun
        XCTAssertEqual(s, 200)
        XCTAssertEqual(content(shortObj), try engineGreedy(server, "Say hi.", maxTokens: 4))
        XCTAssertGreaterThanOrEqual((shortObj["tiller"] as? [String: Any])?["batch_size"] as? Int ?? 0, 2, "the short request joined the running batch")

        let events = rec.snapshot
        XCTAssertEqual(events.last?.payload, "[DONE]")
        let texts = events.compactMap { deltaText($0.payload) }
        XCTAssertEqual(texts.joined(), expected, "streamed text = the engine's answer")
        let contentEvents = events.filter { !(deltaText($0.payload) ?? "").isEmpty }
        let first = try XCTUnwrap(contentEvents.first).seconds, last = try XCTUnwrap(events.last).seconds
        print(String(format: "serve streaming: first content after %.3fs, [DONE] after %.3fs, %d content events; short request %.3fs",
                     first, last, contentEvents.count, shortDone.timeIntervalSince(shortStart)))
        XCTAssertGreaterThan(contentEvents.count, longTokens / 2, "about one event per token")
        XCTAssertLessThan(first, last * 0.25, "the first tokens arrive while the rest is being generated")
        XCTAssertLessThan(shortDone.timeIntervalSince(rec.start), last, "the short request finished while the long one still streamed")
    }

    /// A streaming client that goes away stops its sequence: the engine does not keep generating.
    func testClientDisconnectStopsGeneration() async throws {
        let (server, base) = try makeServer()
        defer { server.shutdown() }
        let rec = try await stream(base, chat("Count from one to one thousand.", maxTokens: 1000, extra: ["stream": true]),
                                   cancelAfterFirstContent: true)
        XCTAssertNotEqual(rec.snapshot.last?.payload, "[DONE]")
        XCTAssertTrue(rec.snapshot.contains { !(deltaText($0.payload) ?? "").isEmpty }, "content arrived before the client went away")
        XCTAssertGreaterThan(server.batchStats.steps, 0, "the engine was generating")
        var waited = 0
        while server.batchStats.active > 0 && waited < 1000 { try await Task.sleep(nanoseconds: 10_000_000); waited += 1 }
        XCTAssertEqual(server.batchStats.active, 0, "the cancelled sequence left the batch")
        XCTAssertLessThan(server.batchStats.steps, 500, "generation stopped long before its 1000-token budget")
        // The server goes on serving.
        let (s, _, _) = try await post(base, chat("Say hi.", maxTokens: 3))
        XCTAssertEqual(s, 200)
    }
}
