import Foundation
import TillerTokenizers

public struct GenerationOptions: Sendable, Equatable {
    public var maxNewTokens: Int
    /// 0 = greedy (argmax, first index on ties, as torch.argmax).
    public var temperature: Double
    /// Nucleus sampling mass (1 = off).
    public var topP: Double
    /// Each sequence gets its own generator seeded with this value, so a sequence's samples do
    /// not depend on what else is in the batch.
    public var seed: UInt64
    /// Generation stops on any of these; nil = tokenizer EOS/end-of-turn tokens ∪ config EOS.
    public var stopTokens: [Int]?

    public init(maxNewTokens: Int = 256, temperature: Double = 0, topP: Double = 1, seed: UInt64 = 0,
                stopTokens: [Int]? = nil) {
        self.maxNewTokens = maxNewTokens
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
        self.stopTokens = stopTokens
    }
    public static let greedy = GenerationOptions()
}

public enum FinishReason: String, Sendable, Codable {
    /// A stop token was produced (it is not included in `tokens`).
    case stop
    /// The token budget ran out.
    case length
    /// The token callback (or `GenerationBatch.cancel`) ended the sequence.
    case cancelled
}

public struct GenerationResult: Sendable {
    public var promptLength: Int
    /// Generated tokens, without the stop token.
    public var tokens: [Int]
    /// Decoded `tokens` (special tokens skipped), when the model has a tokenizer.
    public var text: String?
    public var finishReason: FinishReason
    /// The stop token that ended generation, if any.
    public var stopToken: Int?
    /// Captured `resid_post` rows (positions relative to prompt + generated tokens).
    public var activations: CapturedActivations?
}

/// One sampled token, as the token callback sees it on the generating thread.
public struct TokenStep {
    /// The sequence: its index in `generate`'s prompts, or the id `GenerationBatch.add` returned.
    public let sequence: Int
    /// The sampled token (the stop token when `finish` is `.stop`; it is not part of the result).
    public let token: Int
    /// Its position in the response (0: the first generated token).
    public let index: Int
    /// The raw logits it was sampled from (before temperature); valid only during the call.
    public let logits: UnsafeBufferPointer<Float>
    /// Set when this token ends the sequence.
    public let finish: FinishReason?
}

/// Called once per sampled token; returning false ends that sequence now (`.cancelled`).
public typealias TokenCallback = (TokenStep) -> Bool

extension LanguageModel {
    /// The stop tokens used when options give none.
    public var defaultStopTokens: [Int] {
        var s = Set(config.eosTokenIds)
        if let t = tokenizer { s.formUnion(t.eosTokenIds) }
        return s.sorted()
    }

    /// Batched generation: all prompts are prefilled together, then each decode step feeds one
    /// token per live sequence as one [B, hidden] matrix; finished sequences drop out.
    /// Steering `.response` edits apply to generated tokens (positions ≥ prompt length).
    /// Capture sees prompt and generated tokens; a response capture also covers the last
    /// generated token (one extra pass to its capture layer), so it equals a `forward` over
    /// prompt + tokens with `promptLengths`. `onToken` sees every token as it is sampled.
    public func generate(_ prompts: [[Int]], options: GenerationOptions, steering: [SteeringSpec?] = [],
                         capture: CaptureSpec = .none, onToken: TokenCallback? = nil) throws -> [GenerationResult] {
        try generate(prompts, perSequence: Array(repeating: options, count: prompts.count), steering: steering,
                     capture: capture, onToken: onToken)
    }

    /// `generate` with options of each sequence's own (budget, sampling, seed, stop tokens), all in one batch.
    public func generate(_ prompts: [[Int]], perSequence options: [GenerationOptions], steering: [SteeringSpec?] = [],
                         capture: CaptureSpec = .none, onToken: TokenCallback? = nil) throws -> [GenerationResult] {
        guard options.count == prompts.count else {
            throw ModelError("generate: \(options.count) option sets for \(prompts.count) prompts")
        }
        guard steering.count <= prompts.count else {
            throw ModelError("steering: \(steering.count) specs given for a batch of \(prompts.count) sequences")
        }
        let batch = try GenerationBatch(model: self, capture: capture)
        for (i, p) in prompts.enumerated() {
            try batch.add(p, options: options[i], steering: i < steering.count ? steering[i] : nil)
        }
        while !batch.isEmpty { batch.step(onToken: onToken) }
        return (0..<prompts.count).map { batch.take($0)! }
    }
}

/// Continuous batching: sequences join (`add`) and leave (finished, `cancel`) between steps, so
/// a server can admit a request while others are still generating. Each `step` prefills the
/// sequences added since the last one (a ragged batch) and advances every live sequence by one
/// token (one [B, hidden] pass). Every sequence has its own options, seeded generator and
/// steering. Not thread-safe: one thread drives a batch.
public final class GenerationBatch {
    public let model: LanguageModel
    let capture: CaptureSpec
    let plan: HookPlan
    let ws: Workspace
    let sampler: Sampler

    final class SequenceState {
        let id: Int
        let prompt: [Int]
        let options: GenerationOptions
        let stops: Set<Int>
        let cache: KVCache
        var rng: SplitMix64
        var result: GenerationResult
        init(id: Int, prompt: [Int], options: GenerationOptions, stops: Set<Int>, cache: KVCache) {
            self.id = id; self.prompt = prompt; self.options = options; self.stops = stops; self.cache = cache
            rng = SplitMix64(seed: options.seed)
            result = GenerationResult(promptLength: prompt.count, tokens: [], text: nil, finishReason: .length)
        }
    }

    private var sequences: [Int: SequenceState] = [:]
    /// Added, not yet prefilled, in order.
    private var waiting: [Int] = []
    /// Generating, in order.
    private var live: [Int] = []
    /// Finished, result not yet taken.
    private var done: [Int: GenerationResult] = [:]
    private var nextID = 0

    public init(model: LanguageModel, capture: CaptureSpec = .none) throws {
        self.model = model
        self.capture = capture
        plan = try HookPlan(layers: model.layerCount, hidden: model.hiddenSize, sequences: 0, steering: [],
                            capture: capture, callback: nil, backend: model.transformer.backend)
        ws = Workspace(model.transformer)
        sampler = Sampler(vocab: model.vocabSize)
    }

    /// Sequences waiting or generating.
    public var activeCount: Int { waiting.count + live.count }
    public var isEmpty: Bool { waiting.isEmpty && live.isEmpty }

    /// Queues a prompt; it is prefilled by the next `step`. Returns its id (0, 1, … in order).
    @discardableResult
    public func add(_ prompt: [Int], options: GenerationOptions, steering: SteeringSpec? = nil) throws -> Int {
        guard options.maxNewTokens >= 0 else { throw ModelError("generate: maxNewTokens must be ≥ 0") }
        guard options.temperature >= 0, options.temperature.isFinite else { throw ModelError("generate: temperature must be ≥ 0") }
        guard options.topP > 0, options.topP <= 1 else { throw ModelError("generate: topP must be in (0, 1]") }
        let id = nextID
        try model.validate(prompt, what: "prompt \(id)")
        try plan.add(sequence: id, steering: steering)
        nextID += 1
        let stops = Set(options.stopTokens ?? model.defaultStopTokens)
        let cache = model.transformer.makeCache(capacity: prompt.count + options.maxNewTokens + 1)
        sequences[id] = SequenceState(id: id, prompt: prompt, options: options, stops: stops, cache: cache)
        waiting.append(id)
        return id
    }

    /// Ends a sequence before its next token (`.cancelled`); a finished or unknown id is ignored.
    public func cancel(_ id: Int) {
        guard let s = sequences[id] else { return }
        waiting.removeAll { $0 == id }
        live.removeAll { $0 == id }
        s.result.finishReason = .cancelled
        finish([s])
    }

    /// The result of a finished sequence (removed from the batch), or nil while it runs.
    public func take(_ id: Int) -> GenerationResult? { done.removeValue(forKey: id) }

    /// One engine step. Returns the ids that finished in it.
    @discardableResult
    public func step(onToken: TokenCallback? = nil) -> [Int] {
        var finished: [SequenceState] = []
        let V = model.vocabSize
        // Sequences live before this step advance by one token; those added since are prefilled.
        let advancing = live.compactMap { sequences[$0] }
        var admittedLive: [Int] = []
        if !waiting.isEmpty {
            let admitted = waiting.compactMap { sequences[$0] }
            waiting = []
            // Zero budgets only capture: nothing after the last captured layer is needed.
            let captureOnly = admitted.filter { $0.options.maxNewTokens == 0 }
            let sampled = admitted.filter { $0.options.maxNewTokens > 0 }
            if !captureOnly.isEmpty {
                _ = model.run(captureOnly.map(input), plan: plan, logits: .none, ws: ws, stopAfter: max(plan.maxHookLayer, 0))
                finished += captureOnly
            }
            if !sampled.isEmpty {
                let logits = model.run(sampled.map(input), plan: plan, logits: .last, ws: ws)
                for (s, row) in zip(sampled, logits) {
                    let goesOn = row.withUnsafeBufferPointer { advance(s, logits: $0.baseAddress!, onToken: onToken) }
                    if goesOn { admittedLive.append(s.id) } else { finished.append(s) }
                }
            }
        }
        var still: [Int] = []
        if !advancing.isEmpty {
            let items = advancing.map { s in
                Transformer.Item(cache: s.cache, tokens: [s.result.tokens.last!][...], promptLength: s.prompt.count, sequence: s.id)
            }
            model.transformer.step(items, plan: plan, logitRows: Array(0..<advancing.count), ws: ws)
            for (i, s) in advancing.enumerated() {
                if advance(s, logits: ws.logits + i * V, onToken: onToken) { still.append(s.id) } else { finished.append(s) }
            }
        }
        live = still + admittedLive
        finish(finished)
        return finished.map(\.id)
    }

    private func input(_ s: SequenceState) -> LanguageModel.SequenceInput {
        LanguageModel.SequenceInput(cache: s.cache, tokens: s.prompt, promptLength: s.prompt.count, sequence: s.id)
    }

    /// Samples a sequence's next token; returns whether it goes on.
    private func advance(_ s: SequenceState, logits: UnsafePointer<Float>, onToken: TokenCallback?) -> Bool {
        let o = s.options
        let t = sampler.pick(logits, temperature: o.temperature, topP: o.topP, rng: &s.rng)
        var finish: FinishReason? = nil
        if s.stops.contains(t) {
            finish = .stop
            s.result.stopToken = t
        } else {
            s.result.tokens.append(t)
            if s.result.tokens.count >= o.maxNewTokens { finish = .length }
        }
        if let onToken {
            let step = TokenStep(sequence: s.id, token: t, index: s.result.tokens.count - (finish == .stop ? 0 : 1),
                                 logits: UnsafeBufferPointer(start: logits, count: model.vocabSize), finish: finish)
            if !onToken(step), finish == nil { finish = .cancelled }
        }
        if let finish { s.result.finishReason = finish }
        return finish == nil
    }

    /// Moves finished sequences out; a response capture first sees their last token (never fed back).
    private func finish(_ seqs: [SequenceState]) {
        if !capture.isEmpty, capture.positions != .prompt, capture.positions != .lastPrompt {
            let pending = seqs.filter { $0.result.finishReason != .stop && !$0.result.tokens.isEmpty }
            if !pending.isEmpty {
                let items = pending.map { s in
                    Transformer.Item(cache: s.cache, tokens: [s.result.tokens.last!][...], promptLength: s.prompt.count, sequence: s.id)
                }
                model.transformer.step(items, plan: plan, logitRows: [], ws: ws, stopAfter: capture.layers.max()!)
            }
        }
        for s in seqs {
            var r = s.result
            let acts = plan.remove(sequence: s.id)
            if !capture.isEmpty { r.activations = acts }
            if let tok = model.tokenizer { r.text = tok.decode(r.tokens, skipSpecialTokens: true) }
            done[s.id] = r
            sequences[s.id] = nil
        }
    }
}

// MARK: - Sampling

/// SplitMix64: tiny, fast, and reproducible across platforms.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 bits.
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }
}

/// Greedy or temperature/top-p sampling (per call, so sequences of one batch may differ); keeps
/// its probability buffer between tokens.
final class Sampler {
    let vocab: Int
    private var probs: [Double] = []
    private var candidates: [Int] = []

    init(vocab: Int) {
        self.vocab = vocab
    }

    func pick(_ logits: UnsafePointer<Float>, temperature: Double, topP: Double, rng: inout SplitMix64) -> Int {
        if temperature == 0 {
            var best = 0
            var m = logits[0]
            for i in 1..<vocab where logits[i] > m { m = logits[i]; best = i }
            return best
        }
        // softmax(logits / T) in fp64.
        var m = -Double.infinity
        for i in 0..<vocab { m = max(m, Double(logits[i])) }
        if probs.count != vocab { probs = [Double](repeating: 0, count: vocab) }
        var sum = 0.0
        for i in 0..<vocab {
            let e = Foundation.exp((Double(logits[i]) - m) / temperature)
            probs[i] = e
            sum += e
        }
        for i in 0..<vocab { probs[i] /= sum }
        candidates.removeAll(keepingCapacity: true)
        if topP < 1 {
            // The nucleus is the smallest top set with mass ≥ topP. Only tokens above a threshold can be
            // in it once those above the threshold already carry that mass, so sort just those.
            let pmax = probs.max()!
            var threshold = pmax * 1e-3
            while true {
                candidates.removeAll(keepingCapacity: true)
                var mass = 0.0
                for i in 0..<vocab where probs[i] >= threshold { candidates.append(i); mass += probs[i] }
                if mass >= topP || threshold == 0 { break }
                threshold = threshold > 1e-300 ? threshold * 1e-3 : 0
            }
            let p = probs
            candidates.sort { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
            var keep = 0
            var acc = 0.0
            while keep < candidates.count {
                acc += probs[candidates[keep]]
                keep += 1
                if acc >= topP { break }
            }
            candidates.removeLast(candidates.count - keep)
        } else {
            for i in 0..<vocab where probs[i] > 0 { candidates.append(i) }
        }
        var total = 0.0
        for i in candidates { total += probs[i] }
        let u = rng.uniform() * total
        var acc = 0.0
        for i in candidates {
            acc += probs[i]
            if u < acc { return i }
        }
        return candidates.last!
    }
}
