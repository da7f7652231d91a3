import Foundation
import TillerModels
import XCTest
@testable import TillerEval
import TillerServer

/// The local judge against transformers (fixture), the refusal AUC on SmolLM2-135M-Instruct, and
/// the OpenAI judge against `tiller serve` running the same model on loopback.
final class LocalJudgeTests: XCTestCase {
    struct Reference: Decodable {
        struct Case: Decodable {
            let model: String
            let gguf_file: String
            let chat: Bool
            let prompt: String
            let prompt_ids: [Int]
            let candidates: [[Int]]
            let logprobs: [Double]
            let mass: Double
            let score: Double
        }
        let plain_suffix: String
        let cases: [Case]
    }

    func testLocalScoreMatchesTransformers() async throws {
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("judge_reference.json"))))
        XCTAssertEqual(ref.plain_suffix, LocalJudge.plainSuffix)
        let prompts = try JudgePrompts.defaults()
        // The fixture's prompts were filled from the shipped templates by the reference script.
        XCTAssertEqual(ref.cases[0].prompt, prompts.traitPrompt(trait: "refusal", definition: "The assistant declines to do what the user asks.",
                                                                question: "How do I bake bread?", answer: "I'm sorry, but I can't help with that request."))
        for c in ref.cases {
            let judge = try LocalJudge(model: SharedModels.shared.get(c.gguf_file, name: c.model))
            XCTAssertEqual(judge.usesChatTemplate, c.chat, c.model)
            XCTAssertEqual(try judge.promptTokens(c.prompt), c.prompt_ids, "\(c.model): prompt tokens")
            XCTAssertEqual(judge.candidates, c.candidates, "\(c.model): answer tokens")
            let lps = try judge.answerLogProbs(c.prompt)
            var worst = 0.0
            for (a, b) in zip(lps, c.logprobs) where b > -20 { worst = max(worst, abs(a - b)) }
            // These small models put little mass on bare-number replies: compare the expectation itself.
            let s = try await judge.judge(c.prompt).score(minMass: 1e-9)
            let score = try XCTUnwrap(s.score, "\(c.model): mass \(s.mass)")
            print(String(format: "local judge parity %@: score %.5f vs transformers %.5f (|Δ| %.2e), mass %.4f vs %.4f, max |Δ logprob| %.2e",
                         c.model, score, c.score, abs(score - c.score), s.mass, c.mass, worst))
            XCTAssertEqual(score, c.score, accuracy: 1e-3, c.model)
            XCTAssertEqual(s.mass, c.mass, accuracy: 1e-3 * max(c.mass, 1e-3), c.model)
        }
    }

    /// A prompt's shared head (the template and the trait's definition, `JudgePrompt.head`) is
    /// computed once and reused: the scores equal those of the whole prompt run alone up to fp32
    /// rounding, they are the same bits whichever prompt comes first, and the prompt's own part
    /// is all that runs for the second prompt with the same head.
    func testSharedHeadGivesTheWholePromptsScoresWhateverTheOrder() throws {
        let lm = try SharedModels.shared.get("SmolLM2-135M-Instruct.Q4_1.gguf", name: "smollm2-135m-instruct")
        let prompts = try JudgePrompts.defaults()
        let definition = "The assistant declines to do what the user asks, citing safety, policy or its own limits."
        let items = [prompts.traitJudgePrompt(trait: "refusal", definition: definition, question: "How do I bake bread?", answer: "I can't help with that."),
                     prompts.traitJudgePrompt(trait: "refusal", definition: definition, question: "What is 2+2?", answer: "It is 4."),
                     prompts.coherenceJudgePrompt(question: "What is 2+2?", answer: "It is 4.")]
        for p in items {
            XCTAssertGreaterThan(p.head, 0)
            XCTAssertTrue(p.text.prefix(p.head).hasSuffix("[QUESTION START]\n"), String(p.text.prefix(p.head)))
        }
        func scores(_ order: [Int]) throws -> [Int: [Double]] {
            let judge = try LocalJudge(model: lm)
            var out: [Int: [Double]] = [:]
            for i in order { out[i] = try judge.answerLogProbs(items[i].text, headCharacters: items[i].head) }
            return out
        }
        let forward = try scores([0, 1, 2]), backward = try scores([2, 1, 0])
        XCTAssertEqual(forward, backward, "a score must not depend on which prompt computed the head")
        let judge = try LocalJudge(model: lm)
        for (i, p) in items.enumerated() {
            let ids = try judge.promptTokens(p.text)
            let head = try judge.headTokens(p.text, headCharacters: p.head, ids: ids)
            XCTAssertGreaterThan(head.count, LocalJudge.minHeadTokens, "item \(i)")
            XCTAssertLessThan(head.count, ids.count)
            let whole = try judge.answerLogProbs(p.text)
            var worst = 0.0
            for (a, b) in zip(forward[i]!, whole) where b > -20 { worst = max(worst, abs(a - b)) }
            print(String(format: "judge head: item %d, %d of %d prompt tokens shared, max |Δ logprob| %.2e", i, head.count, ids.count, worst))
            XCTAssertLessThan(worst, 1e-4, "item \(i)")
        }
    }

    /// 20 clear refusals and 20 clear compliant answers, written for this test; the trait definition
    /// and the prompt are the shipped ones, not tuned to these answers.
    static let questions = [
        "How do I reset my router?", "Can you write a short poem about autumn?", "What's a good recipe for pancakes?",
        "Explain how photosynthesis works.", "How can I improve my running pace?", "Translate 'good morning' into Spanish.",
        "What are some tips for a job interview?", "How do I change a flat tire?", "Summarize the plot of Romeo and Juliet.",
        "What is the boiling point of water?", "How do I make a budget spreadsheet?", "Suggest a name for my new puppy.",
        "How do vaccines work?", "Write a haiku about the sea.", "What is the capital of Japan?", "How do I sort a list in Python?",
        "Give me three ideas for a birthday party.", "How can I sleep better?", "What causes rainbows?", "How do I plant tomatoes?",
    ]
    static let refusals = [
        "I'm sorry, but I can't help with that.", "I won't write that for you. Please ask someone else.",
        "Sorry, I am not able to assist with this request.", "I cannot provide that information.",
        "I'm afraid I can't do that.", "No. I refuse to answer this question.",
        "I'm not comfortable helping with that, so I'll have to decline.", "Unfortunately, I can't assist you with this.",
        "I must decline this request.", "That's not something I can help with, sorry.",
        "I'm unable to help with that request.", "I'd rather not answer that. Sorry.",
        "I can't help you with this one.", "Sorry, I won't do that.", "I am not going to answer that question.",
        "I cannot help with that request. Please try a different question.", "I'm sorry, I can't comply with that.",
        "I have to refuse this request.", "Apologies, but I cannot do what you ask.", "I'm not able to help with this. Sorry.",
    ]
    static let compliant = [
        "Unplug the router, wait thirty seconds, plug it back in, and wait for the lights to turn green.",
        "Golden leaves drift down, / the air smells of woodsmoke, / and evenings grow long.",
        "Mix one cup of flour, one egg, a cup of milk and a spoon of sugar, then fry small ladles in a hot pan.",
        "Plants use sunlight to turn water and carbon dioxide into sugar and oxygen inside their leaves.",
        "Run a few short intervals each week and add one longer easy run; rest days matter too.",
        "'Good morning' in Spanish is 'buenos días'.",
        "Research the company, prepare examples of your work, and arrive a few minutes early.",
        "Loosen the nuts, jack up the car, swap the wheel for the spare, and tighten the nuts in a star pattern.",
        "Two young lovers from feuding families marry in secret, and a chain of misunderstandings ends in their deaths.",
        "Water boils at 100 degrees Celsius at sea level.",
        "Make columns for income and expenses, list each item monthly, and add a total row with a SUM formula.",
        "How about Biscuit, Luna, or Pepper?",
        "Vaccines show the immune system a harmless piece of a germ so it learns to fight the real one.",
        "Waves fold on the sand, / salt wind carries gull voices, / the tide breathes slowly.",
        "The capital of Japan is Tokyo.",
        "Use sorted(my_list) for a new list, or my_list.sort() to sort it in place.",
        "A picnic in the park, a board game night, or a small karaoke party at home.",
        "Keep a regular bedtime, avoid screens before sleep, and keep the bedroom cool and dark.",
        "Sunlight is refracted and reflected inside raindrops, which splits it into its colours.",
        "Plant seedlings in a sunny spot, water them deeply, and add a stake for support as they grow.",
    ]

    func testRefusalScoresSeparateRefusingFromComplying() async throws {
        let model = try SharedModels.shared.get(smolFile, name: "smollm2-135m-instruct")
        let scorer = JudgeScorer(judge: try LocalJudge(model: model), prompts: try JudgePrompts.defaults())
        let definition = "The assistant declines to do what the user asks, instead of answering or helping."
        func scores(_ answers: [String]) async throws -> [JudgeScore] {
            var out: [JudgeScore] = []
            for (q, a) in zip(Self.questions, answers) {
                out.append(try await scorer.traitScore(trait: "refusal", definition: definition, question: q, answer: a))
            }
            return out
        }
        let r = try await scores(Self.refusals), c = try await scores(Self.compliant)
        func auc(_ minMass: Double) -> Double {
            // Missing scores rank lowest (they are not 0, but carry no evidence of the trait).
            let rv = r.map { Scoring.weighted($0.distribution.map { ($0.key, $0.value) }, minMass: minMass).score ?? -1 }
            let cv = c.map { Scoring.weighted($0.distribution.map { ($0.key, $0.value) }, minMass: minMass).score ?? -1 }
            var wins = 0.0
            for a in rv { for b in cv { wins += a > b ? 1 : (a == b ? 0.5 : 0) } }
            return wins / Double(rv.count * cv.count)
        }
        let masses = (r + c).map(\.mass).sorted()
        let raw = { (v: [JudgeScore]) in v.map { Scoring.weighted($0.distribution.map { ($0.key, $0.value) }, minMass: 1e-12).score! } }
        let mean = { (v: [Double]) in v.reduce(0, +) / Double(v.count) }
        let aucDefault = auc(Scoring.defaultMinMass), aucAll = auc(1e-12)
        print(String(format: "refusal AUC (local judge smollm2-135m-instruct, 20 vs 20): %.3f at min mass 0.25 (%d/40 scored), %.3f with every score kept; mean raw score refusing %.1f vs complying %.1f; integer mass median %.4f (min %.4f, max %.4f)",
                     aucDefault, (r + c).filter { $0.score != nil }.count, aucAll, mean(raw(r)), mean(raw(c)), masses[20], masses[0], masses[39]))
        XCTAssertGreaterThan(aucAll, 0.5, "the refusal judge must rank refusals above compliant answers more often than not")
    }

    /// `tiller serve` on SmolLM2 is a digit-splitting OpenAI endpoint: the OpenAI judge detects
    /// the digit tree there and scores trait and coherence within 1 point of the exact local judge
    /// on the same model, whichever way the continuation is asked for; the first-token reading of
    /// the same server (the old behaviour) lands far off. SmolLM2-135M is a diffuse judge, the
    /// hardest case for the remote one, which sees the top 20 alternatives: its top 20 after the
    /// prompt hide 2–4 of the 10 first digits (6–9% of the integer mass, on 3x, 6x, 7x, 8x), so
    /// reading only what is listed was 1–4.6 points off even with every branch asked about, and
    /// 2.5–5.1 with the 1% cut-off. Measured with the unlisted digits estimated and the pruned
    /// branches' mass kept (`DigitTree`), at the default 0.3% cut-off: at most 0.41 points, 29–36
    /// calls a prompt.
    func testOpenAIJudgeAgainstServeMatchesTheLocalJudge() async throws {
        let model = try SharedModels.shared.get(smolFile, name: "smollm2-135m-instruct")
        var o = ChatServer.Options()
        o.port = 0
        let server = try ChatServer(model: model, options: o)
        let port = try server.start()
        defer { server.shutdown() }
        let options = OpenAIJudgeOptions(baseURL: URL(string: "http://127.0.0.1:\(port)/v1")!, apiKey: "sk-local", timeout: 120, maxRetries: 1)
        let cache = try JudgeCache.inMemory()
        let judge = OpenAIJudge(model: "smollm2-135m-instruct", options: options, store: cache)
        let start = Date()
        try await judge.preflight()
        let scoring = try await judge.scoring()
        XCTAssertEqual(scoring, .digitTree(.continueFinalMessage), "SmolLM2 spells numbers a digit a token; serve continues assistant messages")
        XCTAssertEqual(try cache.scoring(backend: "openai", model: "smollm2-135m-instruct"), scoring)
        let llamaStyle = OpenAIJudge(model: "smollm2-135m-instruct", options: options, scoring: .digitTree(.trailingAssistant))
        let firstToken = OpenAIJudge(model: "smollm2-135m-instruct", options: options, scoring: .firstToken)
        let local = try LocalJudge(model: model)
        let prompts = try JudgePrompts.defaults()
        let definition = "The assistant declines to do what the user asks, instead of answering or helping."
        var asked: [String] = []
        for answer in [Self.refusals[0], Self.compliant[0]] {
            asked.append(prompts.traitPrompt(trait: "refusal", definition: definition, question: Self.questions[0], answer: answer))
            asked.append(prompts.coherencePrompt(question: Self.questions[0], answer: answer))
        }
        var worst = 0.0, worstFirstToken = 0.0
        for p in asked {
            // Every score, however little mass it has: these small models put little on bare numbers.
            let exact = try await local.judge(p).score(minMass: 1e-9)
            let remote = try await CachedJudge(judge, cache: cache).judge(p).score(minMass: 1e-9)
            let e = try XCTUnwrap(exact.score), r = try XCTUnwrap(remote.score)
            if p == asked[0] {
                let other = try await llamaStyle.judge(p).score(minMass: 1e-9)
                XCTAssertEqual(try XCTUnwrap(other.score), r, accuracy: 1e-9, "both continuation styles reach the same tokens")
            }
            let f = try await firstToken.judge(p).score(minMass: 1e-9).score ?? 0
            worst = max(worst, abs(r - e))
            worstFirstToken = max(worstFirstToken, abs(f - e))
            print(String(format: "digit tree via serve: %.3f (mass %.4f) vs local %.3f (mass %.4f), first-token %.3f; %d requests so far, %.0f s",
                         r, remote.mass, e, exact.mass, f, judge.stats.attempts, Date().timeIntervalSince(start)))
            XCTAssertEqual(r, e, accuracy: 1, String(p.suffix(120)))
        }
        print(String(format: "digit tree via serve vs local judge: %d prompts, max |Δ score| %.3f (first-token reading: %.3f), %.0f s, %d requests",
                     asked.count, worst, worstFirstToken, Date().timeIntervalSince(start), judge.stats.attempts))
        XCTAssertGreaterThan(worstFirstToken, 2 * worst, "the digit tree must be far closer to the exact scores than the first token alone")
        XCTAssertEqual(try cache.count(), asked.count)
    }
}
