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
// - `teacherForced(TeacherForcedRequest)`: teacher-forced scoring with explicit reuse (shared
//   prompt, prefix trie, shared layer prefix) and reduction; the determinism rule is stated there
//   (TeacherForcing.swift).
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
        /// For a pass that starts after layer L (`run(…, startLayer: L)`): the unsteered
        /// `resid_post.L` rows of `tokens`, row-major [tokens.count, hidden].
        var startRows: [Float]? = nil
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
    /// With `startLayer`, every input starts from its `startRows` at that layer (blocks after it only).
    func run(_ seqs: [SequenceInput], plan: HookPlan?, wants: (Int, Int) -> Bool, ws: Workspace, stopAfter: Int? = nil,
             startLayer: Int? = nil, onLogits: (Int, Int, UnsafePointer<Float>) -> Void) {
        let V = vocabSize, H = hiddenSize
        var startRows: [Float] = []
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
                if startLayer != nil { startRows += seq.startRows![progress[s] * H ..< (progress[s] + take) * H] }
                row += take
                budget -= take
                progress[s] += take
                if progress[s] == seq.tokens.count { s += 1 }
            }
            if let startLayer {
                startRows.withUnsafeBufferPointer {
                    transformer.step(items, plan: plan, logitRows: wanted.map(\.row), ws: ws, stopAfter: stopAfter,
                                     start: (startLayer, $0.baseAddress!))
                }
                startRows.removeAll(keepingCapacity: true)
            } else {
                transformer.step(items, plan: plan, logitRows: wanted.map(\.row), ws: ws, stopAfter: stopAfter)
            }
            for (i, w) in wanted.enumerated() { onLogits(w.input, w.position, ws.logits + i * V) }
        }
    }

    // MARK: Scoring (TeacherForcing.swift)

    /// The keys/values of a prompt head shared by many prompts (a judge template with its trait
    /// definition), computed alone, unsteered: a teacher-forced request with reuse
    /// `.prefixTrie(head:)` starts every prompt that begins with these tokens from a copy of
    /// them. Computed alone, the head is the same bits whichever prompt comes first, so a score
    /// depends on its prompt only.
    public func promptHead(_ tokens: [Int]) throws -> PromptHead {
        try validate(tokens, what: "prompt head")
        let ws = Workspace(transformer)
        let cache = transformer.makeCache(capacity: tokens.count)
        _ = run([SequenceInput(cache: cache, tokens: tokens, promptLength: tokens.count, sequence: 0)], plan: nil, logits: .none, ws: ws)
        return PromptHead(model: self, tokens: tokens, cache: cache)
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
