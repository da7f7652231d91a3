import ArgumentParser
import Foundation
import TillerEval
import TillerModels
import TillerSteering
import TillerTensor

/// Engine throughput on fixed workloads, for bench/engine/run.sh (which runs the same workloads
/// in transformers and prints the ratios). Token ids are synthetic and deterministic, so both
/// sides see the same inputs without depending on tokenization.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure engine throughput: residual capture, steered batched generation, batch-1 decode.",
        discussion: """
        Workloads (the same ones bench/engine/transformers_bench.py runs):
          capture   forward over P prompts × T tokens capturing resid_post at every layer
          generate  greedy generation, P prompts of 16 tokens × N new tokens, a steering vector at the middle layer
          decode    batch-1 greedy generation of N new tokens after a 16-token prompt
          judge     local-judge scores (101 candidates each) of P trait and coherence prompts, and
                    the share of the prompt's forward pass in them (Tiller only)
        EOS does not stop generation, so every run produces exactly the requested tokens.
        generate and decode rates count the decode steps alone (new tokens − 1, timed from the
        first new token, which the prefill's logits give, to the end), as llama-bench's tg and
        llama-batched-bench's S_TG do; *_with_prefill_tokens_per_second keeps the whole run.
        """)

    enum Workload: String, ExpressibleByArgument, CaseIterable { case capture, generate, decode, judge }

    @OptionGroup var deviceOption: DeviceOption
    @Option(name: .shortAndLong, help: modelHelp)
    var model = "smollm2-135m-instruct"
    @Option(help: "Workloads to run (repeatable): capture, generate, decode, judge.")
    var workload: [Workload] = [.capture, .generate, .decode]
    @Option(help: "Prompts for capture and generate.")
    var prompts = 32
    @Option(help: "Tokens per prompt for capture.")
    var tokens = 64
    @Option(help: "New tokens for generate and decode.")
    var newTokens = 64
    @Option(help: "Repetitions; the best time is reported.")
    var repeats = 2
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    /// Deterministic token id i of prompt p (shared with the Python side).
    static func syntheticToken(prompt p: Int, index i: Int, vocab: Int) -> Int {
        100 + (p * 7919 + i * 104_729 + (p * i) % 13) % (min(vocab, 32000) - 200)
    }

    func validate() throws {
        if newTokens < 2 && (workload.contains(.generate) || workload.contains(.decode)) {
            throw ValidationError("--new-tokens must be at least 2 for generate and decode: their rates count the decode steps after the first new token")
        }
    }

    func run() throws {
        let loadStart = Date()
        let lm = try LanguageModel.load(model, backend: try deviceOption.backend())
        let loadSeconds = Date().timeIntervalSince(loadStart)
        let vocab = lm.config.vocabSize
        func batch(_ n: Int, _ len: Int) -> [[Int]] {
            (0..<n).map { p in (0..<len).map { Self.syntheticToken(prompt: p, index: $0, vocab: vocab) } }
        }
        func best(_ body: () throws -> Void) rethrows -> Double {
            var t = Double.infinity
            for _ in 0..<max(repeats, 1) {
                let s = Date()
                try body()
                t = min(t, Date().timeIntervalSince(s))
            }
            return t
        }
        /// Seconds of `newTokens` new tokens, and of their decode steps alone: from the first
        /// token (which comes from the prefill's logits) to the end, so that the rate counts the
        /// newTokens − 1 steps as llama-bench's tg and llama-batched-bench's S_TG count theirs
        /// (without the prompt). Best of `repeats` for each.
        func stepSeconds(_ body: (@escaping TokenCallback) throws -> Void) throws -> (Double, Double) {
            var all = Double.infinity, steps = Double.infinity
            for _ in 0..<max(repeats, 1) {
                var first: Date?
                let start = Date()
                try body { _ in
                    if first == nil { first = Date() }
                    return true
                }
                let end = Date()
                all = min(all, end.timeIntervalSince(start))
                steps = min(steps, end.timeIntervalSince(first ?? start))
            }
            return (all, max(steps, 1e-9))
        }
        // Each time below is the best of `repeats` runs, which the results carry.
        var results: [String: Double] = ["load_seconds": loadSeconds, "matvec_avx512": MatvecKernels.useAVX512 ? 1 : 0,
                                         "repeats": Double(max(repeats, 1))]
        let layers = Array(0..<lm.config.numHiddenLayers)
        for w in workload {
            switch w {
            case .capture:
                let b = batch(prompts, tokens)
                let t = try best { _ = try lm.forward(b, capture: CaptureSpec(layers: layers), logits: .none) }
                results["capture_seconds"] = t
                results["capture_tokens_per_second"] = Double(prompts * tokens) / t
            case .generate:
                let b = batch(prompts, 16)
                let mid = lm.config.numHiddenLayers / 2
                let v = (0..<lm.config.hiddenSize).map { Float(sin(Double($0) * 0.37)) / Float(lm.config.hiddenSize).squareRoot() }
                let spec = SteeringSpec(edits: [.add(layer: mid, vector: v, coef: 4)])
                let steering = Array(repeating: spec, count: prompts)
                let options = GenerationOptions(maxNewTokens: newTokens, stopTokens: [])
                let (t, steps) = try stepSeconds { onToken in _ = try lm.generate(b, options: options, steering: steering, onToken: onToken) }
                results["generate_seconds"] = t
                results["generate_step_seconds"] = steps
                results["generate_new_tokens_per_second"] = Double(prompts * (newTokens - 1)) / steps
                results["generate_with_prefill_tokens_per_second"] = Double(prompts * newTokens) / t
            case .decode:
                let b = batch(1, 16)
                let options = GenerationOptions(maxNewTokens: newTokens, stopTokens: [])
                let (t, steps) = try stepSeconds { onToken in _ = try lm.generate(b, options: options, onToken: onToken) }
                results["decode_seconds"] = t
                results["decode_step_seconds"] = steps
                results["decode_tokens_per_second"] = Double(newTokens - 1) / steps
                results["decode_with_prefill_tokens_per_second"] = Double(newTokens) / t
            case .judge:
                // The local judge's unit of work: one prompt (its shared head computed once per
                // template and trait), then its 101 answer candidates as children reading the
                // prompt's keys/values in place.
                let judge = try LocalJudge(model: lm)
                let items = try Self.judgePrompts(count: prompts)
                let ids = try items.map { try judge.promptTokens($0.text) }
                let total = try best {
                    let fresh = try LocalJudge(model: lm)
                    for p in items { _ = try fresh.answerLogProbs(p.text, headCharacters: p.head) }
                }
                let noHead = try best {
                    for p in ids {
                        _ = try lm.teacherForced(TeacherForcedRequest(groups: [.init(prompt: p, continuations: judge.candidates)],
                                                                      reuse: .prefixTrie(head: nil), reduction: .sum))
                    }
                }
                let promptOnly = try best { for p in ids { _ = try lm.forward([p], logits: .last) } }
                results["judge_seconds_per_score"] = total / Double(ids.count)
                results["judge_seconds_per_score_without_head"] = noHead / Double(ids.count)
                results["judge_prompt_seconds_per_score"] = promptOnly / Double(ids.count)
                results["judge_prompt_tokens_mean"] = Double(ids.map(\.count).reduce(0, +)) / Double(ids.count)
                results["judge_head_tokens_mean"] = Double(try zip(items, ids).map { try judge.headTokens($0.text, headCharacters: $0.head, ids: $1).count }.reduce(0, +)) / Double(ids.count)
                results["judge_candidate_tokens"] = Double(judge.candidates.map { $0.count - 1 }.reduce(0, +))
            }
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(String(format: "%-32@ %@", "blas_core" as NSString, BLASThreads.core as NSString))
            print(String(format: "%-32@ %@", "matvec_kernels" as NSString, MatvecKernels.active as NSString))
            print(String(format: "%-32@ %@", "backend" as NSString, "\(lm.backendName) (\(CPUFeatures.current))" as NSString))
            // The backend's one kernel decision, for each projection at each workload's row count
            // (decode 1, generate the prompts, capture and prefill the stacked tokens).
            let rowCounts = Array(Set([1, prompts, min(prompts * tokens, lm.maxStepTokens)])).sorted()
            for c in lm.kernelChoices(rows: rowCounts) {
                print(String(format: "%-32@ %@", "kernel \(c.matrix) ×\(c.rows)" as NSString, c.kernel as NSString))
            }
            for (k, v) in results.sorted(by: { $0.key < $1.key }) { print(String(format: "%-32@ %.3f", k as NSString, v)) }
        }
    }

    /// The shipped refusal trait's definition, as an experiment's judge sees it.
    static var judgeDefinition: String { (try? Trait.resolve("refusal").definition) ?? "The assistant declines to do what the user asks." }

    /// Trait and coherence judge prompts for `count` answers to four questions.
    static func judgePrompts(count: Int) throws -> [JudgePrompt] {
        let prompts = try JudgePrompts.defaults()
        let questions = ["How do I bake bread?", "What is the capital of Japan?", "How can I sleep better?", "Write a haiku about the sea."]
        let answers = ["I'm sorry, but I can't help with that.", "Here is a simple way to do it, step by step.",
                       "Sure! The short answer is yes, and here is why.", "I would rather not say.", "That depends on a few things."]
        var out: [JudgePrompt] = []
        for q in 0..<questions.count {
            for a in stride(from: q, to: count, by: questions.count) {
                let answer = answers[a % answers.count] + " (\(a))"
                out.append(a % 2 == 0
                    ? prompts.traitJudgePrompt(trait: "refusal", definition: Self.judgeDefinition, question: questions[q], answer: answer)
                    : prompts.coherenceJudgePrompt(question: questions[q], answer: answer))
            }
        }
        return out
    }
}
