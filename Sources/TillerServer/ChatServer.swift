import Foundation
import NIOHTTP1
import TillerFormats
import TillerModels
import TillerSteering
import TillerTokenizers

/// `tiller serve`: the OpenAI-compatible API over one model — chat completions, text completions
/// (base models), the models list and the steering vectors — with Tiller's `steering` extension
/// applied per request (each request steers only its own sequences).
public final class ChatServer: @unchecked Sendable {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 8080
        /// Requests arriving within this window share one engine call.
        public var batchWindow: TimeInterval = 0.005
        public var maxBatch = 32
        /// Largest request body (413 beyond).
        public var maxBodyBytes = 4 << 20
        /// Largest request line plus headers (431 beyond).
        public var maxHeaderBytes = 16 << 10
        /// Most connections open at once (503 beyond).
        public var maxConnections = 256
        /// Seconds a client has to send a whole request (408 beyond); also the keep-alive idle limit.
        public var readTimeout: TimeInterval = 30
        /// Seconds a streamed answer may wait for a client that stopped reading; then it is cut.
        public var writeTimeout: TimeInterval = 30
        /// When set, every route needs `Authorization: Bearer <key>` (401 otherwise).
        public var apiKey: String?
        public var defaultMaxTokens = 256
        public var maxTokensLimit = 4096
        /// Most tokens in one prompt (the model's context also bounds prompt + max_tokens).
        public var maxPromptTokens = 8192
        /// Most choices per request (n, times the prompts of a text completion).
        public var maxChoices = 16
        /// Most entries in one request's `steering` list.
        public var maxSteeringEntries = 64
        public init() {}
    }

    public let model: LanguageModel
    public let modelName: String
    public let vectors: VectorStore
    public let options: Options
    let scheduler: BatchScheduler
    let http: HTTPServer
    let created = Int(Date().timeIntervalSince1970)

    /// Checks every vector in `vectors` against the model (hidden size, layers) before serving.
    public init(model: LanguageModel, name: String? = nil, vectors: VectorStore = VectorStore(), options: Options = Options()) throws {
        guard model.tokenizer != nil else { throw ServerError.engine("model \(model.name) has no tokenizer") }
        self.model = model
        self.modelName = name ?? model.name
        self.vectors = vectors
        self.options = options
        try vectors.bind(hidden: model.config.hiddenSize, layers: model.config.numHiddenLayers)
        scheduler = try BatchScheduler(model: model, window: options.batchWindow, maxBatch: options.maxBatch)
        if let key = options.apiKey, key.isEmpty { throw ServerError.engine("the API key must not be empty") }
        var limits = HTTPLimits()
        limits.maxBodyBytes = options.maxBodyBytes
        limits.maxHeaderBytes = options.maxHeaderBytes
        limits.maxConnections = options.maxConnections
        limits.readTimeout = options.readTimeout
        limits.writeTimeout = options.writeTimeout
        http = HTTPServer(limits: limits)
    }

    /// Starts serving; returns the bound port.
    @discardableResult
    public func start() throws -> Int {
        scheduler.start()
        let key = options.apiKey.map { Array("Bearer \($0)".utf8) }
        return try http.start(host: options.host, port: options.port, admission: { head in
            guard let key else { return nil }
            return Self.authorized(head.headers, key) ? nil
                : ServerError.unauthorized("this server needs an API key: send Authorization: Bearer <key> (the key serve was started with)").response
        }) { [self] req in await self.handle(req) }
    }

    /// Whether the request carries the key, compared in constant time (the key never appears in
    /// an answer or a log line).
    static func authorized(_ headers: HTTPHeaders, _ expected: [UInt8]) -> Bool {
        let values = headers["Authorization"]
        guard values.count == 1 else { return false }
        let got = Array(values[0].utf8)
        var diff = UInt8(got.count == expected.count ? 0 : 1)
        for i in 0..<expected.count { diff |= expected[i] ^ (i < got.count ? got[i] : 0) }
        return diff == 0
    }

    /// Connections open now and those refused over the connection limit.
    public var connectionStats: (open: Int, refused: Int) { http.connectionStats }

    public func wait() throws { try http.wait() }

    public func shutdown() {
        // Queued requests fail first (the running batch finishes), then the HTTP side stops.
        scheduler.stop()
        http.shutdown()
    }

    /// Engine steps, sequences they carried summed over steps (sequences / steps = mean batch
    /// size), the largest batch and the sequences generating now.
    public var batchStats: (steps: Int, sequences: Int, peak: Int, active: Int) { scheduler.stats }

    static let routes = "GET /v1/models, POST /v1/chat/completions, POST /v1/completions, GET and POST /v1/vectors"

    func handle(_ req: HTTPRequest) async -> HTTPResponse {
        let path = req.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? req.path
        func only(_ method: HTTPMethod) throws {
            guard req.method == method else { throw ServerError.methodNotAllowed("\(req.method) is not allowed on \(path); use \(method)") }
        }
        do {
            switch path {
            case "/v1/models":
                try only(.GET)
                return .json(.ok, ["object": "list", "data": [["id": modelName, "object": "model", "created": created, "owned_by": "tiller"]]])
            case "/v1/chat/completions":
                try only(.POST)
                return try await complete(try parseChat(req.body))
            case "/v1/completions":
                try only(.POST)
                return try await complete(try parseText(req.body))
            case "/v1/vectors":
                switch req.method {
                case .GET: return listVectors()
                case .POST: return try loadVector(req.body)
                default: throw ServerError.methodNotAllowed("\(req.method) is not allowed on /v1/vectors; use GET or POST")
                }
            default:
                throw ServerError.notFound("no route \(path); this server offers \(Self.routes)")
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

    // MARK: vectors

    func listVectors() -> HTTPResponse {
        .json(.ok, ["object": "list", "data": vectors.names.compactMap { vectors.entry($0) }])
    }

    /// `POST /v1/vectors` `{"name": N, "path": FILE}` (a *.safetensors or *.gguf file on the server's disk) or
    /// `{"name": N, "data": BASE64}` (the file's bytes): loads a vector file now, checked against
    /// the model's hidden size and layers; `"replace": true` replaces a vector of the same name.
    func loadVector(_ body: Data) throws -> HTTPResponse {
        let f = try RequestFields(body)
        guard let name = try f.string("name") else { throw ServerError.badRequest("name is required", param: "name") }
        guard VectorStore.isValidName(name) else {
            throw ServerError.badRequest("name must be 1–128 characters of letters, digits, '_', '-', '.'", param: "name")
        }
        let replace = try f.bool("replace") ?? false
        if !replace, vectors.file(name) != nil {
            throw ServerError.conflict("a vector named \"\(name)\" is already loaded; send \"replace\": true to replace it", param: "name")
        }
        let path = try f.string("path"), data = try f.string("data")
        guard (path == nil) != (data == nil) else {
            throw ServerError.badRequest("send exactly one of path (a vector file on the server) or data (the file's bytes, base64)", param: "path")
        }
        var file: String
        var temporary: String?
        if let path {
            // Only vector files are read from the server's disk (an error message never reports
            // bytes of any other file).
            var isDirectory: ObjCBool = false
            guard VectorStore.extensions.contains(where: { path.hasSuffix($0) }) else {
                throw ServerError.badRequest("path must name a vector file ending in \(VectorStore.extensions.joined(separator: " or ")); to send the file itself, use data", param: "path")
            }
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
                throw ServerError.badRequest("vector \"\(name)\": no vector file at \(path) on the server", param: "path")
            }
            file = path
        } else {
            guard let bytes = Data(base64Encoded: data!, options: .ignoreUnknownCharacters), !bytes.isEmpty else {
                throw ServerError.badRequest("data must be the vector file's bytes in base64", param: "data")
            }
            file = FileManager.default.temporaryDirectory.appendingPathComponent("tiller-serve-\(UUID().uuidString)-\(name)").path
            try bytes.write(to: URL(fileURLWithPath: file))
            temporary = file
        }
        defer { if let temporary { try? FileManager.default.removeItem(atPath: temporary) } }
        do {
            try vectors.add(name: name, path: file, replace: replace, source: temporary == nil ? nil : "upload:\(name)")
        } catch let e as VectorStore.VectorExists {
            throw ServerError.conflict(e.description, param: "name")
        } catch {
            // An uploaded file is named by the request field, not by its temporary path.
            var message = String(describing: error)
            if let temporary { message = message.replacingOccurrences(of: temporary, with: "data") }
            throw ServerError.badRequest("vector \"\(name)\": \(message)", param: path != nil ? "path" : "data")
        }
        return .json(.ok, vectors.entry(name)!)
    }
}
