import Foundation

/// Coherence of one answer after the relevance check.
public struct CoherenceResult: Sendable, Equatable {
    /// The coherence judge's own score.
    public var raw: JudgeScore
    /// The relevance judge's score (nil score: it gave no number, and no cap is applied).
    public var relevance: JudgeScore
    /// `raw.score`, capped at `cap` when the answer is off-topic.
    public var score: Double?
    public var offTopic: Bool
}

/// One answer to score for a trait.
public struct JudgeItem: Sendable, Hashable, Codable {
    public var trait: String
    public var definition: String
    public var question: String
    public var answer: String
    public init(trait: String, definition: String, question: String, answer: String) {
        self.trait = trait
        self.definition = definition
        self.question = question
        self.answer = answer
    }
}

public struct JudgeItemResult: Sendable {
    public var item: JudgeItem
    public var trait: Result<JudgeScore, JudgeError>
    /// nil when coherence was not asked for.
    public var coherence: Result<CoherenceResult, JudgeError>?
}

/// Trait and coherence scoring of answers with one judge and one set of prompts. Takes plain
/// strings (trait name, definition, question, answer) so it knows nothing of how traits are stored.
public struct JudgeScorer: Sendable {
    public var judge: any Judge
    public var prompts: JudgePrompts
    /// Below this probability mass on integers a score is missing.
    public var minMass: Double
    /// An answer whose relevance score is below this is off-topic…
    public var offTopicBelow: Double
    /// …and its coherence is capped at this.
    public var offTopicCap: Double

    public init(judge: any Judge, prompts: JudgePrompts, minMass: Double = Scoring.defaultMinMass,
                offTopicBelow: Double = 50, offTopicCap: Double = 50) {
        self.judge = judge
        self.prompts = prompts
        self.minMass = minMass
        self.offTopicBelow = offTopicBelow
        self.offTopicCap = offTopicCap
    }

    public func traitScore(trait: String, definition: String, question: String, answer: String) async throws -> JudgeScore {
        let p = prompts.traitJudgePrompt(trait: trait, definition: definition, question: question, answer: answer)
        return try await judge.judge(p).score(minMass: minMass)
    }

    public func coherence(question: String, answer: String) async throws -> CoherenceResult {
        async let c = judge.judge(prompts.coherenceJudgePrompt(question: question, answer: answer))
        async let r = judge.judge(prompts.relevanceJudgePrompt(question: question, answer: answer))
        let raw = try await c.score(minMass: minMass), rel = try await r.score(minMass: minMass)
        let offTopic = rel.score.map { $0 < offTopicBelow } ?? false
        var score = raw.score
        if offTopic, let s = score { score = min(s, offTopicCap) }
        return CoherenceResult(raw: raw, relevance: rel, score: score, offTopic: offTopic)
    }

    /// Coherence without the relevance check: one judge call (small local judges).
    public func coherenceOnly(question: String, answer: String) async throws -> CoherenceResult {
        let raw = try await judge.judge(prompts.coherenceJudgePrompt(question: question, answer: answer)).score(minMass: minMass)
        return CoherenceResult(raw: raw, relevance: JudgeScore(score: nil, mass: 0, distribution: [:]), score: raw.score, offTopic: false)
    }

    /// Coherence with or without the relevance cap.
    public func coherence(question: String, answer: String, relevance: Bool) async throws -> CoherenceResult {
        relevance ? try await coherence(question: question, answer: answer) : try await coherenceOnly(question: question, answer: answer)
    }

    /// Scores items with at most `concurrency` in flight; results in input order, and each one
    /// to `onResult` as it arrives (one at a time, so it may store it). An item's failure is
    /// recorded in its result and does not stop the others. `relevance: false` asks coherence
    /// without the relevance cap (one judge call fewer).
    /// Indices of `items` grouped by identical item, in order of first appearance.
    public static func distinctGroups(_ items: [JudgeItem]) -> [[Int]] {
        var groups: [[Int]] = []
        var index: [JudgeItem: Int] = [:]
        for (i, item) in items.enumerated() {
            if let g = index[item] { groups[g].append(i) } else { index[item] = groups.count; groups.append([i]) }
        }
        return groups
    }

    /// `score`, judging each distinct item once: `onResult` gets the indices of every copy of
    /// the item with its result. Returns the number of distinct items judged.
    @discardableResult
    public func scoreDistinct(_ items: [JudgeItem], coherence: Bool = true, relevance: Bool = true, concurrency: Int = 8,
                              onResult: @escaping @Sendable ([Int], JudgeItemResult) -> Void) async -> Int {
        let groups = Self.distinctGroups(items)
        _ = await score(groups.map { items[$0[0]] }, coherence: coherence, relevance: relevance, concurrency: concurrency) { g, r in
            onResult(groups[g], r)
        }
        return groups.count
    }

    public func score(_ items: [JudgeItem], coherence: Bool = true, relevance: Bool = true, concurrency: Int = 8,
                      onResult: (@Sendable (Int, JudgeItemResult) -> Void)? = nil) async -> [JudgeItemResult] {
        var results = [JudgeItemResult?](repeating: nil, count: items.count)
        await withTaskGroup(of: (Int, JudgeItemResult).self) { group in
            var next = 0
            func add() {
                let i = next
                next += 1
                let item = items[i]
                group.addTask {
                    let t: Result<JudgeScore, JudgeError>
                    do { t = .success(try await traitScore(trait: item.trait, definition: item.definition,
                                                           question: item.question, answer: item.answer)) }
                    catch { t = .failure(Self.judgeError(error)) }
                    var c: Result<CoherenceResult, JudgeError>?
                    if coherence {
                        do { c = .success(try await self.coherence(question: item.question, answer: item.answer, relevance: relevance)) }
                        catch { c = .failure(Self.judgeError(error)) }
                    }
                    return (i, JudgeItemResult(item: item, trait: t, coherence: c))
                }
            }
            while next < min(max(concurrency, 1), items.count) { add() }
            while let (i, r) = await group.next() {
                results[i] = r
                onResult?(i, r)
                if next < items.count { add() }
            }
        }
        return results.map { $0! }
    }

    static func judgeError(_ e: Error) -> JudgeError {
        (e as? JudgeError) ?? .model(String(describing: e))
    }
}
