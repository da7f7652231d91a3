import Foundation
import TillerModels
import TillerSteering
import TillerTokenizers

/// The two generation routes: chat completions (messages through the chat template) and text
/// completions (a raw prompt, for base models). Both share the sampling fields, `n`, streaming
/// and the `steering` extension; they differ in how the prompt is read and how choices look.
enum CompletionKind {
    case chat
    case text

    var object: String { self == .chat ? "chat.completion" : "text_completion" }
    var chunkObject: String { self == .chat ? "chat.completion.chunk" : "text_completion" }
    var idPrefix: String { self == .chat ? "chatcmpl-" : "cmpl-" }
}

/// A parsed generation request: its prompts (text completions may send several), `n` answers per
/// prompt, and one engine job per answer (prompt-major: choice index = prompt · n + j).
struct CompletionRequest {
    var kind: CompletionKind
    var prompts: [[Int]]
    /// Characters of each prompt's text (text completions' `text_offset` starts after it).
    var promptCharacters: [Int]
    var n: Int
    /// Text completions' `best_of`: candidates generated per prompt, of which the n with the
    /// highest mean token log-probability are returned (n when not sent).
    var bestOf: Int
    /// One engine job per candidate (prompt-major: job = prompt · bestOf + j).
    var jobs: [GenerationJob]
    var stream: Bool
    var includeUsage: Bool
    /// Chat: `logprobs: true`; text: `logprobs: k` (then `topLogprobs` is k).
    var logprobs: Bool
    /// Text completions' `echo`: each choice's text (and logprobs) starts with its prompt.
    var echo: Bool = false
}

extension ChatServer {
    // MARK: parsing

    /// The fields both routes share: budget, sampling, seed, stop strings, n, streaming, steering.
    struct Sampling {
        var maxTokens: Int
        var temperature: Double
        var topP: Double
        var seed: UInt64?
        var stop: [String]
        var n: Int
        var stream: Bool
        var includeUsage: Bool
        var steering: SteeringSpec?
    }

    /// `zeroTokens`: max_tokens 0 is accepted (text completions' echo, which then only scores the prompt).
    func parseSampling(_ f: RequestFields, defaultMaxTokens: Int, zeroTokens: Bool = false) throws -> Sampling {
        if let m = f["model"] {
            guard let s = m as? String else { throw ServerError.badRequest("model must be a string", param: "model") }
            guard s == modelName || s == model.name else {
                throw ServerError.modelNotFound("the model \"\(s)\" does not exist on this server; it serves \"\(modelName)\"")
            }
        }
        let maxTokens = try f.integer("max_completion_tokens") ?? f.integer("max_tokens") ?? defaultMaxTokens
        guard maxTokens >= (zeroTokens ? 0 : 1), maxTokens <= options.maxTokensLimit else {
            throw ServerError.badRequest("max_tokens must be between \(zeroTokens ? 0 : 1) and \(options.maxTokensLimit)\(zeroTokens ? "" : " (0 only with echo on /v1/completions)")", param: "max_tokens")
        }
        let temperature = try f.number("temperature") ?? 1
        guard temperature >= 0, temperature <= 2 else { throw ServerError.badRequest("temperature must be between 0 and 2", param: "temperature") }
        let topP = try f.number("top_p") ?? 1
        guard topP > 0, topP <= 1 else { throw ServerError.badRequest("top_p must be in (0, 1]", param: "top_p") }
        var seed: UInt64?
        if let s = try f.integer("seed") { seed = UInt64(bitPattern: Int64(s)) }
        var stop: [String] = []
        if let s = f["stop"] {
            if let one = s as? String { stop = [one] }
            else if let many = s as? [Any], many.count <= 4, many.allSatisfy({ $0 is String }) { stop = many as! [String] }
            else { throw ServerError.badRequest("stop must be a string or an array of at most 4 strings", param: "stop") }
        }
        let n = try f.integer("n") ?? 1
        guard n >= 1, n <= options.maxChoices else {
            throw ServerError.badRequest("n must be between 1 and \(options.maxChoices)", param: "n")
        }
        for key in ["presence_penalty", "frequency_penalty"] {
            if let p = try f.number(key), p != 0 { throw ServerError.badRequest("\(key) is not supported (only 0)", param: key) }
        }
        let stream = try f.bool("stream") ?? false
        var includeUsage = false
        if let so = f["stream_options"] {
            guard let d = so as? [String: Any] else { throw ServerError.badRequest("stream_options must be an object", param: "stream_options") }
            guard stream else { throw ServerError.badRequest("stream_options requires stream: true", param: "stream_options") }
            includeUsage = try RequestFields(object: d).bool("include_usage") ?? false
        }
        return Sampling(maxTokens: maxTokens, temperature: temperature, topP: topP, seed: seed, stop: stop, n: n,
                        stream: stream, includeUsage: includeUsage, steering: try parseSteering(f["steering"]))
    }

    /// `steering`: a list of edits, applied together (their sum where several share a layer):
    /// `{"vector": NAME, "layer": L, "coef": C, "positions": "all"|"response", "kind": "add"|"ablate"}`.
    func parseSteering(_ value: Any?) throws -> SteeringSpec? {
        guard let value, !(value is NSNull) else { return nil }
        guard let items = value as? [Any] else { throw ServerError.badRequest("steering must be an array of {vector, layer, coef, positions}", param: "steering") }
        guard items.count <= options.maxSteeringEntries else {
            throw ServerError.badRequest("steering has \(items.count) entries; at most \(options.maxSteeringEntries) are allowed", param: "steering")
        }
        var edits: [SteeringEdit] = []
        for (i, item) in items.enumerated() {
            guard let d = item as? [String: Any] else { throw ServerError.badRequest("steering[\(i)] must be an object", param: "steering") }
            let known: Set<String> = ["vector", "layer", "coef", "positions", "kind"]
            if let extra = d.keys.sorted().first(where: { !known.contains($0) }) {
                throw ServerError.badRequest("steering[\(i)] has an unknown field \"\(extra)\" (fields: vector, layer, coef, positions, kind)", param: "steering")
            }
            guard let name = d["vector"] as? String else { throw ServerError.badRequest("steering[\(i)].vector must be the name of a vector known to the server", param: "steering") }
            guard let ln = d["layer"] as? NSNumber, !isJSONBool(ln), ln.doubleValue == ln.doubleValue.rounded(), abs(ln.doubleValue) < 1e9 else {
                throw ServerError.badRequest("steering[\(i)].layer must be an integer", param: "steering")
            }
            let layer = ln.intValue
            guard layer >= 0, layer < model.config.numHiddenLayers else {
                throw ServerError.badRequest("steering[\(i)].layer \(layer) is out of range (0…\(model.config.numHiddenLayers - 1))", param: "steering")
            }
            let coef: Double
            if let c = d["coef"] {
                guard let n = c as? NSNumber, !isJSONBool(n), n.doubleValue.isFinite else {
                    throw ServerError.badRequest("steering[\(i)].coef must be a finite number", param: "steering")
                }
                coef = n.doubleValue
            } else { coef = 1 }
            var positions = SteeringPositions.all
            if let p = d["positions"] {
                guard let s = p as? String, let v = SteeringPositions(rawValue: s) else {
                    throw ServerError.badRequest("steering[\(i)].positions must be \"all\" or \"response\"", param: "steering")
                }
                positions = v
            }
            var kind = SteeringKind.add
            if let k = d["kind"] {
                guard let s = k as? String, let v = SteeringKind(rawValue: s) else {
                    throw ServerError.badRequest("steering[\(i)].kind must be \"add\" or \"ablate\"", param: "steering")
                }
                kind = v
            }
            let v = try vectors.vector(name, layer: layer, hidden: model.config.hiddenSize)
            edits.append(SteeringEdit(layer: layer, vector: v, coef: Float(coef), positions: positions, kind: kind))
        }
        return edits.isEmpty ? nil : SteeringSpec(edits: edits)
    }

    /// Prompt text beyond this many bytes cannot fit the token cap (no tokenizer's tokens average
    /// 64 bytes), so it is refused before tokenizing: a multi-megabyte prompt costs no CPU.
    var maxPromptTextBytes: Int { options.maxPromptTokens.multipliedReportingOverflow(by: 64).partialValue }

    func checkPromptText(_ bytes: Int, param: String) throws {
        guard bytes <= maxPromptTextBytes else {
            throw ServerError.badRequest("the prompt text is \(bytes) bytes: more than any prompt of at most \(options.maxPromptTokens) tokens (this server's cap) can be", param: param)
        }
    }

    /// Checks a prompt against the prompt-token cap and the model's context.
    func checkPrompt(_ prompt: [Int], maxTokens: Int, param: String) throws {
        guard !prompt.isEmpty else { throw ServerError.badRequest("the prompt is empty", param: param) }
        guard prompt.count <= options.maxPromptTokens else {
            throw ServerError.badRequest("the prompt has \(prompt.count) tokens; this server accepts at most \(options.maxPromptTokens)", param: param)
        }
        guard prompt.count + maxTokens <= model.config.maxPositionEmbeddings else {
            throw ServerError.badRequest("the prompt (\(prompt.count) tokens) plus max_tokens (\(maxTokens)) exceeds the model's context of \(model.config.maxPositionEmbeddings) tokens", param: param)
        }
    }

    /// `candidates` jobs per prompt (n, or best_of); `echo`: each prompt's text, to echo.
    func jobs(_ prompts: [[Int]], _ s: Sampling, candidates: Int, topLogprobs: Int?, echo: [String]? = nil) -> [GenerationJob] {
        prompts.enumerated().flatMap { i, p in
            (0..<candidates).map { j in
                // Choice j samples with seed + j: choice 0 is what the same request with n = 1 gives.
                GenerationJob(prompt: p, maxTokens: s.maxTokens, temperature: s.temperature, topP: s.topP,
                              seed: s.seed.map { $0 &+ UInt64(j) }, steering: s.steering, topLogprobs: topLogprobs, stop: s.stop,
                              echo: echo?[i])
            }
        }
    }

    func parseChat(_ body: Data) throws -> CompletionRequest {
        let f = try RequestFields(body)
        guard let rawMessages = f["messages"] as? [Any], !rawMessages.isEmpty else {
            throw ServerError.badRequest("messages must be a non-empty array", param: "messages")
        }
        var messages: [ChatMessage] = []
        for (i, m) in rawMessages.enumerated() {
            guard let d = m as? [String: Any], let role = d["role"] as? String else {
                throw ServerError.badRequest("messages[\(i)] must be an object with a string role", param: "messages")
            }
            guard ["system", "user", "assistant", "developer"].contains(role) else {
                throw ServerError.badRequest("messages[\(i)].role \"\(role)\" is not supported (system, user, assistant)", param: "messages")
            }
            var content = ""
            if let s = d["content"] as? String { content = s }
            else if let parts = d["content"] as? [Any] {
                for p in parts {
                    guard let pd = p as? [String: Any], pd["type"] as? String == "text", let t = pd["text"] as? String else {
                        throw ServerError.badRequest("messages[\(i)].content: only text parts are supported", param: "messages")
                    }
                    content += t
                }
            } else {
                throw ServerError.badRequest("messages[\(i)].content must be a string or an array of text parts", param: "messages")
            }
            messages.append(ChatMessage(role: role == "developer" ? "system" : role, content: content))
        }
        for key in ["best_of", "echo", "suffix"] where f[key] != nil {
            throw ServerError.badRequest("\(key) is a field of /v1/completions, not of chat completions", param: key)
        }
        // A trailing assistant message is continued as it stands (llama-server's reading), or on
        // request with vLLM's `continue_final_message: true` (then `add_generation_prompt` may not
        // be true); `add_generation_prompt: true` after it opens a new assistant turn instead.
        let continueFinal = try f.bool("continue_final_message") ?? false
        let generationPrompt = try f.bool("add_generation_prompt")
        if continueFinal {
            guard generationPrompt != true else {
                throw ServerError.badRequest("continue_final_message and add_generation_prompt cannot both be true", param: "continue_final_message")
            }
            guard messages.last?.role == "assistant" else {
                throw ServerError.badRequest("continue_final_message needs a last message with role assistant", param: "continue_final_message")
            }
        }
        let continuing = messages.last?.role == "assistant" && generationPrompt != true
        let s = try parseSampling(f, defaultMaxTokens: options.defaultMaxTokens)
        let logprobs = try f.bool("logprobs") ?? false
        var top: Int?
        if let k = try f.integer("top_logprobs") {
            guard logprobs else { throw ServerError.badRequest("top_logprobs requires logprobs: true", param: "top_logprobs") }
            guard k >= 0, k <= 20 else { throw ServerError.badRequest("top_logprobs must be between 0 and 20", param: "top_logprobs") }
            top = k
        } else if logprobs { top = 0 }
        try checkPromptText(messages.reduce(0) { $0 + $1.content.utf8.count }, param: "messages")
        let prompt = try continuing ? encode(continuing: messages) : encode(messages, generationPrompt: generationPrompt ?? true)
        try checkPrompt(prompt, maxTokens: s.maxTokens, param: "messages")
        var chatJobs = jobs([prompt], s, candidates: s.n, topLogprobs: top)
        for i in chatJobs.indices { chatJobs[i].logprobStopToken = true }
        return CompletionRequest(kind: .chat, prompts: [prompt], promptCharacters: [0], n: s.n, bestOf: s.n,
                                 jobs: chatJobs,
                                 stream: s.stream, includeUsage: s.includeUsage, logprobs: logprobs)
    }

    /// `prompt`: a string, an array of strings, an array of token ids or an array of such arrays.
    /// Text is encoded with the tokenizer's special tokens (BOS), as the model saw text in training.
    func parseText(_ body: Data) throws -> CompletionRequest {
        let f = try RequestFields(body)
        let tok = model.tokenizer!
        guard let raw = f["prompt"] else { throw ServerError.badRequest("prompt is required: a string, an array of strings or of token ids", param: "prompt") }
        var texts: [String?] = []
        var prompts: [[Int]] = []
        func tokens(_ a: [Any]) throws -> [Int] {
            try a.map { v in
                guard let n = v as? NSNumber, !isJSONBool(n), n.doubleValue == n.doubleValue.rounded(),
                      n.doubleValue >= 0, n.doubleValue < Double(model.vocabSize) else {
                    throw ServerError.badRequest("prompt token ids must be integers in 0..<\(model.vocabSize)", param: "prompt")
                }
                return n.intValue
            }
        }
        if let s = raw as? String { texts = [s] }
        else if let a = raw as? [Any], !a.isEmpty {
            if a.allSatisfy({ $0 is String }) { texts = a.map { $0 as? String } }
            else if a.allSatisfy({ $0 is NSNumber }) { prompts = [try tokens(a)]; texts = [nil] }
            else if a.allSatisfy({ $0 is [Any] }) { prompts = try a.map { try tokens($0 as! [Any]) }; texts = prompts.map { _ in nil } }
            else { throw ServerError.badRequest("prompt must be a string, an array of strings, an array of token ids or an array of such arrays", param: "prompt") }
        } else {
            throw ServerError.badRequest("prompt must be a non-empty string or array", param: "prompt")
        }
        let echo = try f.bool("echo") ?? false
        let suffix = try f.string("suffix").flatMap { $0.isEmpty ? nil : $0 }
        let s = try parseSampling(f, defaultMaxTokens: 16, zeroTokens: echo)
        let bestOf = try f.integer("best_of") ?? s.n
        guard bestOf >= s.n else { throw ServerError.badRequest("best_of (\(bestOf)) must be at least n (\(s.n))", param: "best_of") }
        guard bestOf == s.n || !s.stream else { throw ServerError.badRequest("best_of cannot be streamed (its choice needs every candidate)", param: "best_of") }
        guard texts.count * bestOf <= options.maxChoices else {
            throw ServerError.badRequest("\(texts.count) prompts × \(bestOf == s.n ? "n = \(s.n)" : "best_of = \(bestOf)") is more than \(options.maxChoices) choices", param: bestOf == s.n ? "prompt" : "best_of")
        }
        if let suffix {
            guard !echo else { throw ServerError.badRequest("echo and suffix cannot be combined", param: "suffix") }
            guard prompts.isEmpty, texts.count == 1 else { throw ServerError.badRequest("suffix needs a single text prompt", param: "suffix") }
            try checkPromptText(texts[0]!.utf8.count + suffix.utf8.count, param: "prompt")
            texts = [try Self.fillInTheMiddle(tok, model: model.name, prefix: texts[0]!, suffix: suffix)]
        }
        if prompts.isEmpty {
            for t in texts { try checkPromptText(t!.utf8.count, param: "prompt") }
            prompts = texts.map { tok.encode($0!, addSpecialTokens: true) }
        }
        var top: Int?
        if let k = try f.integer("logprobs") {
            guard k >= 0, k <= 20 else { throw ServerError.badRequest("logprobs must be between 0 and 20", param: "logprobs") }
            top = k
        }
        for p in prompts { try checkPrompt(p, maxTokens: s.maxTokens, param: "prompt") }
        let shown = zip(texts, prompts).map { t, p in t ?? tok.decode(p, skipSpecialTokens: true) }
        // best_of ranks candidates by their tokens' log-probabilities, so they are always computed.
        let internalTop = top ?? (bestOf > s.n ? 0 : nil)
        return CompletionRequest(kind: .text, prompts: prompts, promptCharacters: shown.map { $0.unicodeScalars.count }, n: s.n,
                                 bestOf: bestOf, jobs: jobs(prompts, s, candidates: bestOf, topLogprobs: internalTop, echo: echo ? shown : nil),
                                 stream: s.stream, includeUsage: s.includeUsage, logprobs: top != nil, echo: echo)
    }

    /// The fill-in-the-middle prompt for `suffix`, in the prefix-suffix-middle order of the
    /// model's own FIM tokens (`<fim_prefix>`… as StarCoder-lineage vocabularies, SmolLM2's
    /// among them, spell them, or `<|fim_prefix|>`… as Qwen2.5's do); the answer is the middle.
    static func fillInTheMiddle(_ tok: Tokenizer, model: String, prefix: String, suffix: String) throws -> String {
        func single(_ s: String) -> Bool {
            let ids = tok.encode(s, addSpecialTokens: false)
            return ids.count == 1 && tok.token(ids[0]) == s
        }
        for (open, close) in [("<", ">"), ("<|", "|>")] {
            let names = ["prefix", "suffix", "middle"].map { "\(open)fim_\($0)\(close)" }
            if names.allSatisfy(single) { return names[0] + prefix + names[1] + suffix + names[2] }
        }
        throw ServerError.badRequest("suffix needs fill-in-the-middle tokens (<fim_prefix>, <fim_suffix>, <fim_middle> or <|fim_prefix|>…), and \(model)'s vocabulary has none", param: "suffix")
    }

    /// The prompt of a conversation, through the one prompt format extraction and evaluation use
    /// (PromptFormat): the chat template when the model has one, else its base-model format, which
    /// takes an optional system message, earlier user/assistant turns and a last user message.
    /// With a template, other message orders render through the template as sent.
    /// `generationPrompt: false` renders the template without opening the assistant's turn.
    func encode(_ messages: [ChatMessage], generationPrompt: Bool = true) throws -> [Int] {
        let tok = model.tokenizer!
        if !generationPrompt {
            guard tok.chatTemplate != nil else {
                throw ServerError.badRequest("add_generation_prompt: false needs a chat template; this model has none", param: "add_generation_prompt")
            }
            do { return tok.encode(try renderChat(tok, messages: messages, addGenerationPrompt: false), addSpecialTokens: false) } catch {
                throw ServerError.badRequest("the chat template cannot render these messages: \(error)", param: "messages")
            }
        }
        var rest = messages[...]
        var system: String?
        if rest.first?.role == "system" { system = rest.removeFirst().content }
        var turns: [PromptFormat.Turn] = []
        var shaped = rest.last?.role == "user"
        if shaped {
            let body = rest.dropLast()
            shaped = body.count % 2 == 0
            var i = body.startIndex
            while shaped && i < body.endIndex {
                let u = body[i], a = body[i + 1]
                if u.role == "user" && a.role == "assistant" { turns.append(.init(user: u.content, assistant: a.content)) } else { shaped = false }
                i += 2
            }
        }
        do {
            if shaped { return try PromptFormat.prompt(tok, system: system, turns: turns, user: rest.last!.content) }
            guard tok.chatTemplate != nil else {
                throw ServerError.badRequest("this model has no chat template: messages must be an optional system message, user/assistant pairs and a last user message (or use /v1/completions)", param: "messages")
            }
            return tok.encode(try renderChat(tok, messages: messages, addGenerationPrompt: true), addSpecialTokens: false)
        } catch let e as ServerError {
            throw e
        } catch {
            throw ServerError.badRequest("the chat template cannot render these messages: \(error)", param: "messages")
        }
    }

    /// Tokens that continue the last message, an assistant's, as it stands: the template renders
    /// the whole conversation without a generation prompt, and the text is cut right after the
    /// last message's content, before whatever closes the turn (end-of-turn token, newline).
    /// The content is found trimmed (templates may trim it) and its trailing whitespace is kept as
    /// the client wrote it.
    func encode(continuing messages: [ChatMessage]) throws -> [Int] {
        let tok = model.tokenizer!
        guard tok.chatTemplate != nil else {
            throw ServerError.badRequest("continuing an assistant message needs a chat template; this model has none (use /v1/completions with the text to continue)", param: "messages")
        }
        let content = messages.last!.content
        let needle = content.trimmingCharacters(in: .whitespacesAndNewlines)
        do {
            if needle.isEmpty {
                // Nothing to continue: the assistant's turn as the generation prompt opens it.
                return tok.encode(try renderChat(tok, messages: Array(messages.dropLast()), addGenerationPrompt: true) + content,
                                  addSpecialTokens: false)
            }
            let full = try renderChat(tok, messages: messages, addGenerationPrompt: false)
            guard let at = full.range(of: needle, options: .backwards) else {
                throw ServerError.badRequest("the chat template does not write the last assistant message's content; it cannot be continued", param: "messages")
            }
            let trailing = String(content.reversed().prefix { $0.isWhitespace }.reversed())
            return tok.encode(String(full[..<at.upperBound]) + trailing, addSpecialTokens: false)
        } catch let e as ServerError {
            throw e
        } catch {
            throw ServerError.badRequest("the chat template cannot render these messages: \(error)", param: "messages")
        }
    }

    // MARK: answering

    func complete(_ req: CompletionRequest) async throws -> HTTPResponse {
        let id = req.kind.idPrefix + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let created = Int(Date().timeIntervalSince1970)
        let promptTokens = req.prompts.reduce(0) { $0 + $1.count }
        if !req.stream {
            let tickets = try submitAll(req.jobs, onDelta: { _ in nil })
            var outs: [GenerationOutput] = []
            do {
                for t in tickets { outs.append(try await t.result()) }
            } catch {
                for t in tickets { t.cancel() }
                throw error
            }
            let completionTokens = outs.reduce(0) { $0 + $1.tokens.count }
            let choices = best(req, outs).enumerated().map { i, out in choiceJSON(req, index: i, out) }
            return .json(.ok, [
                "id": id, "object": req.kind.object, "created": created, "model": modelName, "choices": choices,
                "usage": ["prompt_tokens": promptTokens, "completion_tokens": completionTokens, "total_tokens": promptTokens + completionTokens],
                "tiller": ["batch_size": outs.map(\.batchSize).max() ?? 0, "queue_seconds": outs.map(\.queueSeconds).max() ?? 0],
            ])
        }
        // Server-sent events as the engine samples: each delta is text that can no longer change
        // (incomplete characters and possible starts of a stop string are held back). Choices
        // interleave, each chunk naming its index; [DONE] follows the last choice's finish.
        let name = modelName
        let kind = req.kind
        let chunk: @Sendable ([[String: Any]], [String: Any]?) -> String = { choices, usage in
            var obj: [String: Any] = ["id": id, "object": kind.chunkObject, "created": created, "model": name, "choices": choices]
            if let usage { obj["usage"] = usage }
            let d = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            return String(decoding: d, as: UTF8.self)
        }
        let (stream, cont) = AsyncStream<String>.makeStream()
        if kind == .chat {
            for i in req.jobs.indices {
                cont.yield(chunk([["index": i, "delta": ["role": "assistant", "content": ""], "finish_reason": NSNull()]], nil))
            }
        }
        let tickets = try submitAll(req.jobs) { [self] i in
            let offsets = TextOffsets(start: req.echo ? 0 : req.promptCharacters[i / req.n])
            return { text, lps in
                var choice: [String: Any] = ["index": i, "finish_reason": NSNull()]
                if kind == .chat {
                    choice["delta"] = ["content": text]
                    if req.logprobs { choice["logprobs"] = ["content": lps.map { self.tokenLogprobJSON($0) }] }
                } else {
                    choice["text"] = text
                    choice["logprobs"] = req.logprobs ? self.legacyLogprobsJSON(lps, offsets) : NSNull()
                }
                cont.yield(chunk([choice], nil))
            }
        }
        // A client that goes away stops its sequences at the next engine step.
        cont.onTermination = { _ in for t in tickets { t.cancel() } }
        let includeUsage = req.includeUsage
        Task {
            var completionTokens = 0
            do {
                try await withThrowingTaskGroup(of: (Int, GenerationOutput).self) { group in
                    for (i, t) in tickets.enumerated() { group.addTask { (i, try await t.result()) } }
                    for try await (i, out) in group {
                        completionTokens += out.tokens.count
                        var choice: [String: Any] = ["index": i, "finish_reason": out.finishReason]
                        if kind == .chat { choice["delta"] = [String: Any]() } else { choice["text"] = ""; choice["logprobs"] = NSNull() }
                        cont.yield(chunk([choice], nil))
                    }
                }
                if includeUsage {
                    cont.yield(chunk([], ["prompt_tokens": promptTokens, "completion_tokens": completionTokens,
                                          "total_tokens": promptTokens + completionTokens]))
                }
            } catch {
                for t in tickets { t.cancel() }
                let message = (error as? ServerError)?.message ?? (error is BatchScheduler.Cancelled ? "the request was cancelled" : String(describing: error))
                let d = (try? JSONSerialization.data(withJSONObject: ServerError.errorObject(message, type: "server_error"), options: [.sortedKeys])) ?? Data()
                cont.yield(String(decoding: d, as: UTF8.self))
            }
            cont.yield("[DONE]")
            cont.finish()
        }
        return .events(stream)
    }

    /// Queues every job (all or none: when the queue fills part-way, those queued are cancelled).
    func submitAll(_ jobs: [GenerationJob], onDelta: (Int) -> DeltaHandler?) throws -> [Ticket] {
        var tickets: [Ticket] = []
        do {
            for (i, job) in jobs.enumerated() { tickets.append(try scheduler.submit(job, onDelta: onDelta(i))) }
        } catch {
            for t in tickets { t.cancel() }
            throw error
        }
        return tickets
    }

    /// The n answers of each prompt: all of them, or with best_of the n candidates whose tokens
    /// have the highest mean log-probability (earlier candidates first on ties), best first.
    func best(_ req: CompletionRequest, _ outs: [GenerationOutput]) -> [GenerationOutput] {
        guard req.bestOf > req.n else { return outs }
        func score(_ o: GenerationOutput) -> Double {
            let lps = (o.logprobs ?? []).compactMap(\.logprob)
            return lps.isEmpty ? -.infinity : lps.reduce(0, +) / Double(lps.count)
        }
        return stride(from: 0, to: outs.count, by: req.bestOf).flatMap { start in
            let candidates = Array(outs[start ..< start + req.bestOf])
            let order = candidates.indices.sorted { a, b in
                let sa = score(candidates[a]), sb = score(candidates[b])
                return sa > sb || (sa == sb && a < b)
            }
            return order.prefix(req.n).map { j in
                var o = candidates[j]
                if !req.logprobs { o.logprobs = nil }  // computed only to rank them
                return o
            }
        }
    }

    func choiceJSON(_ req: CompletionRequest, index i: Int, _ out: GenerationOutput) -> [String: Any] {
        switch req.kind {
        case .chat:
            let lp: Any = out.logprobs.map { lps in ["content": lps.map { tokenLogprobJSON($0) }] } ?? NSNull()
            return ["index": i, "message": ["role": "assistant", "content": out.text], "logprobs": lp, "finish_reason": out.finishReason]
        case .text:
            let p = i / req.n
            let echoed = req.echo ? req.jobs[p * req.bestOf].echo ?? "" : ""
            let offsets = TextOffsets(start: req.echo ? 0 : req.promptCharacters[p])
            let lp: Any = out.logprobs.map { legacyLogprobsJSON((out.promptLogprobs ?? []) + $0, offsets) } ?? NSNull()
            return ["index": i, "text": echoed + out.text, "logprobs": lp, "finish_reason": out.finishReason]
        }
    }

    func tokenString(_ id: Int) -> String { model.tokenizer!.decode([id], skipSpecialTokens: false) }

    /// Chat completions' `logprobs.content[]` entry.
    func tokenLogprobJSON(_ t: TokenLogprob) -> [String: Any] {
        func entry(_ id: Int, _ lp: Double) -> [String: Any] {
            let s = tokenString(id)
            return ["token": s, "logprob": lp, "bytes": Array(s.utf8).map(Int.init)]
        }
        var e = entry(t.token, t.logprob ?? 0)
        e["top_logprobs"] = t.top.map { entry($0.token, $0.logprob) }
        return e
    }

    /// Text completions' `logprobs`: parallel lists of tokens, their log-probabilities, the top k
    /// as token → log-probability, and each token's character offset in prompt + completion.
    func legacyLogprobsJSON(_ lps: [TokenLogprob], _ offsets: TextOffsets) -> [String: Any] {
        var tokens: [String] = [], values: [Any] = [], tops: [Any] = [], starts: [Int] = []
        let tok = model.tokenizer!
        for t in lps {
            let s = tokenString(t.token)
            tokens.append(s)
            if let value = t.logprob {
                values.append(value)
                var top: [String: Double] = [:]
                for e in t.top {
                    let k = tokenString(e.token)
                    top[k] = max(top[k] ?? -.infinity, e.logprob)  // distinct ids can decode alike
                }
                tops.append(top)
            } else {
                // An echoed prompt's first token: nothing predicts it (OpenAI sends null).
                values.append(NSNull())
                tops.append(NSNull())
            }
            // Special tokens (an echoed BOS) are not in the text, so they take no characters.
            starts.append(offsets.advance(by: tok.isSpecial(t.token) ? 0 : s.unicodeScalars.count))
        }
        return ["tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": starts]
    }
}

/// The running character offset of a text completion's tokens (touched by one thread at a time).
final class TextOffsets: @unchecked Sendable {
    private var next: Int
    init(start: Int) { next = start }
    /// The offset of a token of `count` characters, moving past it.
    func advance(by count: Int) -> Int {
        defer { next += count }
        return next
    }
}

/// What a request body's decoding concluded (for the fuzz driver and other callers that check
/// bodies without running them).
public struct RequestProblem: Sendable, CustomStringConvertible {
    public let message: String
    /// The request field at fault (OpenAI's `param`), when one is.
    public let field: String?
    /// A 4xx answer (the client's fault) rather than a server error.
    public let isClientError: Bool
    public var description: String { "\(field.map { "[\($0)] " } ?? "")\(message)" }
}

extension ChatServer {
    /// Decodes `body` as `POST /v1/chat/completions` (or `/v1/completions`) would, prompt
    /// encoding and steering included, without generating: nil when it would be accepted.
    public func check(_ body: Data, chat: Bool) -> RequestProblem? {
        do {
            _ = chat ? try parseChat(body) : try parseText(body)
            return nil
        } catch let e as ServerError {
            switch e {
            case .badRequest(let m, let p), .conflict(let m, let p): return RequestProblem(message: m, field: p, isClientError: true)
            case .engine(let m): return RequestProblem(message: m, field: nil, isClientError: false)
            case .modelNotFound(let m): return RequestProblem(message: m, field: "model", isClientError: true)
            default: return RequestProblem(message: e.message, field: nil, isClientError: true)
            }
        } catch {
            return RequestProblem(message: "\(error)", field: nil, isClientError: false)
        }
    }
}
