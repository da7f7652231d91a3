import Foundation
import NIOHTTP1
import TillerFormats
import TillerModels
import TillerSteering
import TillerTokenizers

/// Steering vector files the server knows, by name: anything `tiller generate --steer` reads
/// (Tiller's safetensors with F32 tensors `layer.L`, or a llama.cpp control-vector GGUF), loaded
/// through SteeringVectorFile and checked when added.
public final class VectorStore: @unchecked Sendable {
    private var files: [String: SteeringVectorFile] = [:]
    private let lock = NSLock()

    /// File name endings `addDirectory` picks up.
    public static let extensions = [".safetensors", ".gguf"]

    public init() {}

    /// Registers `path` as `name` (read now: a bad file fails at startup, not per request).
    public func add(name: String, path: String) throws {
        let f = try SteeringVectorFile.load(path: path)
        lock.withLock { files[name] = f }
    }

    /// Every vector file of a directory (*.safetensors, *.gguf), named by its file name without
    /// the extension.
    public func addDirectory(_ dir: String) throws {
        let items = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        for item in items {
            guard let ext = Self.extensions.first(where: { item.hasSuffix($0) }) else { continue }
            try add(name: String(item.dropLast(ext.count)), path: (dir as NSString).appendingPathComponent(item))
        }
    }

    public var names: [String] { lock.withLock { files.keys.sorted() } }

    func vector(_ name: String, layer: Int, hidden: Int) throws -> [Float] {
        guard let f = lock.withLock({ files[name] }) else {
            let known = names
            throw ServerError.badRequest("unknown steering vector \"\(name)\"; known: \(known.isEmpty ? "none (start serve with --vector NAME=PATH)" : known.joined(separator: ", "))", param: "steering")
        }
        guard f.vectors[layer] != nil else {
            throw ServerError.badRequest("steering vector \"\(name)\" has no tensor for layer \(layer) (it has layers \(f.layers.map(String.init).joined(separator: ", ")))", param: "steering")
        }
        do { return try f.vector(layer: layer, hidden: hidden) } catch {
            throw ServerError.badRequest("steering vector \"\(name)\": \(error)", param: "steering")
        }
    }
}

enum ServerError: Error {
    case badRequest(String, param: String?)
    case notFound(String)
    case methodNotAllowed(String)
    case modelNotFound(String)
    case overloaded
    /// The client went away (nobody reads this answer; it keeps logs honest).
    case cancelled
    case engine(String)

    var response: HTTPResponse {
        func body(_ status: HTTPResponseStatus, _ message: String, _ type: String, _ param: String?, _ code: String?) -> HTTPResponse {
            .json(status, ["error": ["message": message, "type": type, "param": param as Any? ?? NSNull(), "code": code as Any? ?? NSNull()]])
        }
        switch self {
        case .badRequest(let m, let p): return body(.badRequest, m, "invalid_request_error", p, nil)
        case .notFound(let m): return body(.notFound, m, "invalid_request_error", nil, "not_found")
        case .methodNotAllowed(let m): return body(.methodNotAllowed, m, "invalid_request_error", nil, "method_not_allowed")
        case .modelNotFound(let m): return body(.notFound, m, "invalid_request_error", "model", "model_not_found")
        case .overloaded: return body(.tooManyRequests, "the server's queue is full; retry later", "rate_limit_error", nil, "overloaded")
        case .cancelled: return body(.init(statusCode: 499, reasonPhrase: "Client Closed Request"), "the request was cancelled", "invalid_request_error", nil, "cancelled")
        case .engine(let m): return body(.internalServerError, m, "server_error", nil, nil)
        }
    }
}

/// `tiller serve`: the OpenAI-compatible chat-completions API over one model, with Tiller's
/// `steering` extension applied per request (each request steers only its own sequence).
public final class ChatServer: @unchecked Sendable {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 8080
        /// Requests arriving within this window share one engine call.
        public var batchWindow: TimeInterval = 0.005
        public var maxBatch = 32
        public var maxBodyBytes = 4 << 20
        public var defaultMaxTokens = 256
        public var maxTokensLimit = 4096
        public init() {}
    }

    public let model: LanguageModel
    public let modelName: String
    public let vectors: VectorStore
    public let options: Options
    let scheduler: BatchScheduler
    let http: HTTPServer
    let created = Int(Date().timeIntervalSince1970)

    public init(model: LanguageModel, name: String? = nil, vectors: VectorStore = VectorStore(), options: Options = Options()) throws {
        guard model.tokenizer != nil else { throw ServerError.engine("model \(model.name) has no tokenizer") }
        self.model = model
        self.modelName = name ?? model.name
        self.vectors = vectors
        self.options = options
        scheduler = try BatchScheduler(model: model, window: options.batchWindow, maxBatch: options.maxBatch)
        http = HTTPServer(maxBodyBytes: options.maxBodyBytes)
    }

    /// Starts serving; returns the bound port.
    @discardableResult
    public func start() throws -> Int {
        scheduler.start()
        return try http.start(host: options.host, port: options.port) { [self] req in await self.handle(req) }
    }

    public func wait() throws { try http.wait() }

    public func shutdown() {
        // Queued requests fail first (the running batch finishes), then the HTTP side stops.
        scheduler.stop()
        http.shutdown()
    }

    /// Engine steps, sequences they carried summed over steps (sequences / steps = mean batch
    /// size), the largest batch and the sequences generating now.
    public var batchStats: (steps: Int, sequences: Int, peak: Int, active: Int) { scheduler.stats }

    func handle(_ req: HTTPRequest) async -> HTTPResponse {
        let path = req.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? req.path
        do {
            switch path {
            case "/v1/models":
                guard req.method == .GET else { throw ServerError.methodNotAllowed("\(req.method) is not allowed on /v1/models; use GET") }
                return .json(.ok, ["object": "list", "data": [["id": modelName, "object": "model", "created": created, "owned_by": "tiller"]]])
            case "/v1/chat/completions":
                guard req.method == .POST else { throw ServerError.methodNotAllowed("\(req.method) is not allowed on /v1/chat/completions; use POST") }
                return try await chatCompletion(req.body)
            default:
                throw ServerError.notFound("no route \(path); this server offers GET /v1/models and POST /v1/chat/completions")
            }
        } catch let e as ServerError {
            return e.response
        } catch is BatchScheduler.Overloaded {
            return ServerError.overloaded.response
        } catch is BatchScheduler.Cancelled {
            return ServerError.cancelled.response
        } catch {
            return ServerError.engine(String(describing: error)).response
        }
    }

    // MARK: chat completions

    struct ParsedRequest {
        var job: GenerationJob
        var stream: Bool
        var logprobs: Bool
    }

    func parse(_ body: Data) throws -> ParsedRequest {
        guard !body.isEmpty else { throw ServerError.badRequest("the request body is empty; send a JSON object", param: nil) }
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: body) } catch {
            throw ServerError.badRequest("the request body is not valid JSON", param: nil)
        }
        guard let obj = any as? [String: Any] else { throw ServerError.badRequest("the request body must be a JSON object", param: nil) }

        func number(_ key: String) throws -> Double? {
            guard let v = obj[key], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber, !isJSONBool(v) else {
                throw ServerError.badRequest("\(key) must be a number", param: key)
            }
            return n.doubleValue
        }
        func integer(_ key: String) throws -> Int? {
            guard let d = try number(key) else { return nil }
            guard d == d.rounded(), abs(d) < 1e15 else { throw ServerError.badRequest("\(key) must be an integer", param: key) }
            return Int(d)
        }
        func bool(_ key: String) throws -> Bool {
            guard let v = obj[key], !(v is NSNull) else { return false }
            guard isJSONBool(v), let b = v as? Bool else { throw ServerError.badRequest("\(key) must be a boolean", param: key) }
            return b
        }

        if let m = obj["model"], !(m is NSNull) {
            guard let s = m as? String else { throw ServerError.badRequest("model must be a string", param: "model") }
            guard s == modelName || s == model.name else {
                throw ServerError.modelNotFound("the model \"\(s)\" does not exist on this server; it serves \"\(modelName)\"")
            }
        }
        guard let rawMessages = obj["messages"] as? [Any], !rawMessages.isEmpty else {
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
        if let n = try integer("n"), n != 1 { throw ServerError.badRequest("only n = 1 is supported", param: "n") }
        let maxTokens = try integer("max_completion_tokens") ?? integer("max_tokens") ?? options.defaultMaxTokens
        guard maxTokens >= 1, maxTokens <= options.maxTokensLimit else {
            throw ServerError.badRequest("max_tokens must be between 1 and \(options.maxTokensLimit)", param: "max_tokens")
        }
        let temperature = try number("temperature") ?? 1
        guard temperature >= 0, temperature <= 2 else { throw ServerError.badRequest("temperature must be between 0 and 2", param: "temperature") }
        let topP = try number("top_p") ?? 1
        guard topP > 0, topP <= 1 else { throw ServerError.badRequest("top_p must be in (0, 1]", param: "top_p") }
        var seed: UInt64?
        if let s = try integer("seed") { seed = UInt64(bitPattern: Int64(s)) }
        var stop: [String] = []
        if let s = obj["stop"], !(s is NSNull) {
            if let one = s as? String { stop = [one] }
            else if let many = s as? [Any], many.count <= 4, many.allSatisfy({ $0 is String }) { stop = many as! [String] }
            else { throw ServerError.badRequest("stop must be a string or an array of at most 4 strings", param: "stop") }
        }
        let stream = try bool("stream")
        let logprobs = try bool("logprobs")
        var top: Int?
        if let k = try integer("top_logprobs") {
            guard logprobs else { throw ServerError.badRequest("top_logprobs requires logprobs: true", param: "top_logprobs") }
            guard k >= 0, k <= 20 else { throw ServerError.badRequest("top_logprobs must be between 0 and 20", param: "top_logprobs") }
            top = k
        } else if logprobs { top = 0 }

        let steering = try parseSteering(obj["steering"])
        let prompt = try encode(messages)
        guard prompt.count + maxTokens <= model.config.maxPositionEmbeddings else {
            throw ServerError.badRequest("the prompt (\(prompt.count) tokens) plus max_tokens (\(maxTokens)) exceeds the model's context of \(model.config.maxPositionEmbeddings) tokens", param: "messages")
        }
        let job = GenerationJob(prompt: prompt, maxTokens: maxTokens, temperature: temperature, topP: topP, seed: seed,
                                steering: steering, topLogprobs: top, stop: stop)
        return ParsedRequest(job: job, stream: stream, logprobs: logprobs)
    }

    func parseSteering(_ value: Any?) throws -> SteeringSpec? {
        guard let value, !(value is NSNull) else { return nil }
        guard let items = value as? [Any] else { throw ServerError.badRequest("steering must be an array of {vector, layer, coef, positions}", param: "steering") }
        var edits: [SteeringEdit] = []
        for (i, item) in items.enumerated() {
            guard let d = item as? [String: Any] else { throw ServerError.badRequest("steering[\(i)] must be an object", param: "steering") }
            guard let name = d["vector"] as? String else { throw ServerError.badRequest("steering[\(i)].vector must be the name of a vector known to the server", param: "steering") }
            guard let ln = d["layer"] as? NSNumber, !isJSONBool(ln), ln.doubleValue == ln.doubleValue.rounded() else {
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
            let v = try vectors.vector(name, layer: layer, hidden: model.config.hiddenSize)
            edits.append(.add(layer: layer, vector: v, coef: Float(coef), positions: positions))
        }
        return edits.isEmpty ? nil : SteeringSpec(edits: edits)
    }

    /// Chat template when the model has one; otherwise the messages' texts joined by blank lines
    /// (base models), with the tokenizer's special tokens.
    func encode(_ messages: [ChatMessage]) throws -> [Int] {
        let tok = model.tokenizer!
        if tok.chatTemplate != nil {
            let text: String
            do { text = try renderChat(tok, messages: messages, addGenerationPrompt: true) } catch {
                throw ServerError.badRequest("the chat template cannot render these messages: \(error)", param: "messages")
            }
            return tok.encode(text, addSpecialTokens: false)
        }
        return tok.encode(messages.map(\.content).joined(separator: "\n\n"), addSpecialTokens: true)
    }

    func chatCompletion(_ body: Data) async throws -> HTTPResponse {
        let req = try parse(body)
        let id = "chatcmpl-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let tok = model.tokenizer!
        if !req.stream {
            let out = try await scheduler.submit(req.job).result()
            let logprobsJSON: Any = out.logprobs.map { lps in ["content": lps.map { tokenLogprobJSON($0, tok) }] } ?? NSNull()
            return .json(.ok, [
                "id": id, "object": "chat.completion", "created": Int(Date().timeIntervalSince1970), "model": modelName,
                "choices": [["index": 0, "message": ["role": "assistant", "content": out.text],
                             "logprobs": logprobsJSON, "finish_reason": out.finishReason]],
                "usage": ["prompt_tokens": req.job.prompt.count, "completion_tokens": out.tokens.count,
                          "total_tokens": req.job.prompt.count + out.tokens.count],
                "tiller": ["batch_size": out.batchSize, "queue_seconds": out.queueSeconds],
            ])
        }
        // Server-sent events as the engine samples: each delta is text that can no longer change
        // (incomplete characters and possible starts of a stop string are held back).
        let created = Int(Date().timeIntervalSince1970)
        let name = modelName
        let chunk: @Sendable ([String: Any], Any?, String?) -> String = { delta, lp, finish in
            var choice: [String: Any] = ["index": 0, "delta": delta, "finish_reason": finish as Any? ?? NSNull()]
            if let lp { choice["logprobs"] = lp }
            let obj: [String: Any] = ["id": id, "object": "chat.completion.chunk", "created": created, "model": name, "choices": [choice]]
            let d = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            return String(decoding: d, as: UTF8.self)
        }
        let (stream, cont) = AsyncStream<String>.makeStream()
        cont.yield(chunk(["role": "assistant", "content": ""], nil, nil))
        let wantLogprobs = req.logprobs
        let ticket = try scheduler.submit(req.job) { [self] text, lps in
            let lp: Any? = wantLogprobs ? ["content": lps.map { tokenLogprobJSON($0, tok) }] : nil
            cont.yield(chunk(["content": text], lp, nil))
        }
        // A client that goes away stops its sequence at the next engine step.
        cont.onTermination = { _ in ticket.cancel() }
        Task {
            do {
                let out = try await ticket.result()
                cont.yield(chunk([:], nil, out.finishReason))
            } catch {
                let message = (error as? ServerError).map { "\($0)" } ?? String(describing: error)
                let obj: [String: Any] = ["error": ["message": message, "type": "server_error", "param": NSNull(), "code": NSNull()]]
                let d = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
                cont.yield(String(decoding: d, as: UTF8.self))
            }
            cont.yield("[DONE]")
            cont.finish()
        }
        return .events(stream)
    }

    func tokenLogprobJSON(_ t: TokenLogprob, _ tok: Tokenizer) -> [String: Any] {
        func entry(_ id: Int, _ lp: Double) -> [String: Any] {
            let s = tok.decode([id], skipSpecialTokens: false)
            return ["token": s, "logprob": lp, "bytes": Array(s.utf8).map(Int.init)]
        }
        var e = entry(t.token, t.logprob)
        e["top_logprobs"] = t.top.map { entry($0.token, $0.logprob) }
        return e
    }
}

/// JSON true/false as JSONSerialization returns them (`is Bool` also matches the numbers 0 and 1).
func isJSONBool(_ v: Any) -> Bool {
    guard let n = v as? NSNumber else { return false }
    return String(cString: n.objCType) == "c"
}
