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

    @Option(name: .shortAndLong, help: "Model: cache name, .gguf path or HF directory.")
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

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be in 1…65535") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
        guard batchWindowMs >= 0, batchWindowMs <= 1000 else { throw ValidationError("--batch-window-ms must be in 0…1000") }
        for v in vector where !v.contains("=") { throw ValidationError("--vector \(v): use NAME=PATH") }
    }

    func run() throws {
        let lm = try LanguageModel.load(model)
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
        let server = try ChatServer(model: lm, vectors: vectors, options: o)
        let bound = try server.start()
        note("serving \(server.modelName) on http://\(host):\(bound)/v1 (vectors: \(vectors.names.isEmpty ? "none" : vectors.names.joined(separator: ", ")))")
        try server.wait()
    }
}
