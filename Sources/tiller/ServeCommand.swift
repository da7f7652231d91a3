import ArgumentParser
import Foundation
import TillerModels
import TillerServer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model over an OpenAI-compatible HTTP API, with per-request steering.",
        discussion: """
        Endpoints: GET /v1/models; POST /v1/chat/completions (messages, max_tokens, temperature, top_p, seed, \
        stop, n, logprobs, top_logprobs, stream, stream_options); POST /v1/completions for base models (prompt as \
        text, texts or token ids; max_tokens, temperature, top_p, seed, stop, n, logprobs, stream); GET /v1/vectors \
        (each vector's layers, norms, site and extraction metadata); POST /v1/vectors {"name", "path" | "data": \
        base64} loads a vector file at run time, checked against the model's hidden size and layers. \
        Extension: "steering": [{"vector": NAME, "layer": L, "coef": C, "positions": "all"|"response", \
        "kind": "add"|"ablate"}, …] — every entry applies, so several entries combine vectors across layers \
        (or at one layer). With n > 1, choice j samples with seed + j. \
        Requests are batched continuously: a new request joins the running batch at the next decode step \
        and leaves it when done, so a short answer never waits for a long one; each request keeps its own \
        max_tokens, temperature, top_p, seed, stop strings and steering. With stream: true tokens are sent as \
        server-sent events as they are sampled. A client that disconnects stops its generation.
        """)

    @OptionGroup var deviceOption: DeviceOption
    @Option(name: .shortAndLong, help: modelHelp)
    var model: String
    @Option(help: "Address to bind (loopback by default; anything else exposes the model to the network).")
    var host = "127.0.0.1"
    @Option(help: "Port.")
    var port = 8080
    @Option(name: .customLong("vector"), help: "A steering vector file known to the server, as NAME=PATH (repeatable).")
    var vector: [String] = []
    @Option(name: .customLong("vectors"), help: "A directory whose vector files (*.safetensors, llama.cpp control-vector *.gguf) are known by their file names.")
    var vectorsDirectory: String?
    @Option(name: .customLong("max-batch"), help: "Most requests generating at once (more wait in a queue).")
    var maxBatch = 32
    @Option(name: .customLong("batch-window-ms"), help: "When the engine is idle, how long the first request waits for others to share its prefill.")
    var batchWindowMs = 5.0
    @Option(name: .customLong("max-body-bytes"), help: "Largest request body accepted (413 beyond).")
    var maxBodyBytes = 4 << 20
    @Option(name: .customLong("max-header-bytes"), help: "Largest request line plus headers accepted (431 beyond).")
    var maxHeaderBytes = 16 << 10
    @Option(name: .customLong("max-prompt-tokens"), help: "Most tokens in one prompt (400 beyond; the model's context also bounds prompt + max_tokens).")
    var maxPromptTokens = 8192
    @Option(name: .customLong("max-connections"), help: "Most client connections open at once (503 beyond).")
    var maxConnections = 256
    @Option(name: .customLong("read-timeout"), help: "Seconds a client has to send a whole request (408 beyond); idle keep-alive connections close after it.")
    var readTimeout = 30.0
    @Option(name: .customLong("write-timeout"), help: "Seconds a streamed answer waits for a client that stopped reading before the connection is cut and its generation stops.")
    var writeTimeout = 30.0
    @Option(name: .customLong("api-key"), help: "Require Authorization: Bearer KEY on every route (default: $TILLER_API_KEY; prefer the variable, which `ps` does not show).")
    var apiKey: String?

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be in 1…65535") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
        guard batchWindowMs >= 0, batchWindowMs <= 1000 else { throw ValidationError("--batch-window-ms must be in 0…1000") }
        for v in vector where !v.contains("=") { throw ValidationError("--vector \(v): use NAME=PATH") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024") }
        guard maxHeaderBytes >= 1024 else { throw ValidationError("--max-header-bytes must be at least 1024") }
        guard maxPromptTokens >= 1 else { throw ValidationError("--max-prompt-tokens must be at least 1") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        guard readTimeout > 0, readTimeout <= 3600 else { throw ValidationError("--read-timeout must be in (0, 3600] seconds") }
        guard writeTimeout > 0, writeTimeout <= 3600 else { throw ValidationError("--write-timeout must be in (0, 3600] seconds") }
        if let k = resolvedAPIKey, k.isEmpty || k.contains(where: { $0.isWhitespace }) {
            throw ValidationError("the API key (--api-key or TILLER_API_KEY) must be non-empty and without spaces")
        }
    }

    /// --api-key, else TILLER_API_KEY (an empty variable counts as unset).
    var resolvedAPIKey: String? {
        if let apiKey { return apiKey }
        if let env = ProcessInfo.processInfo.environment["TILLER_API_KEY"], !env.isEmpty { return env }
        return nil
    }

    func run() throws {
        let lm = try LanguageModel.load(model, backend: try deviceOption.backend())
        let vectors = VectorStore()
        if let dir = vectorsDirectory { try vectors.addDirectory(dir) }
        for v in vector {
            let eq = v.firstIndex(of: "=")!
            try vectors.add(name: String(v[..<eq]), path: String(v[v.index(after: eq)...]))
        }
        var o = ChatServer.Options()
        o.host = host
        o.port = port
        o.maxBatch = maxBatch
        o.batchWindow = batchWindowMs / 1000
        o.maxBodyBytes = maxBodyBytes
        o.maxHeaderBytes = maxHeaderBytes
        o.maxPromptTokens = maxPromptTokens
        o.maxConnections = maxConnections
        o.readTimeout = readTimeout
        o.writeTimeout = writeTimeout
        o.apiKey = resolvedAPIKey
        let server = try ChatServer(model: lm, vectors: vectors, options: o)
        let bound = try server.start()
        note("serving \(server.modelName) on http://\(host):\(bound)/v1 (vectors: \(vectors.names.isEmpty ? "none" : vectors.names.joined(separator: ", ")); \(o.apiKey == nil ? "no API key: any local client may call it" : "API key required"))")
        try server.wait()
    }
}
