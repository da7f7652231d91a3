import Foundation
import TillerSteering

/// The judge proves itself before its scores are used: on known cases, it must tell apart what
/// it claims to measure.
///
/// - trait AUC: its trait scores of answers that show the trait (reference `pos`) against answers
///   that don't (reference `neg`);
/// - coherence AUC: its coherence scores of fluent answers (the reference answers) against
///   degenerate versions of the same answers (shuffled, one word repeated, cut off at half, and
///   the letter-and-dot loop that steering produces).
///
/// A score the judge gives no number for (too little probability on integers) is left out; a
/// side with no scores gives no AUC, which fails. The figures are stored with the run and head
/// the report; below `minAUC` every judge-based table is labelled "judge failed validation".
public enum JudgeValidation {
    /// Judge scores per reference item: a trait score of its positive and of its negative
    /// answer, then a coherence score of the fluent answer and of each degenerate version.
    public static let scoresPerItem = 3 + Degeneration.versions(of: "a", seed: 0).count
    /// Judge calls behind `items` items: each coherence score also asks for relevance when
    /// `relevance` is on. The one place this count is written (plans, progress bars).
    public static func calls(items: Int, relevance: Bool) -> Int {
        items * (2 + (scoresPerItem - 2) * (relevance ? 2 : 1))
    }

    public static func run(scorer: JudgeScorer, trait: String, definition: String, references: [ReferenceAnswer],
                           items: Int, minAUC: Double, relevance: Bool, seed: UInt64, concurrency: Int = 8,
                           progress: (@Sendable (Int) -> Void)? = nil) async throws -> [InstrumentValidation] {
        let refs = Array(references.prefix(items))
        guard refs.count >= 2 else {
            throw EvaluationError("judge validation for \(trait) needs at least 2 reference answers (the trait has \(references.count))")
        }
        enum Kind: Sendable { case traitPos, traitNeg, fluent, degenerate }
        struct Job: Sendable { var kind: Kind; var question: String; var answer: String }
        var jobs: [Job] = []
        for (i, r) in refs.enumerated() {
            jobs.append(Job(kind: .traitPos, question: r.question, answer: r.pos))
            jobs.append(Job(kind: .traitNeg, question: r.question, answer: r.neg))
            let fluent = i % 2 == 0 ? r.pos : r.neg
            jobs.append(Job(kind: .fluent, question: r.question, answer: fluent))
            for v in Degeneration.versions(of: fluent, seed: seed &+ UInt64(i)) {
                jobs.append(Job(kind: .degenerate, question: r.question, answer: v.text))
            }
        }
        var scores = [Double?](repeating: nil, count: jobs.count)
        var firstError: Error?
        try await withThrowingTaskGroup(of: (Int, Double?, Error?).self) { group in
            var next = 0
            func add() {
                let i = next, job = jobs[i]
                next += 1
                group.addTask {
                    do {
                        switch job.kind {
                        case .traitPos, .traitNeg:
                            return (i, try await scorer.traitScore(trait: trait, definition: definition, question: job.question, answer: job.answer).score, nil)
                        case .fluent, .degenerate:
                            return (i, try await scorer.coherence(question: job.question, answer: job.answer, relevance: relevance).score, nil)
                        }
                    } catch { return (i, nil, error) }
                }
            }
            while next < min(max(concurrency, 1), jobs.count) { add() }
            var done = 0
            while let (i, s, e) = try await group.next() {
                scores[i] = s
                if let e, firstError == nil { firstError = e }
                done += 1
                progress?(done)
                if next < jobs.count { add() }
            }
        }
        if let e = firstError { throw e }
        func pick(_ k: Kind) -> [Double] { jobs.indices.filter { jobs[$0].kind == k }.compactMap { scores[$0] } }
        func asked(_ k: Kind) -> Int { jobs.filter { $0.kind == k }.count }
        let tp = pick(.traitPos), tn = pick(.traitNeg), fl = pick(.fluent), dg = pick(.degenerate)
        let traitAUC = Statistics.auc(positive: tp, negative: tn)
        let cohAUC = Statistics.auc(positive: fl, negative: dg)
        return [
            InstrumentValidation(instrument: EvaluatorKind.judge.rawValue, check: "trait_auc", value: traitAUC, n: tp.count + tn.count,
                                 threshold: minAUC,
                                 detail: "trait scores of \(tp.count)/\(asked(.traitPos)) trait-showing vs \(tn.count)/\(asked(.traitNeg)) trait-free reference answers (scored/asked)"),
            InstrumentValidation(instrument: EvaluatorKind.judge.rawValue, check: "coherence_auc", value: cohAUC, n: fl.count + dg.count,
                                 threshold: minAUC,
                                 detail: "coherence of \(fl.count)/\(asked(.fluent)) fluent vs \(dg.count)/\(asked(.degenerate)) degenerate answers (shuffled, repeated word, cut off, letter loop)"),
        ]
    }
}
