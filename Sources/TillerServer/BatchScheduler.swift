import Foundation
import TillerModels
import TillerTokenizers

/// One chat completion for the engine.
struct GenerationJob: @unchecked Sendable {
    var prompt: [Int]
    var maxTokens: Int
    var temperature: Double
    var topP: Double
    /// nil: the batch's seed is used (a fresh random one per batch).
    var seed: UInt64?
    var steering: SteeringSpec?
    /// nil: no log-probabilities; k: the chosen token's plus the top k.
    var topLogprobs: Int?
    var stop: [String]
    var enqueued = Date()
    var continuation: CheckedContinuation<GenerationOutput, Error>?
}

struct TokenLogprob: Sendable {
    var token: Int
    var logprob: Double
    var top: [(token: Int, logprob: Double)]
}

struct GenerationOutput: Sendable {
    var tokens: [Int]
    var text: String
    /// "stop" or "length"
    var finishReason: String
    var logprobs: [TokenLogprob]?
    /// How many requests shared the engine call that produced this one.
    var batchSize: Int
    var queueSeconds: Double
}

/// Gathers requests that arrive within `window` of each other into one batched engine call.
/// The engine is synchronous and CPU-bound, so it runs on one dedicated thread, never on the
/// event loop. Requests that cannot share a call (different temperature, top-p or seed) run as
/// separate groups of the same gathering round.
final class BatchScheduler: @unchecked Sendable {
    let model: LanguageModel
    let window: TimeInterval
    let maxBatch: Int
    let maxQueue: Int
    private let cond = NSCondition()
    private var pending: [GenerationJob] = []
    private var thread: Thread?
    private var stopping = false
    /// Statistics: engine calls and sequences they carried.
    private(set) var calls = 0
    private(set) var sequences = 0

    init(model: LanguageModel, window: TimeInterval = 0.005, maxBatch: Int = 32, maxQueue: Int = 1024) {
        self.model = model
        self.window = window
        self.maxBatch = max(maxBatch, 1)
        self.maxQueue = maxQueue
    }

    func start() {
        let t = Thread { [weak self] in self?.loop() }
        t.name = "tiller.serve.engine"
        t.stackSize = 16 << 20
        thread = t
        t.start()
    }

    func stop() {
        cond.lock()
        stopping = true
        cond.broadcast()
        cond.unlock()
    }

    var stats: (calls: Int, sequences: Int) {
        cond.lock(); defer { cond.unlock() }
        return (calls, sequences)
    }

    struct Overloaded: Error {}

    func submit(_ job: GenerationJob) async throws -> GenerationOutput {
        try await withCheckedThrowingContinuation { cont in
            var j = job
            j.continuation = cont
            j.enqueued = Date()
            cond.lock()
            if pending.count >= maxQueue || stopping {
                cond.unlock()
                cont.resume(throwing: Overloaded())
                return
            }
            pending.append(j)
            cond.signal()
            cond.unlock()
        }
    }

    private func loop() {
        while true {
            cond.lock()
            while pending.isEmpty && !stopping { cond.wait() }
            if stopping {
                let left = pending
                pending = []
                cond.unlock()
                for j in left { j.continuation?.resume(throwing: Overloaded()) }
                return
            }
            // A short gathering window: requests arriving together share one engine call.
            let deadline = Date().addingTimeInterval(window)
            while pending.count < maxBatch && !stopping && cond.wait(until: deadline) {}
            let take = Array(pending.prefix(maxBatch))
            pending.removeFirst(take.count)
            cond.unlock()

            var groups: [String: [GenerationJob]] = [:]
            var order: [String] = []
            for j in take {
                // Greedy decoding ignores the seed; sampled sequences share options only when equal.
                let key = j.temperature == 0 ? "greedy" : "\(j.temperature)/\(j.topP)/\(j.seed.map(String.init) ?? "-")"
                if groups[key] == nil { order.append(key) }
                groups[key, default: []].append(j)
            }
            for key in order { run(groups[key]!) }
        }
    }

    private func run(_ jobs: [GenerationJob]) {
        let started = Date()
        do {
            let outs = try execute(jobs)
            cond.lock()
            calls += 1
            sequences += jobs.count
            cond.unlock()
            for (j, var o) in zip(jobs, outs) {
                o.queueSeconds = started.timeIntervalSince(j.enqueued)
                j.continuation?.resume(returning: o)
            }
        } catch {
            for j in jobs { j.continuation?.resume(throwing: error) }
        }
    }

    /// The engine work for one group: batched generation with one steering spec per sequence,
    /// then (for requests asking for log-probabilities) one batched forward over prompt +
    /// generated tokens for the exact per-token distributions.
    func execute(_ jobs: [GenerationJob]) throws -> [GenerationOutput] {
        let tok = model.tokenizer!
        let prompts = jobs.map(\.prompt)
        let steering = jobs.map(\.steering)
        var tokens: [[Int]]
        var finish: [String]
        // Greedy single-token requests (judges) need only the prompt's last logits: one forward.
        let singleGreedy = jobs.allSatisfy { $0.temperature == 0 && $0.maxTokens == 1 }
        var lastLogits: [[Float]]? = nil
        if singleGreedy {
            let f = try model.forward(prompts, steering: steering, logits: .last)
            lastLogits = f.logits
            let stops = Set(model.defaultStopTokens)
            tokens = []
            finish = []
            for row in f.logits {
                let t = argmax(row[...])
                if stops.contains(t) { tokens.append([]); finish.append("stop") } else { tokens.append([t]); finish.append("length") }
            }
        } else {
            var options = GenerationOptions(maxNewTokens: jobs.map(\.maxTokens).max()!)
            options.temperature = jobs[0].temperature
            options.topP = jobs[0].topP
            options.seed = jobs[0].seed ?? UInt64.random(in: 0 ... UInt64.max)
            let results = try model.generate(prompts, options: options, steering: steering)
            tokens = []
            finish = []
            for (j, r) in zip(jobs, results) {
                // The batch ran to the longest budget; a sequence's first k tokens do not depend on it.
                if r.tokens.count > j.maxTokens {
                    tokens.append(Array(r.tokens.prefix(j.maxTokens)))
                    finish.append("length")
                } else {
                    tokens.append(r.tokens)
                    finish.append(r.finishReason == .stop ? "stop" : "length")
                }
            }
        }
        // Stop strings: cut the text at the first occurrence and keep the tokens that lead up to it.
        var texts: [String] = []
        for i in jobs.indices {
            var text = tok.decode(tokens[i], skipSpecialTokens: true)
            if let cut = Self.firstStop(in: text, jobs[i].stop) {
                text = String(text[..<cut])
                var k = 0
                while k < tokens[i].count && tok.decode(Array(tokens[i].prefix(k + 1)), skipSpecialTokens: true).count <= text.count { k += 1 }
                if k < tokens[i].count { k += 1 }  // the token that completed the stop string
                tokens[i] = Array(tokens[i].prefix(k))
                finish[i] = "stop"
            }
            texts.append(text)
        }
        var logprobs = [[TokenLogprob]?](repeating: nil, count: jobs.count)
        let wanting = jobs.indices.filter { jobs[$0].topLogprobs != nil && !tokens[$0].isEmpty }
        if let last = lastLogits {
            for i in wanting {
                logprobs[i] = [Self.logprob(last[i][...], chosen: tokens[i][0], top: jobs[i].topLogprobs!)]
            }
        } else if !wanting.isEmpty {
            // Logits for every generated position; a few sequences at a time bounds the memory.
            for chunk in stride(from: 0, to: wanting.count, by: 4).map({ Array(wanting[$0 ..< min($0 + 4, wanting.count)]) }) {
                let seqs = chunk.map { jobs[$0].prompt + tokens[$0].dropLast() }
                let f = try model.forward(seqs, steering: chunk.map { jobs[$0].steering }, logits: .all,
                                          promptLengths: chunk.map { jobs[$0].prompt.count })
                let V = f.vocabSize
                for (k, i) in chunk.enumerated() {
                    let p = jobs[i].prompt.count
                    logprobs[i] = tokens[i].enumerated().map { (j, t) in
                        let row = p - 1 + j
                        return Self.logprob(f.logits[k][row * V ..< (row + 1) * V], chosen: t, top: jobs[i].topLogprobs!)
                    }
                }
            }
        }
        for i in wanting where logprobs[i] == nil { logprobs[i] = [] }
        return jobs.indices.map { i in
            GenerationOutput(tokens: tokens[i], text: texts[i], finishReason: finish[i],
                             logprobs: jobs[i].topLogprobs == nil ? nil : (logprobs[i] ?? []), batchSize: jobs.count, queueSeconds: 0)
        }
    }

    static func firstStop(in text: String, _ stops: [String]) -> String.Index? {
        stops.compactMap { s in s.isEmpty ? nil : text.range(of: s)?.lowerBound }.min()
    }

    /// Log-softmax (fp64) of the chosen token and the top k.
    static func logprob(_ row: ArraySlice<Float>, chosen: Int, top k: Int) -> TokenLogprob {
        var m = -Double.infinity
        for v in row { m = max(m, Double(v)) }
        var sum = 0.0
        for v in row { sum += Foundation.exp(Double(v) - m) }
        let lse = m + Foundation.log(sum)
        let base = row.startIndex
        var top: [(Int, Double)] = []
        if k > 0 {
            // Partial selection: keep the k best seen so far.
            var best: [(Int, Float)] = []
            for (i, v) in row.enumerated() {
                if best.count < k { best.append((i, v)); best.sort { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) } }
                else if v > best[k - 1].1 { best[k - 1] = (i, v); best.sort { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) } }
            }
            top = best.map { ($0.0, Double($0.1) - lse) }
        }
        return TokenLogprob(token: chosen, logprob: Double(row[base + chosen]) - lse, top: top)
    }
}

func argmax(_ row: ArraySlice<Float>) -> Int {
    var best = row.startIndex
    for i in row.indices where row[i] > row[best] { best = i }
    return best - row.startIndex
}
