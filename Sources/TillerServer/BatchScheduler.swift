import Foundation
import TillerModels
import TillerTokenizers

/// One chat completion for the engine.
struct GenerationJob: Sendable {
    var prompt: [Int]
    var maxTokens: Int
    var temperature: Double
    var topP: Double
    /// nil: a fresh random seed for this request.
    var seed: UInt64?
    var steering: SteeringSpec?
    /// nil: no log-probabilities; k: the chosen token's plus the top k.
    var topLogprobs: Int?
    var stop: [String]
    /// Text completions' `echo`: the prompt's text, sent before the answer; with `topLogprobs`
    /// the prompt's tokens are scored too (the first has no log-probability). `maxTokens` may
    /// then be 0: the prompt is only scored.
    var echo: String? = nil
    /// Chat completions: the log-probabilities of the token that stopped the answer follow the
    /// answer's own, as vLLM and llama-server report them (how likely the reply was to end there
    /// is what a judge reading a number needs: `DigitTree` in TillerEval). Text completions keep
    /// one entry per token of the text.
    var logprobStopToken = false
}

struct TokenLogprob: Sendable {
    var token: Int
    /// nil for a prompt's first token, which nothing predicts.
    var logprob: Double?
    var top: [(token: Int, logprob: Double)]
}

struct GenerationOutput: Sendable {
    var tokens: [Int]
    var text: String
    /// "stop" or "length"
    var finishReason: String
    var logprobs: [TokenLogprob]?
    /// With `echo` and log-probabilities: the prompt's tokens, scored.
    var promptLogprobs: [TokenLogprob]? = nil
    /// The most sequences that shared an engine step with this one.
    var batchSize: Int
    /// From arrival to the prefill step.
    var queueSeconds: Double
}

/// Text that became final since the last delta, with the log-probabilities of its tokens.
typealias DeltaHandler = @Sendable (_ text: String, _ logprobs: [TokenLogprob]) -> Void

/// A submitted request: the engine thread feeds it tokens; the request's task awaits `result()`.
/// Cancelling that task (a client that went away) ends the sequence at the next step.
final class Ticket: @unchecked Sendable {
    let job: GenerationJob
    let onDelta: DeltaHandler?
    let enqueued = Date()
    private let lock = NSLock()
    private var outcome: Result<GenerationOutput, Error>?
    private var waiter: CheckedContinuation<GenerationOutput, Error>?
    private var cancelRequested = false

    // Engine-thread state.
    var logprobs: [TokenLogprob] = []
    /// Log-probabilities of tokens whose text has not been sent yet.
    var pendingLogprobs: [TokenLogprob] = []
    /// The answer so far, decoded token by token (incomplete characters held back by the decoder).
    var decoder: StreamingDecoder?
    var text = ""
    /// UTF-8 bytes of `text` already sent.
    var emittedBytes = 0
    var stopText: String?
    var peakBatch = 0
    var admitted: Date?
    var promptLogprobs: [TokenLogprob]?

    init(job: GenerationJob, onDelta: DeltaHandler?) {
        self.job = job
        self.onDelta = onDelta
    }

    var isCancelled: Bool { lock.withLock { cancelRequested } }

    func cancel() { lock.withLock { cancelRequested = true } }

    /// Waits for the answer; cancelling the waiting task cancels the request.
    func result() async throws -> GenerationOutput {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<GenerationOutput, Error>) in
                let ready: Result<GenerationOutput, Error>? = lock.withLock {
                    if outcome == nil { waiter = cont }
                    return outcome
                }
                if let ready { cont.resume(with: ready) }
            }
        } onCancel: {
            cancel()
        }
    }

    func complete(_ r: Result<GenerationOutput, Error>) {
        let w: CheckedContinuation<GenerationOutput, Error>? = lock.withLock {
            guard outcome == nil else { return nil }
            outcome = r
            defer { waiter = nil }
            return waiter
        }
        w?.resume(with: r)
    }
}

/// Continuous batching over one `GenerationBatch`: requests join the running batch between
/// decode steps (at most `maxBatch` at once) and leave as they finish, so a short request never
/// waits for a long one. When the engine is idle, requests arriving within `window` of the
/// first are prefilled together. Tokens reach each request as they are sampled (streaming),
/// stop strings end a sequence as soon as they appear, and every request keeps its own
/// budget, sampling options, seed and steering. The engine is synchronous and CPU-bound, so it
/// runs on one dedicated thread, never on the event loop.
final class BatchScheduler: @unchecked Sendable {
    let model: LanguageModel
    let window: TimeInterval
    let maxBatch: Int
    let maxQueue: Int
    private let cond = NSCondition()
    private var pending: [Ticket] = []
    private var thread: Thread?
    private var stopping = false
    /// Statistics: engine steps, and sequences they carried (summed over steps).
    private var steps = 0
    private var sequenceSteps = 0
    private var peakBatch = 0
    private var running = 0
    /// Driven by the engine thread only.
    private let batch: GenerationBatch

    init(model: LanguageModel, window: TimeInterval = 0.005, maxBatch: Int = 32, maxQueue: Int = 1024) throws {
        self.model = model
        batch = try GenerationBatch(model: model)
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

    /// Engine steps, sequences summed over steps (their ratio is the mean batch), largest batch,
    /// and sequences generating now.
    var stats: (steps: Int, sequences: Int, peak: Int, active: Int) {
        cond.lock(); defer { cond.unlock() }
        return (steps, sequenceSteps, peakBatch, running)
    }

    struct Overloaded: Error {}
    struct Cancelled: Error {}

    /// Queues a request (throws `Overloaded` at once when the queue is full).
    func submit(_ job: GenerationJob, onDelta: DeltaHandler? = nil) throws -> Ticket {
        let t = Ticket(job: job, onDelta: onDelta)
        cond.lock()
        defer { cond.unlock() }
        if pending.count >= maxQueue || stopping { throw Overloaded() }
        pending.append(t)
        cond.signal()
        return t
    }

    private func loop() {
        var active: [Int: Ticket] = [:]
        while true {
            cond.lock()
            while pending.isEmpty && batch.isEmpty && !stopping { cond.wait() }
            if stopping {
                let left = pending
                pending = []
                cond.unlock()
                for t in left + active.values { t.complete(.failure(Overloaded())) }
                return
            }
            if batch.isEmpty {
                // Idle: a short gathering window lets requests arriving together share the prefill.
                let deadline = Date().addingTimeInterval(window)
                while pending.count < maxBatch && !stopping && cond.wait(until: deadline) {}
            }
            let room = maxBatch - batch.activeCount
            let admit = Array(pending.prefix(max(room, 0)))
            pending.removeFirst(admit.count)
            cond.unlock()

            let now = Date()
            for t in admit {
                if t.isCancelled { t.complete(.failure(Cancelled())); continue }
                if let echo = t.job.echo {
                    do { try self.echo(echo, t) } catch { t.complete(.failure(error)); continue }
                    if t.job.maxTokens == 0 {
                        t.admitted = now
                        t.complete(.success(GenerationOutput(tokens: [], text: "", finishReason: "length", logprobs: t.job.topLogprobs.map { _ in [] },
                                                             promptLogprobs: t.promptLogprobs, batchSize: 0,
                                                             queueSeconds: now.timeIntervalSince(t.enqueued))))
                        continue
                    }
                }
                let o = GenerationOptions(maxNewTokens: t.job.maxTokens, temperature: t.job.temperature, topP: t.job.topP,
                                          seed: t.job.seed ?? UInt64.random(in: 0 ... UInt64.max))
                do {
                    let id = try batch.add(t.job.prompt, options: o, steering: t.job.steering)
                    t.admitted = now
                    active[id] = t
                } catch {
                    t.complete(.failure(error))
                }
            }
            for (id, t) in active where t.isCancelled { batch.cancel(id) }
            let n = batch.activeCount
            for t in active.values { t.peakBatch = max(t.peakBatch, n) }
            batch.step { [self] step in
                guard let t = active[step.sequence] else { return false }
                return receive(step, t)
            }
            cond.lock()
            if n > 0 { steps += 1; sequenceSteps += n; peakBatch = max(peakBatch, n) }
            running = batch.activeCount
            cond.unlock()
            // Results of this step, and of sequences cancelled before it.
            for id in Array(active.keys) {
                guard let r = batch.take(id), let t = active.removeValue(forKey: id) else { continue }
                if r.finishReason == .cancelled && t.stopText == nil {
                    t.complete(.failure(Cancelled()))
                } else {
                    t.complete(.success(output(r, t)))
                }
            }
        }
    }

    /// `echo`: scores the prompt when log-probabilities are asked for (on the engine thread, which
    /// owns the model) and sends the prompt's text first when streaming.
    private func echo(_ text: String, _ t: Ticket) throws {
        if let k = t.job.topLogprobs {
            let prompt = t.job.prompt
            var lps = [TokenLogprob(token: prompt[0], logprob: nil, top: [])]
            if prompt.count > 1 {
                // The prompt's own tokens, scored as prompt (`.response` steering does not act).
                let request = TeacherForcedRequest(groups: [.init(prompt: [prompt[0]], continuations: [Array(prompt.dropFirst())],
                                                                  steering: t.job.steering, responseStart: prompt.count)], reuse: .none)
                try model.teacherForced(request) { _, _, token, row in
                    lps.append(Self.logprob(row, chosen: prompt[token + 1], top: k))
                }
            }
            t.promptLogprobs = lps
        }
        t.onDelta?(text, t.promptLogprobs ?? [])
    }

    /// A sampled token for one request: records it (and its log-probabilities), applies stop
    /// strings and sends the text that can no longer change. Returns whether to go on.
    private func receive(_ step: TokenStep, _ t: Ticket) -> Bool {
        if t.isCancelled { return false }
        if let k = t.job.topLogprobs, step.finish != .stop || t.job.logprobStopToken {
            let lp = Self.logprob(step.logits, chosen: step.token, top: k)
            t.logprobs.append(lp)
            t.pendingLogprobs.append(lp)
        }
        guard step.finish != .stop else { return true }  // the stop token is not part of the answer
        let stops = t.job.stop.filter { !$0.isEmpty }
        guard t.onDelta != nil || !stops.isEmpty else { return true }
        if t.decoder == nil { t.decoder = StreamingDecoder(tokenizer: model.tokenizer!, skipSpecialTokens: true) }
        t.text += t.decoder!.push(step.token)
        if let cut = Self.firstStop(in: t.text, stops) {
            t.stopText = String(t.text[..<cut])
            send(t, upTo: t.stopText!)
            return false
        }
        if step.finish == nil {
            // Hold back any tail that could begin a stop string.
            let hold = stops.map { Self.overlap(Substring(t.text), $0) }.max() ?? 0
            send(t, upTo: String(t.text.dropLast(hold)))
        }
        return true
    }

    /// Sends the part of `text` (a beginning of the answer) not sent yet, with the pending logprobs.
    private func send(_ t: Ticket, upTo text: String) {
        guard let onDelta = t.onDelta, text.utf8.count > t.emittedBytes else { return }
        onDelta(String(decoding: text.utf8.dropFirst(t.emittedBytes), as: UTF8.self), t.pendingLogprobs)
        t.emittedBytes = text.utf8.count
        t.pendingLogprobs = []
    }

    /// The finished answer (and, when streaming, its last delta).
    private func output(_ r: GenerationResult, _ t: Ticket) -> GenerationOutput {
        let text = t.stopText ?? r.text ?? model.tokenizer!.decode(r.tokens, skipSpecialTokens: true)
        // The whole answer's decode extends what was streamed (the decoder keeps them equal).
        if text.utf8.starts(with: t.text.utf8.prefix(t.emittedBytes)) { send(t, upTo: text) }
        if let onDelta = t.onDelta, !t.pendingLogprobs.isEmpty { onDelta("", t.pendingLogprobs) }
        let finish = t.stopText != nil || r.finishReason == .stop ? "stop" : "length"
        return GenerationOutput(tokens: r.tokens, text: text, finishReason: finish,
                                logprobs: t.job.topLogprobs == nil ? nil : t.logprobs, promptLogprobs: t.promptLogprobs, batchSize: t.peakBatch,
                                queueSeconds: (t.admitted ?? Date()).timeIntervalSince(t.enqueued))
    }

    static func firstStop(in text: String, _ stops: [String]) -> String.Index? {
        stops.compactMap { s in s.isEmpty ? nil : text.range(of: s)?.lowerBound }.min()
    }

    /// The length of the longest end of `text` that is a proper beginning of `stop`.
    static func overlap(_ text: Substring, _ stop: String) -> Int {
        var n = stop.count - 1
        while n > 0 {
            if text.hasSuffix(stop.prefix(n)) { return n }
            n -= 1
        }
        return 0
    }

    /// Log-softmax (fp64) of the chosen token and the top k.
    static func logprob(_ row: UnsafeBufferPointer<Float>, chosen: Int, top k: Int) -> TokenLogprob {
        var m = -Double.infinity
        for v in row { m = max(m, Double(v)) }
        var sum = 0.0
        for v in row { sum += Foundation.exp(Double(v) - m) }
        let lse = m + Foundation.log(sum)
        var top: [(Int, Double)] = []
        if k > 0 {
            // Partial selection: keep the k best seen so far, best first (lower id on ties).
            var best: [(Int, Float)] = []
            for (i, v) in row.enumerated() {
                if best.count < k {
                    best.append((i, v))
                    best.sort { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
                } else if v > best[k - 1].1 {
                    best[k - 1] = (i, v)
                    best.sort { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
                }
            }
            top = best.map { ($0.0, Double($0.1) - lse) }
        }
        return TokenLogprob(token: chosen, logprob: Double(row[chosen]) - lse, top: top)
    }
}
