import Foundation

/// A judge's answer to a 0–100 question: the probability-weighted score, or no score.
///
/// The score is the expected value over the integer answers 0…100, renormalised over the mass
/// those answers carry. When that mass is below the threshold the judge did not really answer
/// with a number, so the score is missing (`nil`) — never 0.
public struct JudgeScore: Sendable, Equatable, Codable {
    /// Expected value in [0, 100], or nil when too little mass lies on integers.
    public var score: Double?
    /// Total probability on the integers 0…100 (what the threshold tested).
    public var mass: Double
    /// Probability of each integer answer that carried any mass (answer → probability).
    public var distribution: [Int: Double]

    public init(score: Double?, mass: Double, distribution: [Int: Double]) {
        self.score = score
        self.mass = mass
        self.distribution = distribution
    }

    /// The answer with the most probability (for display), if any.
    public var mode: Int? { distribution.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }?.key }
}

public enum Scoring {
    /// Default minimum probability mass on integers for a score to count.
    public static let defaultMinMass = 0.25

    /// The integer 0…100 a token or answer string stands for, or nil. Surrounding whitespace
    /// (tokenizers' leading spaces: " 42", "Ġ42", "▁42") is ignored; anything else is not a number.
    public static func integerAnswer(_ text: String) -> Int? {
        var t = Substring(text)
        // Byte-level BPE and SentencePiece spell a leading space as Ġ / ▁.
        while let f = t.first, f == " " || f == "\t" || f == "\n" || f == "Ġ" || f == "▁" || f == "Ċ" { t = t.dropFirst() }
        while let l = t.last, l == " " || l == "\t" || l == "\n" { t = t.dropLast() }
        guard !t.isEmpty, t.count <= 3, t.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        // "007" is not how anyone writes 7; a leading zero is only "0" itself.
        if t.count > 1 && t.first == "0" { return nil }
        guard let v = Int(t), v >= 0, v <= 100 else { return nil }
        return v
    }

    /// Weighted score from probabilities of integer answers (duplicates summed).
    public static func weighted(_ probabilities: [(answer: Int, probability: Double)],
                                minMass: Double = defaultMinMass) -> JudgeScore {
        var dist: [Int: Double] = [:]
        for (a, p) in probabilities where (0...100).contains(a) && p.isFinite && p > 0 {
            dist[a, default: 0] += p
        }
        let mass = dist.values.reduce(0, +)
        guard mass > 0, mass >= minMass else { return JudgeScore(score: nil, mass: mass, distribution: dist) }
        var ev = 0.0
        for (a, p) in dist { ev += Double(a) * p }
        return JudgeScore(score: min(100, max(0, ev / mass)), mass: mass, distribution: dist)
    }

    /// Weighted score from an API's top log-probabilities of the first answer token: tokens that
    /// spell an integer 0…100 count, everything else is ignored (it lowers the mass).
    public static func fromTopLogprobs(_ top: [(token: String, logprob: Double)],
                                       minMass: Double = defaultMinMass) -> JudgeScore {
        weighted(top.compactMap { e in integerAnswer(e.token).map { ($0, Foundation.exp(e.logprob)) } }, minMass: minMass)
    }
}
