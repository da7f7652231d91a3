import Foundation
import TillerFormats
import TillerTensor
import TillerTokenizers

// The engine's public face. In short:
//
// - `LanguageModel.load(arg)` or `LanguageModel(weights:tokenizer:name:backend:)`; an architecture
//   is its row of ArchitectureFacts (Llama/SmolLM2/Llama 3.1, Mistral, Qwen2, Qwen3, Gemma 2,
//   Gemma 3 text, Phi-3, OLMo-2), which Transformer.swift reads; the backend (Backend.swift) owns
//   the weights and runs each recorded step.
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
// Numerics: fp32 activations; on the CPU, weights stay in the file's precision for few-row
// products (batch-1 decode) and, for models whose fp32 size fits `CPUBackend.fp32CopyLimitBytes`,
// an fp32 copy serves many-row products (prefill, batched decode); `CPUKernelChoice` decides.

/// One teacher-forced item: a prompt and the continuation whose tokens are scored.
public struct TeacherForcedItem: Sendable, Equatable {
    public var prompt: [Int]
    public var continuation: [Int]
    public init(prompt: [Int], continuation: [Int]) {
        self.prompt = prompt
        self.continuation = continuation
    }
}

/// Continuations that share a prompt and one steering spec (teacher-forced scoring).
public struct TeacherForcedGroup: Sendable, Equatable {
    public var prompt: [Int]
    public var steering: SteeringSpec?
    public var continuations: [[Int]]
    public init(prompt: [Int], steering: SteeringSpec?, continuations: [[Int]]) {
        self.prompt = prompt
        self.steering = steering
        self.continuations = continuations
    }
}

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
                                capture: capture, callback: nil, backend: transformer.backend)
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
                                capture: capture, callback: onResidual, backend: transformer.backend)
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
        let want: (Int, Int) -> Bool
        switch logits {
        case .none: want = { _, _ in false }
        case .all: want = { _, _ in true }
        case .last: want = { s, p in p == seqs[s].tokens.count - 1 }
        }
        run(seqs, plan: plan, wants: want, ws: ws, stopAfter: stopAfter) { s, _, row in
            out[s].append(contentsOf: UnsafeBufferPointer(start: row, count: V))
        }
        return out
    }

    /// The loop behind every forward: `wants(input, position)` picks the rows whose logits are
    /// computed, and `onLogits(input, position, row)` sees each one (valid during the call only).
    func run(_ seqs: [SequenceInput], plan: HookPlan?, wants: (Int, Int) -> Bool, ws: Workspace, stopAfter: Int? = nil,
             onLogits: (Int, Int, UnsafePointer<Float>) -> Void) {
        let V = vocabSize
        var progress = [Int](repeating: 0, count: seqs.count)
        var s = 0
        while s < seqs.count {
            var items: [Transformer.Item] = []
            var wanted: [(row: Int, input: Int, position: Int)] = []
            var budget = max(maxStepTokens, 1)
            var row = 0
            while s < seqs.count && budget > 0 {
                let seq = seqs[s]
                let take = min(seq.tokens.count - progress[s], budget)
                items.append(Transformer.Item(cache: seq.cache, tokens: seq.tokens[progress[s] ..< progress[s] + take],
                                              promptLength: seq.promptLength, sequence: seq.sequence))
                for j in 0..<take where wants(s, progress[s] + j) { wanted.append((row + j, s, progress[s] + j)) }
                row += take
                budget -= take
                progress[s] += take
                if progress[s] == seq.tokens.count { s += 1 }
            }
            transformer.step(items, plan: plan, logitRows: wanted.map(\.row), ws: ws, stopAfter: stopAfter)
            for (i, w) in wanted.enumerated() { onLogits(w.input, w.position, ws.logits + i * V) }
        }
    }

    // MARK: Scoring

    /// Teacher-forced continuations of one shared prompt, each with its own steering (one spec
    /// or nil per continuation): per continuation, the log-probability of each of its tokens.
    /// The prompt runs once, unsteered, and every continuation reads its keys/values in place, so
    /// the steering must leave the prompt alone: only `.response` edits are accepted (they act at
    /// positions ≥ the prompt's length, as in generation). Equal to `teacherForcedLogProbs` on
    /// prompt + continuation up to fp32 rounding.
    public func teacherForcedLogProbs(prompt: [Int], continuations: [[Int]], steering: [SteeringSpec?] = []) throws -> [[Double]] {
        for s in steering { for e in s?.edits ?? [] where e.positions != .response {
            throw ModelError("teacherForcedLogProbs(prompt:continuations:): steering at every position would change the shared prompt; use .response edits or groups")
        } }
        let specs = continuations.indices.map { $0 < steering.count ? steering[$0] : nil }
        return try sharedPromptLogProbs([(prompt, nil, continuations, specs)])[0]
    }

    /// Teacher-forced continuations in groups that share a prompt and a steering spec (applied to
    /// the prompt and its continuations alike, `.all` or `.response`): each prompt runs once, its
    /// continuations read its keys/values in place; all prompts run as one ragged batch, then all
    /// continuations. Per group, per continuation, per token: the log-probability.
    public func teacherForcedLogProbs(groups: [TeacherForcedGroup]) throws -> [[[Double]]] {
        try sharedPromptLogProbs(groups.map { g in (g.prompt, g.steering, g.continuations, g.continuations.map { _ in g.steering }) })
    }

    func sharedPromptLogProbs(_ groups: [(prompt: [Int], steering: SteeringSpec?, continuations: [[Int]], specs: [SteeringSpec?])]) throws -> [[[Double]]] {
        for (g, grp) in groups.enumerated() {
            try validate(grp.prompt, what: "group \(g) prompt")
            for (i, c) in grp.continuations.enumerated() {
                guard !c.isEmpty else { throw ModelError("group \(g) continuation \(i) is empty") }
                try validate(c, what: "group \(g) continuation \(i)")
            }
        }
        let ws = Workspace(transformer)
        let V = vocabSize
        var caches: [KVCache] = []
        var seqs: [SequenceInput] = []
        for (g, grp) in groups.enumerated() {
            let cache = transformer.makeCache(capacity: grp.prompt.count)
            caches.append(cache)
            seqs.append(SequenceInput(cache: cache, tokens: grp.prompt, promptLength: grp.prompt.count, sequence: g))
        }
        var out = groups.map { grp in grp.continuations.map { [Double](repeating: 0, count: $0.count) } }
        let promptPlan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: groups.count, steering: groups.map(\.steering),
                                      capture: .none, callback: nil, backend: transformer.backend)
        run(seqs, plan: promptPlan, wants: { s, p in p == groups[s].prompt.count - 1 }, ws: ws) { s, _, row in
            let lse = logSumExp(UnsafeBufferPointer(start: row, count: V))
            for (i, c) in groups[s].continuations.enumerated() { out[s][i][0] = Double(row[c[0]]) - lse }
        }
        // Continuation tokens 0..<n-1 (each predicts the next) in children of the prompt caches.
        var children: [SequenceInput] = [], owner: [(group: Int, index: Int)] = [], specs: [SteeringSpec?] = []
        for (g, grp) in groups.enumerated() {
            for (i, c) in grp.continuations.enumerated() where c.count > 1 {
                children.append(SequenceInput(cache: caches[g].child(extra: c.count - 1), tokens: Array(c.dropLast()),
                                              promptLength: grp.prompt.count, sequence: children.count))
                owner.append((g, i))
                specs.append(grp.specs[i])
            }
        }
        guard !children.isEmpty else { return out }
        let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: children.count, steering: specs, capture: .none, callback: nil, backend: transformer.backend)
        run(children, plan: plan, wants: { _, _ in true }, ws: ws) { s, p, row in
            let (g, i) = owner[s]
            let c = groups[g].continuations[i]
            out[g][i][p + 1] = Double(row[c[p + 1]]) - logSumExp(UnsafeBufferPointer(start: row, count: V))
        }
        return out
    }

    /// Log-probabilities of candidate next tokens after each prompt (A/B letters), with each
    /// prompt's steering applied. One ragged batch; logits only at each prompt's last position.
    public func nextTokenLogProbs(_ prompts: [[Int]], candidates: [Int], steering: [SteeringSpec?] = []) throws -> [[Double]] {
        var seqs: [SequenceInput] = []
        for (i, p) in prompts.enumerated() {
            try validate(p, what: "prompt \(i)")
            seqs.append(SequenceInput(cache: transformer.makeCache(capacity: p.count), tokens: p, promptLength: p.count, sequence: i))
        }
        try validate(candidates, what: "candidates")
        let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: prompts.count, steering: steering,
                                capture: .none, callback: nil, backend: transformer.backend)
        var out = [[Double]](repeating: [], count: prompts.count)
        let V = vocabSize
        run(seqs, plan: plan, wants: { s, p in p == prompts[s].count - 1 }, ws: Workspace(transformer)) { s, _, row in
            let lse = logSumExp(UnsafeBufferPointer(start: row, count: V))
            out[s] = candidates.map { Double(row[$0]) - lse }
        }
        return out
    }

    /// Teacher-forced log-probabilities: per item, `log p(continuation[t] | prompt, continuation[..<t])`
    /// for every continuation token (natural log, fp64 softmax), with each item's steering applied
    /// (one spec or nil per item; `.response` edits act on the continuation's positions, exactly
    /// as they act on generated tokens). Items run as one ragged batch; logits are computed only
    /// for the rows that predict a continuation token. Judge-free evaluators (log-odds of
    /// reference answers, A/B letters, perplexity) are built on this.
    public func teacherForcedLogProbs(_ items: [TeacherForcedItem], steering: [SteeringSpec?] = []) throws -> [[Double]] {
        var seqs: [SequenceInput] = []
        for (i, it) in items.enumerated() {
            try validate(it.prompt, what: "item \(i) prompt")
            if !it.continuation.isEmpty { try validate(it.continuation, what: "item \(i) continuation") }
            let tokens = it.prompt + it.continuation
            seqs.append(SequenceInput(cache: transformer.makeCache(capacity: tokens.count), tokens: tokens,
                                      promptLength: it.prompt.count, sequence: i))
        }
        let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: items.count, steering: steering,
                                capture: .none, callback: nil, backend: transformer.backend)
        var out = items.map { [Double](repeating: 0, count: $0.continuation.count) }
        let V = vocabSize
        run(seqs, plan: plan, wants: { s, p in p >= items[s].prompt.count - 1 && p < seqs[s].tokens.count - 1 }, ws: Workspace(transformer)) { s, p, row in
            let t = p - (items[s].prompt.count - 1)
            let next = seqs[s].tokens[p + 1]
            out[s][t] = Double(row[next]) - logSumExp(UnsafeBufferPointer(start: row, count: V))
        }
        return out
    }

    /// The logits row that predicts each token of `tokens` after the first, in order:
    /// `body(t, row)` sees the row at position t − 1 (the distribution over token t), valid during
    /// the call only. The whole sequence counts as prompt for steering (`.response` edits do not
    /// act). A served text completion's `echo` with `logprobs` scores its prompt with this.
    public func predictionRows(_ tokens: [Int], steering: SteeringSpec? = nil,
                               _ body: (_ position: Int, _ row: UnsafeBufferPointer<Float>) -> Void) throws {
        try validate(tokens, what: "sequence")
        guard tokens.count > 1 else { return }
        let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: 1, steering: [steering],
                                capture: .none, callback: nil, backend: transformer.backend)
        let seq = SequenceInput(cache: transformer.makeCache(capacity: tokens.count), tokens: tokens,
                                promptLength: tokens.count, sequence: 0)
        let V = vocabSize
        run([seq], plan: plan, wants: { _, p in p < tokens.count - 1 }, ws: Workspace(transformer)) { _, p, row in
            body(p + 1, UnsafeBufferPointer(start: row, count: V))
        }
    }

    /// The keys/values of a prompt head shared by many prompts (a judge template with its trait
    /// definition), computed alone, unsteered: `continuationLogProbs(…, head:)` starts every
    /// prompt that begins with these tokens from a copy of them. Computed alone, the head is the
    /// same bits whichever prompt comes first, so a score depends on its prompt only.
    public func promptHead(_ tokens: [Int]) throws -> PromptHead {
        try validate(tokens, what: "prompt head")
        let ws = Workspace(transformer)
        let cache = transformer.makeCache(capacity: tokens.count)
        _ = run([SequenceInput(cache: cache, tokens: tokens, promptLength: tokens.count, sequence: 0)], plan: nil, logits: .none, ws: ws)
        return PromptHead(model: self, tokens: tokens, cache: cache)
    }

    /// Total log-probability of each continuation after `prompt` (natural log, fp64 softmax).
    /// The prompt's keys/values are computed once and read in place by every candidate (no
    /// copies); the candidates' shared prefixes run once (a trie, one ragged batch per depth).
    /// The prompt is always computed whole, in
    /// one pass: reusing a shared prefix from an earlier prompt would make the last digits of a
    /// score depend on what was scored before it (fp32 GEMMs round by row count), and sharded
    /// sweeps must give the scores of the whole sweep.
    public func continuationLogProbs(prompt: [Int], continuations: [[Int]], head: PromptHead? = nil) throws -> [Double] {
        try validate(prompt, what: "prompt")
        for (i, c) in continuations.enumerated() where !c.isEmpty { try validate(c, what: "continuation \(i)") }
        let ws = Workspace(transformer)
        // With a head the prompt continues a copy of the head's keys/values: only its own tokens run.
        let reused = head.map { $0.tokens.count < prompt.count && prompt.starts(with: $0.tokens) && $0.model === self } ?? false
        let cache = reused ? head!.cache.fork(extra: prompt.count - head!.tokens.count) : transformer.makeCache(capacity: prompt.count)
        let own = reused ? Array(prompt[head!.tokens.count...]) : prompt
        let first = run([SequenceInput(cache: cache, tokens: own, promptLength: prompt.count, sequence: 0)],
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

/// log Σ exp(row): TillerTensor's vectorised one for contiguous rows, else in fp64.
func logSumExp<C: Collection>(_ row: C) -> Double where C.Element == Float {
    if let v = row.withContiguousStorageIfAvailable({ $0.isEmpty ? -.infinity : TillerTensor.logSumExp($0.baseAddress!, count: $0.count) }) { return v }
    var m = -Double.infinity
    for v in row { m = max(m, Double(v)) }
    var sum = 0.0
    for v in row { sum += Foundation.exp(Double(v) - m) }
    return m + Foundation.log(sum)
}

/// A prompt head's keys/values (`LanguageModel.promptHead`): read-only once built.
public final class PromptHead: @unchecked Sendable {
    public let tokens: [Int]
    let cache: KVCache
    let model: LanguageModel
    init(model: LanguageModel, tokens: [Int], cache: KVCache) {
        self.model = model
        self.tokens = tokens
        self.cache = cache
    }
    /// Bytes held by the keys/values.
    public var byteCount: Int { cache.layers * tokens.count * cache.kvDim * 2 * MemoryLayout<Float>.size }
}
