import Foundation

/// How a judge turns its model's reply into a score on 0–100. A remote judge's mode depends on
/// its server and its model's tokenizer; it is detected once (`OpenAIJudge.scoring()`) and stored
/// with the judge cache, so a resumed run scores every answer the same way.
public enum JudgeScoringMode: String, Sendable, Codable, CaseIterable {
    /// Tiller's engine: every answer "0"…"100" teacher-forced, exact (`LocalJudge`).
    case teacherForced = "teacher-forced 0–100"
    /// One call: the first reply token's top log-probabilities, where the tokenizer has one token
    /// per number up to 100 (GPT-4-style tokenizers).
    case firstToken = "first-token 0–100"
    /// The tokenizer spells numbers one digit a token (Qwen, Gemma, SmolLM2, DeepSeek): the first
    /// digit from the first call, each further digit by continuing an assistant message that holds
    /// the digits so far (`DigitTree`).
    case digitTree = "digit tree"
    /// The server cannot continue an assistant message: the question is asked on a 0–9 scale (one
    /// digit is one token on every tokenizer) and the answer rescaled to 0–100.
    case digitScale = "0–9 scale"
}

/// How a server is asked to continue the last (assistant) message of a chat.
public enum ContinuationStyle: String, Sendable, Codable, CaseIterable {
    /// vLLM (and `tiller serve`): `continue_final_message: true` with `add_generation_prompt: false`.
    case continueFinalMessage = "continue_final_message"
    /// llama-server (and `tiller serve`): a trailing assistant message is continued as it stands.
    case trailingAssistant = "trailing assistant message"
}

/// A judge's scoring mode, with the continuation style of a digit tree.
public struct JudgeScoring: Sendable, Equatable, CustomStringConvertible {
    public var mode: JudgeScoringMode
    /// Set exactly when `mode` is `.digitTree`.
    public var continuation: ContinuationStyle?

    public init(mode: JudgeScoringMode, continuation: ContinuationStyle? = nil) {
        precondition((mode == .digitTree) == (continuation != nil), "a digit tree, and only a digit tree, has a continuation style")
        self.mode = mode
        self.continuation = continuation
    }

    public static let teacherForced = JudgeScoring(mode: .teacherForced)
    public static let firstToken = JudgeScoring(mode: .firstToken)
    public static let digitScale = JudgeScoring(mode: .digitScale)
    public static func digitTree(_ style: ContinuationStyle) -> JudgeScoring { JudgeScoring(mode: .digitTree, continuation: style) }

    /// "digit tree (continue_final_message)", "first-token 0–100", …
    public var description: String { continuation.map { "\(mode.rawValue) (\($0.rawValue))" } ?? mode.rawValue }
}

/// The arithmetic of digit-tree scoring, apart from the requests.
///
/// A node is a prefix of the reply: digits that can still begin an integer in 0…100 ("7", "10"),
/// with the probability that the reply begins with them. Its children come from the top
/// log-probabilities of the next token after it: a token made of digits extends the prefix; a
/// token that starts with digits and goes on with anything else ("0.", "5\n") ends the number
/// inside it; every other token ends the number at the prefix. So the mass of the integer n is the
/// probability that the reply begins with n and no further digit, the reading of the first-token
/// judge on a tokenizer with one token per number.
///
/// Only "1"…"9" and "10" can grow into a longer integer ≤ 100, so a prompt costs at most 11
/// calls (the first one, nine single digits and "10"); "0", "11"…"99" and "100" are leaves whose
/// whole probability is the integer's (a digit after them would leave 0…100).
public enum DigitTree {
    /// A branch whose probability is below this share of the first token's mass on integers is
    /// not expanded and its mass is dropped (the score is renormalised over what is kept). At most
    /// 10 branches can be dropped, so at most 1% of the mass goes, which moves the score by at
    /// most 1 point; in practice the dropped branches are far below the cut-off.
    public static let pruneBelow = 1e-3

    /// The prefix `prefix + digits` as a node, if it can begin an integer in 0…100 (no leading
    /// zero except "0" itself).
    static func valid(_ s: String) -> Bool {
        guard !s.isEmpty, s.count <= 3, s.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        if s.count > 1 && s.first == "0" { return false }
        return Int(s)! <= 100
    }

    /// Whether a node needs a call: it can still grow into a longer integer ≤ 100.
    public static func expands(_ prefix: String) -> Bool {
        prefix.count == 1 && prefix != "0" || prefix == "10"
    }

    /// What the next tokens after `prefix` (with probability `p`) make: child prefixes, and mass
    /// ending on integers. At the root (`prefix` empty) leading whitespace is the reply's and is
    /// skipped, and a token without digits is not an integer at all; after a prefix such a token
    /// ends the number (its probability is what the digit tokens leave: 1 − their sum).
    public static func step(prefix: String, probability p: Double, next: [(token: String, logprob: Double)])
        -> (children: [String: Double], ended: [Int: Double]) {
        var children: [String: Double] = [:], ended: [Int: Double] = [:]
        var digitMass = 0.0
        for (token, lp) in next {
            var t = Substring(token)
            if prefix.isEmpty {
                while let f = t.first, f == " " || f == "\t" || f == "\n" || f == "Ġ" || f == "▁" || f == "Ċ" { t = t.dropFirst() }
            }
            let digits = t.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty else { continue }
            let q = Foundation.exp(lp)
            digitMass += q
            let s = prefix + digits
            guard valid(s) else { continue }
            if digits.count == t.count { children[s, default: 0] += p * q } else { ended[Int(s)!, default: 0] += p * q }
        }
        if !prefix.isEmpty, let n = Int(prefix) { ended[n, default: 0] += p * max(0, 1 - digitMass) }
        return (children, ended)
    }

    /// The 0–9 scale's digits as a distribution over 0…100 with the same mass and expectation:
    /// the digit d stands for 100·d/9, whose probability is split between the two integers around
    /// it in proportion to their nearness.
    public static func rescaleDigits(_ top: [(token: String, logprob: Double)]) -> [Int: Double] {
        var out: [Int: Double] = [:]
        for (token, lp) in top {
            guard let d = Scoring.integerAnswer(token), d <= 9 else { continue }
            let v = Double(d) * 100 / 9, lo = v.rounded(.down), f = v - lo, q = Foundation.exp(lp)
            out[Int(lo), default: 0] += q * (1 - f)
            if f > 0 { out[Int(lo) + 1, default: 0] += q * f }
        }
        return out
    }

    /// What the 0–9 scale adds to a 0–100 judge prompt: the last instruction the judge reads.
    public static let scaleInstruction = """


        Answer on a scale from 0 to 9 instead of 0 to 100: 0 stands for 0, 9 stands for 100, and each step is about 11 points. Reply with a single digit from 0 to 9 and nothing else.
        """
}
