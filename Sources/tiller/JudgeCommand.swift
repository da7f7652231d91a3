import ArgumentParser
import Foundation
import TillerModels
import TillerEval
import TillerSteering
import TillerExperiment

struct JudgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "judge",
        abstract: "Score answers for a trait (and coherence) with an LLM judge.",
        discussion: """
        One pair with --question/--answer, or a JSONL file with --input: one object per line with "question", \
        "answer" and optionally "trait"/"definition". Output: one JSON object per line with "trait_score", \
        "coherence", "relevance" (null when the judge gave no number) or "error". \
        --judge openai:MODEL uses an OpenAI-compatible endpoint (--base-url or TILLER_JUDGE_BASE_URL / OPENAI_BASE_URL; \
        key from --api-key or TILLER_JUDGE_API_KEY / OPENAI_API_KEY; the key is never printed or stored). \
        --judge local:MODEL runs the judge model with Tiller's engine, on --device. \
        The scoring mode (first-token 0–100, digit tree, 0–9 scale; teacher-forced 0–100 for a local judge) \
        is detected once per judge, printed, stored in the cache and given as "scoring" on each line. \
        --validate --trait T scores the trait's reference answers (trait AUC: trait-showing vs trait-free answers) \
        and fluent vs degenerate versions of them (coherence AUC), prints both, and exits 3 when either is below \
        --judge-validation-min-auc: a judge must pass before its scores mean anything. Flags an experiment file \
        also states have its keys' names (judge_min_mass is --judge-min-mass).
        """)

    @Option(help: "openai:MODEL or local:MODEL.")
    var judge: String
    @OptionGroup var deviceOption: DeviceOption
    @Option(help: "Trait name (e.g. refusal).")
    var trait: String?
    @Option(help: "Trait definition used in the judge prompt.")
    var definition: String?
    @Option(help: "The question.")
    var question: String?
    @Option(help: "The answer to score.")
    var answer: String?
    @Option(help: "JSONL file of {question, answer[, trait, definition]}.")
    var input: String?
    @Flag(name: .customLong("no-coherence"), help: "Skip the coherence and relevance judges.")
    var noCoherence = false
    // A setting an experiment file states has the file's name (`judge_min_mass` is
    // `--judge-min-mass`, `judge_validation.items` `--judge-validation-items`); StageFlagsTests
    // holds the table.
    @Option(name: .customLong("judge-prompts"), help: "Directory overriding trait.txt / coherence.txt / relevance.txt (the file's judge_prompts).")
    var promptsDirectory: String?
    @Option(name: .customLong("cache"), help: "SQLite file caching judge answers (e.g. the results database).")
    var cachePath: String?
    @Option(name: .customLong("judge-min-mass"), help: "Least probability on integer answers for a score to count (judge_min_mass).")
    var judgeMinMass = Scoring.defaultMinMass
    @Option(name: .customLong("min-mass"), help: ArgumentHelp("Deprecated: --judge-min-mass.", visibility: .hidden))
    var deprecatedMinMass: Double?
    /// --judge-min-mass, or the deprecated --min-mass.
    var minMass: Double { deprecatedMinMass ?? judgeMinMass }
    @Flag(name: .customLong("judge-relevance"), inversion: .prefixedNo,
          help: "Coherence with the relevance cap, a third judge call; --no-judge-relevance scores coherence alone (judge_relevance).")
    var judgeRelevance = JudgeValidationStage.Settings().relevance
    @Option(name: .customLong("base-url"), help: "OpenAI-compatible base URL (…/v1).")
    var baseURL: String?
    @Option(name: .customLong("api-key"), help: "API key (prefer the environment: flags show up in process lists).")
    var apiKey: String?
    @Option(help: "Requests in flight at once (openai).")
    var concurrency = 8
    @Option(help: "Seconds per attempt (openai).")
    var timeout = 60.0
    @Option(help: "Retries on 429 / 5xx / network errors (openai).")
    var retries = 5
    @Flag(name: .customLong("validate"), help: "Validate the judge on the trait's known cases (needs --trait: a shipped trait or a trait file).")
    var validateJudge = false
    // With --validate: the validation stage of `tiller run`, with the defaults of an experiment
    // file's `judge_validation`, `judge_relevance` and `seed`.
    @Option(name: .customLong("judge-validation-items"), help: "With --validate: reference answer pairs to score (judge_validation.items).")
    var validationItems = JudgeValidationStage.Settings().items
    @Option(name: .customLong("judge-validation-min-auc"), help: "With --validate: least trait and coherence AUC to pass (judge_validation.min_auc).")
    var minAUC = JudgeValidationStage.Settings().minAUC
    @Option(help: "With --validate: seed of the degenerate versions (the file's seed).")
    var seed: UInt64 = JudgeValidationStage.Settings().seed

    /// The validation stage's settings from the flags.
    func validationStage() -> JudgeValidationStage {
        var s = JudgeValidationStage.Settings()
        s.items = validationItems
        s.minAUC = minAUC
        s.relevance = judgeRelevance
        s.seed = seed
        return JudgeValidationStage(settings: s)
    }

    func validate() throws {
        if validateJudge {
            guard trait != nil else { throw ValidationError("--validate needs --trait (a shipped trait or a trait file)") }
            guard validationItems >= 2 else { throw ValidationError("--judge-validation-items must be at least 2") }
            guard minAUC > 0.5, minAUC <= 1 else { throw ValidationError("--judge-validation-min-auc must be in (0.5, 1]") }
        } else if input == nil && (question == nil || answer == nil) { throw ValidationError("give --question and --answer, or --input FILE") }
        guard minMass > 0, minMass <= 1 else { throw ValidationError("--judge-min-mass must be in (0, 1]") }
        guard concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
    }

    func run() throws {
        if deprecatedMinMass != nil { note("--min-mass is deprecated: it is --judge-min-mass (the file's judge_min_mass)") }
        // The root command is synchronous; the judges are async.
        let opened: Result<(JudgeScorer, JudgeScoring?), Error> = blocking {
            do { return .success(try await self.openScorer()) } catch { return .failure(error) }
        }
        let (scorer, scoring) = try opened.get()
        if validateJudge { return try validateOn(scorer, scoring: scoring) }
        let r: Result<Void, Error> = blocking {
            do { try await self.score(scorer, scoring: scoring); return .success(()) } catch { return .failure(error) }
        }
        try r.get()
    }

    /// The judge, answered its first request, and its scoring mode.
    func openScorer() async throws -> (JudgeScorer, JudgeScoring?) {
        var openAI: OpenAIJudgeOptions?
        let spec = try JudgeSpec(parsing: judge)
        if spec.backend == .openai {
            var o = try OpenAIJudgeOptions.fromEnvironment(baseURL: baseURL, apiKey: apiKey)
            o.maxConcurrent = concurrency
            o.timeout = timeout
            o.maxRetries = retries
            openAI = o
        }
        let factory = try JudgeFactory(spec: spec, openAI: openAI, cache: try cachePath.map { try JudgeCache(path: $0) },
                                       prompts: try promptsDirectory.map { try JudgePrompts.load(directory: $0) }, minMass: minMass)
        // A local judge model loads on --device (TILLER_DEVICE, else auto).
        let scorer = try factory.makeScorer { try LanguageModel.load($0, backend: try deviceOption.backend()) }
        // A missing key or a wrong URL fails here, in seconds, before any item is read.
        try await scorer.judge.preflight()
        // The mode is detected once per judge and kept in the cache, so a re-run scores the same way.
        let scoring = try await scorer.judge.scoring()
        if let scoring { note("judge \(judge): scoring mode \(scoring)\(scoring.mode == .digitScale ? " (the server cannot continue an assistant message: 0–9 answers rescaled to 0–100)" : "")") }
        return (scorer, scoring)
    }

    /// --validate: the validation stage of `tiller run` on the trait's known cases.
    func validateOn(_ scorer: JudgeScorer, scoring: JudgeScoring?) throws {
        let t = try Trait.resolve(trait!)
        let checks = try validationStage().run(scorer: scorer, trait: t, judgeName: judge, concurrency: concurrency,
                                               log: StageLog(showProgress: false, log: { note($0) }))
        for v in checks {
            print("\(v.check): \(v.value.map { String(format: "%.3f", $0) } ?? "n/a") (n=\(v.n), pass ≥ \(minAUC)) \(v.passed ? "passed" : "FAILED"): \(v.detail)")
        }
        if let scoring { print("scoring mode: \(scoring)") }
        let passed = checks.allSatisfy(\.passed)
        print(passed ? "judge \(judge) passed validation on \(t.name)" : "judge \(judge) FAILED validation on \(t.name): its scores cannot tell known cases apart")
        if !passed { throw ExitCode(3) }
    }

    func score(_ scorer: JudgeScorer, scoring: JudgeScoring?) async throws {
        var items: [JudgeItem] = []
        if let input {
            let text = try String(contentsOfFile: input, encoding: .utf8)
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
                guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let q = obj["question"] as? String, let a = obj["answer"] as? String else {
                    throw CLIError("\(input):\(n + 1): expected a JSON object with string \"question\" and \"answer\"")
                }
                let t = obj["trait"] as? String ?? trait
                let d = obj["definition"] as? String ?? definition
                guard let t, let d else { throw CLIError("\(input):\(n + 1): no trait/definition (give them per line or with --trait/--definition)") }
                items.append(JudgeItem(trait: t, definition: d, question: q, answer: a))
            }
        } else {
            guard let trait, let definition else { throw CLIError("give --trait and --definition") }
            items = [JudgeItem(trait: trait, definition: definition, question: question!, answer: answer!)]
        }
        let results = await scorer.score(items, coherence: !noCoherence, relevance: judgeRelevance, concurrency: concurrency)
        var failures = 0
        for r in results {
            var o: [String: Any] = ["question": r.item.question, "trait": r.item.trait]
            if let scoring { o["scoring"] = scoring.mode.rawValue }
            switch r.trait {
            case .success(let s): o["trait_score"] = s.score as Any? ?? NSNull(); o["trait_mass"] = s.mass
            case .failure(let e): o["error"] = e.description; failures += 1
            }
            if let c = r.coherence {
                switch c {
                case .success(let c):
                    o["coherence"] = c.score as Any? ?? NSNull()
                    o["relevance"] = c.relevance.score as Any? ?? NSNull()
                    o["off_topic"] = c.offTopic
                case .failure(let e): o["coherence_error"] = e.description; failures += 1
                }
            }
            let d = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: d, as: UTF8.self))
        }
        if failures > 0 { note("\(failures) judge call(s) failed; see \"error\" fields") }
    }
}
