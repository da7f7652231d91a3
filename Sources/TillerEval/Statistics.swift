import Foundation
import TillerModels

// The statistics Tiller's reports rest on: how well a judge's scores separate two sets of answers
// (ROC AUC), how sure we are of a mean or of a difference between two steering methods (percentile
// bootstrap intervals), and how prompts are divided between choosing a method's settings and
// measuring it (a seeded half/half split). Everything here is deterministic for a seed and
// mirrored exactly by tools/reference/statistics_fixture.py, so a number in a report can be
// recomputed outside Swift.

/// The random number generator behind every resample and split Tiller reports: SplitMix64.
///
/// Chosen because it is tiny, fast, has no hidden platform state and is trivial to reimplement
/// (the Python reference does it with integers masked to 64 bits), so a bootstrap interval or a
/// selection/held-out split can be reproduced bit for bit from its seed alone. It is deliberately
/// not a `RandomNumberGenerator`: the standard library's range sampling would draw differently
/// from the reference; all draws go through `nextInt(below:)`.
public struct StatsRNG: Sendable {
    /// The sampler's own SplitMix64 (TillerModels), behind an interface without range sampling.
    private var bits: SplitMix64

    public init(seed: UInt64) { bits = SplitMix64(seed: seed) }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 { bits.next() }

    /// An integer in `0..<n` (n must be positive): `next() % n`.
    ///
    /// The modulo makes values below `2^64 mod n` very slightly more likely — a relative bias of
    /// at most n / 2^64, about 5e-14 for a million items, far below anything a bootstrap can see.
    /// We accept it because the plain modulo is what lets the Python reference match exactly.
    public mutating func nextInt(below n: Int) -> Int {
        precondition(n > 0, "nextInt(below:) needs a positive bound")
        return Int(next() % UInt64(n))
    }
}

/// A mean with its percentile-bootstrap interval: every Δ Tiller reports between a steered and an
/// unsteered run, or between two steering methods, carries one of these.
public struct ConfidenceInterval: Codable, Sendable, Equatable {
    /// The plain mean of the input (not the mean of the bootstrap means).
    public var estimate: Double
    /// Lower end of the interval.
    public var low: Double
    /// Upper end of the interval.
    public var high: Double
    /// Number of values (or pairs) the interval was computed from.
    public var n: Int
    /// Coverage the interval was computed for, e.g. 0.95.
    public var level: Double

    public init(estimate: Double, low: Double, high: Double, n: Int, level: Double) {
        self.estimate = estimate
        self.low = low
        self.high = high
        self.n = n
        self.level = level
    }

    /// Whether the whole interval lies on one side of zero — for a difference, whether the data
    /// support a real effect at this level rather than one that could be resampling noise.
    public var excludesZero: Bool { low > 0 || high < 0 }
}

public enum Statistics {
    /// Default number of bootstrap resamples.
    public static let defaultResamples = 2000

    /// ROC AUC of a scorer that should rank `positive` items above `negative` ones: the probability
    /// that a random positive scores higher than a random negative, ties counting one half.
    ///
    /// This is how Tiller measures whether a judge (or a probe) tells, say, refusals from compliant
    /// answers: 0.5 is chance, 1 is perfect separation, below 0.5 is ranking the wrong way round.
    /// Identical to `sklearn.metrics.roc_auc_score` with label 1 for the positives. Computed from
    /// Mann–Whitney rank sums with average ranks for ties, in O(n log n), with exact integer
    /// arithmetic up to the final division.
    ///
    /// Returns nil when either side is empty (there is nothing to compare) or any score is NaN (a
    /// missing score must be dropped or given a value by the caller, not silently ranked).
    public static func auc(positive: [Double], negative: [Double]) -> Double? {
        guard !positive.isEmpty, !negative.isEmpty else { return nil }
        if positive.contains(where: \.isNaN) || negative.contains(where: \.isNaN) { return nil }
        var all: [(score: Double, positive: Bool)] = []
        all.reserveCapacity(positive.count + negative.count)
        for s in positive { all.append((s, true)) }
        for s in negative { all.append((s, false)) }
        all.sort { $0.score < $1.score }
        // Twice the rank sum of the positives: a tie group holding 1-based ranks i+1 … j gives
        // each member the average rank (i+1+j)/2, so twice that is an integer.
        var twiceRankSum = 0
        var i = 0
        while i < all.count {
            var j = i + 1
            while j < all.count && all[j].score == all[i].score { j += 1 }
            var positivesInGroup = 0
            for k in i..<j where all[k].positive { positivesInGroup += 1 }
            twiceRankSum += (i + 1 + j) * positivesInGroup
            i = j
        }
        let np = positive.count, nn = negative.count
        // U = rankSum − np(np+1)/2 counts the (positive, negative) pairs the positive wins, ties ½.
        let twiceU = twiceRankSum - np * (np + 1)
        return Double(twiceU) / (2 * Double(np) * Double(nn))
    }

    /// The arithmetic mean, or nil for no values.
    public static func mean(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        var sum = 0.0
        for v in values { sum += v }
        return sum / Double(values.count)
    }

    /// Percentile-bootstrap confidence interval of the mean of `values`.
    ///
    /// Draws `resamples` resamples of the same size with replacement (one `StatsRNG(seed:)` for the
    /// whole procedure, indices drawn in order), takes each resample's mean, and reads the
    /// interval off the sorted means at (1 − level)/2 and 1 − (1 − level)/2 with linear
    /// interpolation, as `numpy.quantile` does by default. The percentile bootstrap makes no
    /// normality assumption, which matters for judge scores that pile up at 0 or 100.
    ///
    /// Returns nil for no values, a level outside (0, 1), fewer than one resample, or a NaN value.
    /// A single value gives the degenerate interval [value, value].
    public static func bootstrapCI(_ values: [Double], level: Double = 0.95, resamples: Int = defaultResamples,
                                   seed: UInt64) -> ConfidenceInterval? {
        guard let estimate = mean(values), level > 0, level < 1, resamples >= 1,
              !values.contains(where: \.isNaN) else { return nil }
        let n = values.count
        if n == 1 {
            return ConfidenceInterval(estimate: estimate, low: values[0], high: values[0], n: 1, level: level)
        }
        var rng = StatsRNG(seed: seed)
        var means = [Double](repeating: 0, count: resamples)
        for b in 0..<resamples {
            var sum = 0.0
            for _ in 0..<n { sum += values[rng.nextInt(below: n)] }
            means[b] = sum / Double(n)
        }
        means.sort()
        let tail = (1 - level) / 2
        return ConfidenceInterval(estimate: estimate, low: quantile(sorted: means, tail),
                                  high: quantile(sorted: means, 1 - tail), n: n, level: level)
    }

    /// Paired percentile-bootstrap interval of mean(a[i] − b[i]): the interval for a Δ between two
    /// conditions measured on the same prompts (steered vs unsteered, method A vs method B).
    ///
    /// Pairs are resampled together — it is `bootstrapCI` of the differences — so the variation
    /// between prompts, which both conditions share, does not widen the interval. Returns nil when
    /// the counts differ or are zero, and for the same invalid parameters as `bootstrapCI`.
    public static func pairedBootstrapCI(_ a: [Double], _ b: [Double], level: Double = 0.95,
                                         resamples: Int = defaultResamples, seed: UInt64) -> ConfidenceInterval? {
        guard a.count == b.count, !a.isEmpty else { return nil }
        return bootstrapCI(zip(a, b).map { $0 - $1 }, level: level, resamples: resamples, seed: seed)
    }

    /// ROC AUC with a stratified percentile-bootstrap interval: each resample draws the positives
    /// and the negatives separately with replacement (so both classes keep their sizes), one
    /// `StatsRNG(seed:)` for the whole procedure, positives first within each resample. `estimate`
    /// is `auc` on the data; `n` counts both classes. Nil when `auc` is nil or the parameters are
    /// invalid as for `bootstrapCI`.
    public static func aucBootstrapCI(positive: [Double], negative: [Double], level: Double = 0.95,
                                      resamples: Int = defaultResamples, seed: UInt64) -> ConfidenceInterval? {
        guard let estimate = auc(positive: positive, negative: negative), level > 0, level < 1, resamples >= 1 else { return nil }
        var rng = StatsRNG(seed: seed)
        var values = [Double](repeating: 0, count: resamples)
        var p = positive, n = negative
        for b in 0..<resamples {
            for i in 0..<p.count { p[i] = positive[rng.nextInt(below: positive.count)] }
            for i in 0..<n.count { n[i] = negative[rng.nextInt(below: negative.count)] }
            values[b] = auc(positive: p, negative: n)!
        }
        values.sort()
        let tail = (1 - level) / 2
        return ConfidenceInterval(estimate: estimate, low: quantile(sorted: values, tail), high: quantile(sorted: values, 1 - tail),
                                  n: positive.count + negative.count, level: level)
    }

    /// A seeded division of items 0..<count into a selection half and a held-out half.
    ///
    /// Steering settings (layer, strength, …) are chosen on `selection` and the reported numbers are
    /// measured on `heldout`, so a method is never scored on the prompts it was tuned on. The
    /// indices are shuffled with Fisher–Yates from the end (`StatsRNG(seed:)`, j drawn below i+1);
    /// the first ⌈count/2⌉ become the selection, the rest the held-out set, each sorted ascending.
    /// A count of 0 (or less) gives two empty sets; a count of 1 puts the one item in the selection.
    public static func split(count: Int, seed: UInt64) -> (selection: [Int], heldout: [Int]) {
        guard count > 0 else { return ([], []) }
        var order = Array(0..<count)
        var rng = StatsRNG(seed: seed)
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = rng.nextInt(below: i + 1)
            order.swapAt(i, j)
        }
        let half = (count + 1) / 2
        return (Array(order[..<half]).sorted(), Array(order[half...]).sorted())
    }

    /// The q-quantile of ascending `sorted` values by linear interpolation between the closest
    /// ranks at position (count − 1)·q — `numpy.quantile`'s default, including its choice of
    /// interpolating from the nearer end.
    static func quantile(sorted values: [Double], _ q: Double) -> Double {
        precondition(!values.isEmpty)
        let position = Double(values.count - 1) * q
        let lower = min(max(Int(position.rounded(.down)), 0), values.count - 1)
        let upper = min(lower + 1, values.count - 1)
        let t = position - Double(lower)
        let x = values[lower], y = values[upper]
        let d = y - x
        return t >= 0.5 ? y - d * (1 - t) : x + d * t
    }
}
