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
    /// prompt + tokens with `promptLengths`.
    public func generate(_ prompts: [[Int]], options: GenerationOptions, steering: [SteeringSpec?] = [],
                         capture: CaptureSpec = .none) throws -> [GenerationResult] {
        guard options.maxNewTokens >= 0 else { throw ModelError("generate: maxNewTokens must be ≥ 0") }
        guard options.temperature >= 0, options.temperature.isFinite else { throw ModelError("generate: temperature must be ≥ 0") }
        guard options.topP > 0, options.topP <= 1 else { throw ModelError("generate: topP must be in (0, 1]") }
        for (i, p) in prompts.enumerated() { try validate(p, what: "prompt \(i)") }
        let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: prompts.count, steering: steering,
                                capture: capture, callback: nil)
        let stops = Set(options.stopTokens ?? defaultStopTokens)
        let B = prompts.count
        let ws = Workspace(transformer)
        let caches = prompts.map { transformer.makeCache(capacity: $0.count + options.maxNewTokens + 1) }
        var results = prompts.map { GenerationResult(promptLength: $0.count, tokens: [], text: nil, finishReason: .length) }
        var rngs = (0..<B).map { _ in SplitMix64(seed: options.seed) }
        let sampler = Sampler(temperature: options.temperature, topP: options.topP, vocab: vocabSize)

        var live: [Int] = []
        if options.maxNewTokens > 0 {
            let seqs = prompts.enumerated().map {
                SequenceInput(cache: caches[$0.offset], tokens: $0.element, promptLength: $0.element.count, sequence: $0.offset)
            }
            let logits = run(seqs, plan: plan, logits: .last, ws: ws)
            for s in 0..<B {
                let t = logits[s].withUnsafeBufferPointer { sampler.pick($0.baseAddress!, rng: &rngs[s]) }
                if accept(t, into: &results[s], stops: stops, budget: options.maxNewTokens) { live.append(s) }
            }
        } else {
            let seqs = prompts.enumerated().map {
                SequenceInput(cache: caches[$0.offset], tokens: $0.element, promptLength: $0.element.count, sequence: $0.offset)
            }
            // Capture only: nothing after the last captured layer is needed.
            _ = run(seqs, plan: plan, logits: .none, ws: ws, stopAfter: max(plan.maxHookLayer, 0))
        }

        while !live.isEmpty {
            let items = live.map { s in
                Transformer.Item(cache: caches[s], tokens: [results[s].tokens.last!][...],
                                 promptLength: prompts[s].count, sequence: s)
            }
            transformer.step(items, plan: plan, logitRows: Array(0..<live.count), ws: ws)
            var still: [Int] = []
            for (i, s) in live.enumerated() {
                let t = sampler.pick(ws.logits + i * vocabSize, rng: &rngs[s])
                if accept(t, into: &results[s], stops: stops, budget: options.maxNewTokens) { still.append(s) }
            }
            live = still
        }

        // Sequences that ran out of budget have a last token never fed back: feed it for capture.
        if !capture.isEmpty, capture.positions != .prompt, capture.positions != .lastPrompt {
            let pending = (0..<B).filter { results[$0].finishReason == .length && !results[$0].tokens.isEmpty }
            if !pending.isEmpty {
                let items = pending.map { s in
                    Transformer.Item(cache: caches[s], tokens: [results[s].tokens.last!][...],
                                     promptLength: prompts[s].count, sequence: s)
                }
                transformer.step(items, plan: plan, logitRows: [], ws: ws, stopAfter: capture.layers.max()!)
            }
        }

        let acts = plan.finish()
        for s in 0..<B {
            if let tok = tokenizer { results[s].text = tok.decode(results[s].tokens, skipSpecialTokens: true) }
            if !capture.isEmpty { results[s].activations = acts[s] }
        }
        return results
    }

    /// Records a sampled token; returns whether the sequence goes on.
    private func accept(_ t: Int, into r: inout GenerationResult, stops: Set<Int>, budget: Int) -> Bool {
        if stops.contains(t) {
            r.finishReason = .stop
            r.stopToken = t
            return false
        }
        r.tokens.append(t)
        if r.tokens.count >= budget {
            r.finishReason = .length
            return false
        }
        return true
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

/// Greedy or temperature/top-p sampling; keeps its probability buffer between tokens.
final class Sampler {
    let temperature: Double
    let topP: Double
    let vocab: Int
    private var probs: [Double] = []
    private var candidates: [Int] = []

    init(temperature: Double, topP: Double, vocab: Int) {
        self.temperature = temperature
        self.topP = topP
        self.vocab = vocab
    }

    func pick(_ logits: UnsafePointer<Float>, rng: inout SplitMix64) -> Int {
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
