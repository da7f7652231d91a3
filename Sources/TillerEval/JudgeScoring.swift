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
    /// digit from the first call, each further digit (and the end of the reply) by continuing an
    /// assistant message that holds the digits so far (`DigitTree`).
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

extension JudgeScoringMode {
    /// The version of this mode's reading algorithm: raised whenever the same server answers would
    /// give other numbers, so that cached distributions read the old way are never reused
    /// (`JudgeReading`). The digit tree is at 2: version 1 (before issue #26) ignored the first
    /// digits missing from a cut-off top-k list and renormalised pruned branches away, at a 1%
    /// cut-off.
    public var readingVersion: Int {
        switch self {
        case .teacherForced, .firstToken, .digitScale: return 1
        case .digitTree: return DigitTree.version
        }
    }
}

/// How a judge's answer distribution was read from its model: the scoring mode, the version of
/// that mode's algorithm and the parameters that change its numbers (the digit tree's cut-off,
/// the top-k asked for). It is part of the judge cache's key (`JudgeCache`), so a run resumed
/// after a change of algorithm or parameter reads every answer again rather than mixing scores
/// read two ways.
public struct JudgeReading: Sendable, Equatable, CustomStringConvertible {
    public var scoring: JudgeScoring
    public var version: Int
    /// Parameter name → value, as written in the key.
    public var parameters: [String: String]

    public init(_ scoring: JudgeScoring, version: Int? = nil, parameters: [String: String] = [:]) {
        self.scoring = scoring
        self.version = version ?? scoring.mode.readingVersion
        self.parameters = parameters
    }

    /// The reading as the judge cache stores it: "digit tree v2 (continue_final_message)
    /// cutoff=0.003 top_logprobs=20", "teacher-forced 0–100 v1", …
    public var key: String {
        var s = "\(scoring.mode.rawValue) v\(version)"
        if let c = scoring.continuation { s += " (\(c.rawValue))" }
        for (k, v) in parameters.sorted(by: { $0.key < $1.key }) { s += " \(k)=\(v)" }
        return s
    }
    public var description: String { key }

    /// What the judge cache records for answers stored before readings were: the modes whose
    /// reading has not changed since keep their current key (with the parameters every Tiller
    /// used then: 20 top log-probabilities); a digit tree's cannot be known (its algorithm and
    /// cut-off changed), so its answers are kept under this key, which no judge reads.
    static let unrecorded = "reading not recorded"
    static func legacyKey(_ scoring: JudgeScoring?) -> String {
        switch scoring?.mode {
        case nil: return ""
        case .teacherForced?: return JudgeReading(.teacherForced).key
        case .firstToken?, .digitScale?: return JudgeReading(scoring!, version: 1, parameters: ["top_logprobs": "20"]).key
        case .digitTree?: return unrecorded
        }
    }
}

/// The arithmetic of digit-tree scoring, apart from the requests.
///
/// A node is a prefix of the reply: digits that can still begin an integer in 0…100 ("7", "10",
/// "85"), with the probability that the reply begins with them. The top log-probabilities of the
/// next token after it give its children (a token made only of digits extends the prefix) and the
/// probability that the reply ends there (an end-of-turn token), which is the mass of that
/// integer. As in the local judge, an integer counts only when the reply is that number and
/// nothing else: "8" followed by "." or a word is not the answer 8, so the answers stay disjoint
/// and their probabilities add up to the mass on integer replies.
///
/// A server shows only the top k tokens after each node: the digits a full list leaves out are
/// estimated (`step`), and branches below the cut-off are not asked about but estimated from the
/// branches kept (`estimatePruned`). Every node kept needs one call (the first call is the
/// root's), so the cost is proportional to the branches kept: a reply the judge is sure of ("85",
/// then the end) costs three calls.
public enum DigitTree {
    /// The default cut-off (`OpenAIJudgeOptions.digitTreeCutoff`): a branch whose probability is
    /// below this share of the first token's mass on integers is not asked about; its mass is
    /// estimated from the branches kept (`estimatePruned`). A judge sure of its answer keeps three
    /// or four branches. SmolLM2-135M, a diffuse judge, through `tiller serve` on the 4 prompts of
    /// `LocalJudgeTests`, against the exact local judge (calls a prompt, worst |Δ score|):
    /// 0.3%: 29–36 calls, 0.41 points; 0.5%: 19–25, 1.9; 1%: 16–19, 1.9; no cut-off: 102, 0.45
    /// (what is left there is the estimate of the first digits missing from the top 20).
    /// Before the unlisted digits were estimated and pruned mass kept: 5.1 points at 1%, 3.3 at
    /// 0.2%, 4.6 with no cut-off at all.
    public static let pruneBelow = 0.003

    /// The version of this reading (`JudgeScoringMode.readingVersion`); raise it with any change
    /// that reads the same server answers into other numbers.
    public static let version = 2

    /// Whether `s` can begin an integer in 0…100 (no leading zero except "0" itself).
    static func valid(_ s: String) -> Bool {
        guard !s.isEmpty, s.count <= 3, s.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        if s.count > 1 && s.first == "0" { return false }
        return Int(s)! <= 100
    }

    /// A token that ends the reply: the end-of-turn token as servers spell it ("<|im_end|>",
    /// "<end_of_turn>", "</s>", "<｜end▁of▁sentence｜>"), or "" where they leave special tokens out.
    public static func endsReply(_ token: String) -> Bool {
        token.isEmpty || (token.count > 2 && token.hasPrefix("<") && token.hasSuffix(">"))
    }

    /// What the next tokens after `prefix` (reached with probability `p`) make: child prefixes,
    /// and mass ending on the integer `prefix`. At the root (`prefix` empty) leading whitespace is
    /// the reply's and is skipped, and an end token is an empty reply, no integer.
    ///
    /// `asked`: how many alternatives the request asked for. A list that long is cut off by the
    /// server, and a digit missing from it is not impossible, only less likely than the least
    /// likely token listed: each such digit that would extend the prefix is given that token's
    /// probability (at most an even share of the mass not listed) and its branch is asked about
    /// like any other. At the root this is most of what a top-20 list hides from a diffuse judge:
    /// SmolLM2-135M lists 6 to 8 of the 10 first digits, and the unlisted ones carry 6–9% of the
    /// integer mass, mostly on the high scores (3x, 6x, 7x, 8x) — 1 to 4.6 points of the score.
    /// Measured there, the missing digits hold 80–87% of this estimate (it is their upper bound).
    /// A shorter list is the whole distribution and nothing is added.
    public static func step(prefix: String, probability p: Double, next: TopLogprobs, asked: Int? = nil)
        -> (children: [String: Double], ended: [Int: Double]) {
        var children: [String: Double] = [:], ended: [Int: Double] = [:]
        for (token, lp) in next {
            let q = Foundation.exp(lp)
            if !prefix.isEmpty, endsReply(token) {
                ended[Int(prefix)!, default: 0] += p * q
                continue
            }
            var t = Substring(token)
            if prefix.isEmpty {
                while let f = t.first, f == " " || f == "\t" || f == "\n" || f == "Ġ" || f == "▁" || f == "Ċ" { t = t.dropFirst() }
            }
            // Words, and digits with anything after them in the same token, are not an integer reply.
            guard !t.isEmpty, t.allSatisfy({ $0.isASCII && $0.isNumber }) else { continue }
            let s = prefix + t
            if valid(s) { children[s, default: 0] += p * q }
        }
        if let asked, asked > 0, next.count >= asked, let least = next.map(\.logprob).min() {
            let unlisted = (0...9).map { prefix + String($0) }.filter { valid($0) && children[$0] == nil }
            let rest = max(0, 1 - next.reduce(0.0) { $0 + Foundation.exp($1.logprob) })
            if !unlisted.isEmpty {
                let q = min(Foundation.exp(least), rest / Double(unlisted.count))
                for s in unlisted where q > 0 { children[s] = p * q }
            }
        }
        return (children, ended)
    }

    /// The digits that can follow `s` in an integer 0…100 ("10": 0; "85": none; "7": all ten).
    static func followers(_ s: String) -> [Int] { (0...9).filter { valid(s + String($0)) } }

    /// Mass for the branches below the cut-off, which are not asked about. Their mass is not
    /// dropped: a pruned prefix is taken to go on as the kept prefixes of its depth that can go on
    /// the same ways (`followers`) do, on average weighted by their probabilities — their
    /// distributions over the integers below them, moved onto its own digits ("85" ending becomes
    /// "25" ending). So a pruned two-digit prefix keeps its own integer with the kept two-digit
    /// prefixes' mean probability of ending there. "10", which goes on to "100" (or "10/10") and
    /// almost never ends, is no peer of "25": with it among the peers the estimate is far too low
    /// (SmolLM2-135M: P(end | "10") < 0.01, P(end | other two digits) mostly 0.2–0.5). Dropping
    /// the mass instead (the renormalised score then gives it the mean of everything kept) pulled
    /// the score toward the single digits, 2–6 points low at a 0.3–1% cut-off.
    /// `kept`: every prefix asked about, with its probability; `dist`: the integers' mass from
    /// those branches. Deepest levels first, so a kept branch's distribution already holds the
    /// estimates below it. A pruned branch with no such peer is dropped.
    public static func estimatePruned(_ pruned: [String: Double], kept: [String: Double], into dist: inout [Int: Double]) {
        let depths = Set(pruned.keys.map(\.count)).sorted(by: >)
        for depth in depths {
            var add: [Int: Double] = [:]
            // Pruned prefixes of this depth, grouped by the ways they can go on.
            let groups = Dictionary(grouping: pruned.filter { $0.key.count == depth }, by: { followers($0.key) })
            for (ways, members) in groups {
                let peers = kept.filter { $0.key.count == depth && followers($0.key) == ways }
                let total = peers.values.reduce(0, +)
                guard total > 0 else { continue }
                // The peers' integers, as the suffix after their prefix ("" = ends there).
                var suffixes: [String: Double] = [:]
                for (n, m) in dist {
                    let digits = String(n)
                    guard digits.count >= depth, peers[String(digits.prefix(depth))] != nil else { continue }
                    suffixes[String(digits.dropFirst(depth)), default: 0] += m
                }
                for (s, p) in members {
                    for (suffix, m) in suffixes where valid(s + suffix) { add[Int(s + suffix)!, default: 0] += p / total * m }
                }
            }
            for (n, m) in add { dist[n, default: 0] += m }
        }
    }

    /// The 0–9 scale's digits as a distribution over 0…100 with the same mass and expectation:
    /// the digit d stands for 100·d/9, whose probability is split between the two integers around
    /// it in proportion to their nearness.
    public static func rescaleDigits(_ top: TopLogprobs) -> [Int: Double] {
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
