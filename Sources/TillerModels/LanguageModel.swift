import Foundation
import TillerFormats
import TillerTensor
import TillerTokenizers

// The engine's public face. In short:
//
// - `LanguageModel.load(arg)` or `LanguageModel(weights:tokenizer:name:)`; architectures come from
//   `config.architecture` through the registry in Transformer.swift (Llama/SmolLM2/Llama 3.1,
//   Qwen2, Gemma 2, Gemma 3 text), each file in Architectures/ stating only its differences.
// - `forward(batch, capture:, steering:, logits:, promptLengths:)`: ragged batch, no padding;
//   returns logits (.none/.last/.all) and captured `resid_post.L` rows; a streaming overload
//   hands rows to a callback instead of storing them (scans).
// - `generate(prompts, options:, steering:, capture:)`: batched prefill then one [B, hidden] step
//   per token for the live sequences; greedy or temperature/top-p with a per-sequence seeded RNG.
// - `continuationLogProbs(prompt:, continuations:)`: the prompt's cache is computed once and read
//   in place by every candidate; candidates sharing a prefix run it once (a trie of one-token
//   nodes, one ragged batch per depth).
//
// Hook convention: `resid_post.L` is block L's output (after steering at L), equal to
// transformers' `hidden_states[L+1]` except for the last block, where transformers' entry has
// the final norm applied and Tiller's does not. Steering `.response` edits and capture
// `.response` rows are the positions ≥ the prompt length, decided by absolute position: during
// generation the prompt is never steered by them, so the first generated token is unsteered.
//
// Numerics: fp32 activations; weights stay in the file's precision for few-row products
// (batch-1 decode) and, for models whose fp32 size fits `CPUBackend.fp32CopyLimitBytes`, an fp32
// twin serves many-row products (prefill, batched decode) through sgemm.

/// Which logits a forward pass returns.
public enum LogitsMode: Sendable, Equatable {
    case none
    /// The last position of each sequence.
    case last
    /// Every position of each sequence.
    case all
}

public struct ForwardResult: Sendable {
    public let vocabSize: Int
    /// Per sequence, row-major logits: [1, vocab] for `.last`, [n, vocab] for `.all`, empty for `.none`.
    public var logits: [[Float]]
    /// Per sequence, what the capture spec asked for.
    public var activations: [CapturedActivations]

    /// Logits of sequence `s` at its row `row` (for `.last`, row 0).
    public func logits(sequence s: Int, row: Int = 0) -> ArraySlice<Float> {
        logits[s][row * vocabSize ..< (row + 1) * vocabSize]
    }
}

/// A loaded model: weights on a backend, config, tokenizer. Immutable after loading, so calls
/// may run concurrently (each call has its own scratch and caches).
public final class LanguageModel: @unchecked Sendable {
    public let config: ModelConfig
    public let tokenizer: Tokenizer?
    public let name: String
    let transformer: Transformer
    /// Most tokens stacked into one forward step (bounds scratch memory during prefill).
    public var maxStepTokens = 512

    /// `name` labels the model (and its load errors, unless `source` names the file instead).
    public init(weights: WeightSource, tokenizer: Tokenizer?, name: String, backend: Backend = CPUBackend.shared,
                source: String? = nil) throws {
        self.config = weights.config
        self.tokenizer = tokenizer
        self.name = name
        self.transformer = try Transformer(weights: weights, name: source ?? name, backend: backend)
    }

    /// Loads a model from a cache name (`smollm2-135m-instruct`), a `.gguf` path or a Hugging Face
    /// directory (config.json + safetensors; its tokenizer.json when present).
    public static func load(_ argument: String, backend: Backend = CPUBackend.shared) throws -> LanguageModel {
        let files = try ModelCache.resolve(argument)
        let weights = try ModelCache.openWeightSource(files)
        let tokenizer: Tokenizer?
        switch files {
        case .gguf(let path):
            tokenizer = try loadTokenizer(gguf: (weights as? GGUFWeightSource)?.gguf ?? GGUFFile(path: path))
        case .hfDirectory(let path):
            // Test checkpoints may come without a tokenizer; the engine then works on ids only.
            let fm = FileManager.default
            let hasTokenizer = fm.fileExists(atPath: path + "/tokenizer.json") || fm.fileExists(atPath: path + "/tokenizer.model")
            tokenizer = hasTokenizer ? try loadTokenizer(directory: path) : nil
        }
        let name = ModelCache.known.first { $0.path == files.path }?.name ?? (files.path as NSString).lastPathComponent
        return try LanguageModel(weights: weights, tokenizer: tokenizer, name: name, backend: backend, source: files.path)
    }

    public var hiddenSize: Int { config.hiddenSize }
    public var layerCount: Int { config.numHiddenLayers }
    public var vocabSize: Int { config.vocabSize }

    // MARK: Forward

    /// Forward over a batch of token sequences of any lengths (ragged; no padding).
    /// - promptLengths: per sequence, how many leading tokens are prompt; the rest count as
    ///   response for `.response` steering and capture positions (default: all prompt).
    /// - steering: one spec (or nil) per sequence; missing entries mean no steering.
    public func forward(_ batch: [[Int]], capture: CaptureSpec = .none, steering: [SteeringSpec?] = [],
                        logits: LogitsMode = .last, promptLengths: [Int]? = nil) throws -> ForwardResult {
        let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: batch.count, steering: steering,
                                capture: capture, callback: nil)
        let out = try runForward(batch, plan: plan, logits: logits, promptLengths: promptLengths)
        return ForwardResult(vocabSize: vocabSize, logits: out, activations: plan.finish())
    }

    /// Streaming capture for scans: `onResidual` sees each selected row block of `resid_post.L`
    /// as it is computed and nothing is stored (the result's activations are empty). With
    /// `logits: .none` the pass stops after the last layer a hook needs.
    @discardableResult
    public func forward(_ batch: [[Int]], capture: CaptureSpec, steering: [SteeringSpec?] = [],
                        logits: LogitsMode = .none, promptLengths: [Int]? = nil,
                        onResidual: @escaping ResidualCallback) throws -> ForwardResult {
        let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: batch.count, steering: steering,
                                capture: capture, callback: onResidual)
        let out = try runForward(batch, plan: plan, logits: logits, promptLengths: promptLengths)
        return ForwardResult(vocabSize: vocabSize, logits: out, activations: plan.finish())
    }

    private func runForward(_ batch: [[Int]], plan: HookPlan, logits: LogitsMode, promptLengths: [Int]?) throws -> [[Float]] {
        if let p = promptLengths, p.count != batch.count {
            throw ModelError("forward: \(p.count) prompt lengths for \(batch.count) sequences")
        }
        var seqs: [SequenceInput] = []
        for (i, tokens) in batch.enumerated() {
            try validate(tokens, what: "sequence \(i)")
            seqs.append(SequenceInput(cache: transformer.makeCache(capacity: tokens.count), tokens: tokens,
                                      promptLength: promptLengths?[i] ?? tokens.count, sequence: i))
        }
        // Without logits, the layers after the last hook are not needed.
        let stop: Int? = logits == .none ? max(plan.maxHookLayer, 0) : nil
        return run(seqs, plan: plan, logits: logits, ws: Workspace(transformer), stopAfter: stop)
    }

    func validate(_ tokens: [Int], what: String) throws {
        guard !tokens.isEmpty else { throw ModelError("\(what) is empty") }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= vocabSize }) {
            throw ModelError("\(what): token id \(bad) is outside the vocabulary of \(name) (0..<\(vocabSize))")
        }
    }

    struct SequenceInput {
        let cache: KVCache
        let tokens: [Int]
        let promptLength: Int
        let sequence: Int
    }

    /// Feeds every sequence's tokens through its cache in steps of at most `maxStepTokens`
    /// stacked tokens; returns per input the logits rows asked for.
    func run(_ seqs: [SequenceInput], plan: HookPlan?, logits: LogitsMode, ws: Workspace, stopAfter: Int? = nil) -> [[Float]] {
        let V = vocabSize
        var out = [[Float]](repeating: [], count: seqs.count)
        var progress = [Int](repeating: 0, count: seqs.count)
        var s = 0
        while s < seqs.count {
            var items: [Transformer.Item] = []
            var wanted: [(row: Int, input: Int)] = []
            var budget = max(maxStepTokens, 1)
            var row = 0
            while s < seqs.count && budget > 0 {
                let seq = seqs[s]
                let take = min(seq.tokens.count - progress[s], budget)
                items.append(Transformer.Item(cache: seq.cache, tokens: seq.tokens[progress[s] ..< progress[s] + take],
                                              promptLength: seq.promptLength, sequence: seq.sequence))
                switch logits {
                case .none: break
                case .all: for j in 0..<take { wanted.append((row + j, s)) }
                case .last: if progress[s] + take == seq.tokens.count { wanted.append((row + take - 1, s)) }
                }
                row += take
                budget -= take
                progress[s] += take
                if progress[s] == seq.tokens.count { s += 1 }
            }
            transformer.step(items, plan: plan, logitRows: wanted.map(\.row), ws: ws, stopAfter: stopAfter)
            for (i, w) in wanted.enumerated() {
                out[w.input].append(contentsOf: UnsafeBufferPointer(start: ws.logits + i * V, count: V))
            }
        }
        return out
    }

    // MARK: Scoring

    /// Total log-probability of each continuation after `prompt` (natural log, fp64 softmax).
    /// The prompt's keys/values are computed once and read in place by every candidate (no
    /// copies); the candidates' shared prefixes run once (a trie, one ragged batch per depth).
    /// The prompt is always computed whole, in
    /// one pass: reusing a shared prefix from an earlier prompt would make the last digits of a
    /// score depend on what was scored before it (fp32 GEMMs round by row count), and sharded
    /// sweeps must give the scores of the whole sweep.
    public func continuationLogProbs(prompt: [Int], continuations: [[Int]]) throws -> [Double] {
        try validate(prompt, what: "prompt")
        for (i, c) in continuations.enumerated() where !c.isEmpty { try validate(c, what: "continuation \(i)") }
        let ws = Workspace(transformer)
        let cache = transformer.makeCache(capacity: prompt.count)
        let first = run([SequenceInput(cache: cache, tokens: prompt, promptLength: prompt.count, sequence: 0)],
                        plan: nil, logits: .last, ws: ws)[0]
        let firstLSE = logSumExp(first[...])
        var scores = continuations.map { c -> Double in
            c.isEmpty ? 0 : Double(first[c[0]]) - firstLSE
        }
        // The continuations form a trie: a node is a token prefix whose next-token distribution some
        // continuation needs ("5" for "57⏎" and "5⏎"). Each node runs one token, depth by depth, in
        // a child of the prompt cache that holds copies of its ancestors' few rows; the nodes of
        // one depth run as one ragged batch. Shared prefixes ("5" of "50"…"59") run once.
        var depthCaches: [[Int]: KVCache] = [:]
        let longest = continuations.map(\.count).max() ?? 0
        for depth in 1..<max(longest, 1) {
            var nodes: [[Int]] = []
            var seen = Set<[Int]>()
            for c in continuations where c.count > depth {
                let node = Array(c[..<depth])
                if seen.insert(node).inserted { nodes.append(node) }
            }
            guard !nodes.isEmpty else { break }
            var seqs: [SequenceInput] = []
            for node in nodes {
                let nodeCache = depth == 1 ? cache.child(extra: 1)
                    : depthCaches[Array(node.dropLast())]!.sibling(keeping: depth - 1, extra: 1)
                depthCaches[node] = nodeCache
                seqs.append(SequenceInput(cache: nodeCache, tokens: [node[depth - 1]], promptLength: prompt.count, sequence: seqs.count))
            }
            let logits = run(seqs, plan: nil, logits: .last, ws: ws)
            var rowOf: [[Int]: Int] = [:]
            for (k, node) in nodes.enumerated() { rowOf[node] = k }
            let lse = logits.map { logSumExp($0[...]) }
            for (i, c) in continuations.enumerated() where c.count > depth {
                let k = rowOf[Array(c[..<depth])]!
                scores[i] += Double(logits[k][c[depth]]) - lse[k]
            }
            // Ancestors of the next depth only.
            for key in depthCaches.keys where key.count < depth { depthCaches[key] = nil }
        }
        return scores
    }
}

/// log Σ exp(row) in fp64.
func logSumExp(_ row: ArraySlice<Float>) -> Double {
    var m = -Double.infinity
    for v in row { m = max(m, Double(v)) }
    var sum = 0.0
    for v in row { sum += Foundation.exp(Double(v) - m) }
    return m + Foundation.log(sum)
}
