import Foundation

// The sweep as work: configurations × questions × samples, cut into fixed units of at most
// `batch_size` answers that are generated together and stored in one transaction. Units depend
// only on the plan (never on what is already stored), so a resumed run recomputes an
// interrupted unit with exactly the same batch, and a shard takes a fixed subset of units.

public struct WorkItem: Sendable, Equatable {
    public var config: Configuration
    public var question: Int
    public var sample: Int
    public var key: String { itemKey(config.id, question, sample) }
}

public struct WorkUnit: Sendable, Equatable {
    /// Position in the plan (shards take index % count == shard).
    public var index: Int
    public var items: [WorkItem]
}

/// `--shard i/n`: the units whose index % n == i (0-based, like SLURM_ARRAY_TASK_ID).
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    public var index: Int
    public var count: Int
    public static let all = Shard(index: 0, count: 1)

    public init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }
    public init(parsing s: String) throws {
        let p = s.split(separator: "/")
        guard p.count == 2, let i = Int(p[0]), let n = Int(p[1]), n >= 1, i >= 0, i < n else {
            throw ExperimentError("--shard \"\(s)\" must be i/n with 0 ≤ i < n (e.g. 0/4 … 3/4)")
        }
        self.init(index: i, count: n)
    }
    public func owns(_ unitIndex: Int) -> Bool { unitIndex % count == index }
    public var description: String { "\(index)/\(count)" }
    public var isAll: Bool { count == 1 }
}

public enum SweepPlanner {
    /// The configurations of a grid for one model and trait: the baseline first, then variant ×
    /// layer × coefficient in file order. `norm(layer)` converts relative coefficients.
    public static func grid(model: String, trait: String, variants: [String], layers: [Int], plan: CoefficientPlan,
                            norm: (Int) throws -> Double) rethrows -> [Configuration] {
        var out = [Configuration.baseline(model: model, trait: trait)]
        for v in variants {
            for l in layers {
                for c in plan.values {
                    out.append(try configuration(model: model, trait: trait, variant: v, layer: l, scale: plan.scale, coefficient: c, norm: norm))
                }
            }
        }
        return out
    }

    public static func configuration(model: String, trait: String, variant: String, layer: Int, scale: CoefficientScale,
                                     coefficient c: Double, norm: (Int) throws -> Double) rethrows -> Configuration {
        let absolute = scale == .relative ? c * (try norm(layer)) : c
        return Configuration(model: model, trait: trait, variant: variant, layer: layer, scale: scale,
                             coefficient: c, absoluteCoefficient: absolute)
    }

    /// Items in configuration order, cut into units of at most `batchSize`; unit indices start at
    /// `firstIndex` so that units of several groups number consecutively.
    public static func units(configs: [Configuration], questions: Int, samples: Int, batchSize: Int,
                             firstIndex: Int = 0) -> [WorkUnit] {
        var items: [WorkItem] = []
        for c in configs { for q in 0..<questions { for s in 0..<samples { items.append(WorkItem(config: c, question: q, sample: s)) } } }
        var units: [WorkUnit] = []
        var i = 0
        while i < items.count {
            let end = min(i + max(batchSize, 1), items.count)
            units.append(WorkUnit(index: firstIndex + units.count, items: Array(items[i..<end])))
            i = end
        }
        return units
    }

    /// The next coefficient of an adaptive search given what it has evaluated so far (in order,
    /// with each one's mean coherence; nil = no coherence score, counted as incoherent), or nil
    /// when it is done. Pure, so a resumed run replays the same search from stored scores.
    public static func nextCoefficient(_ search: CoefficientSearch, threshold: Double,
                                       history: [(coefficient: Double, coherence: Double?)]) -> Double? {
        func ok(_ c: Double?) -> Bool { (c ?? -1) >= threshold }
        guard let first = history.first else { return search.start }
        // First walk geometrically (up while coherent, down while not) until the cliff is bracketed.
        let up = ok(first.coherence)
        var lo: Double?, hi: Double?
        var walk = 0
        for h in history {
            walk += 1
            if ok(h.coherence) { lo = max(lo ?? 0, h.coefficient) } else { hi = min(hi ?? .infinity, h.coefficient) }
            if lo != nil && hi != nil { break }
        }
        if lo == nil || hi == nil {
            guard walk < search.maxSteps else { return nil }
            let last = history.last!.coefficient
            return roundSignificant(up ? last * search.factor : last / search.factor)
        }
        // Then bisect (geometric mean) between the last coherent and the first incoherent.
        var refined = 0
        for h in history.dropFirst(walk) {
            refined += 1
            if ok(h.coherence) { lo = max(lo!, h.coefficient) } else { hi = min(hi!, h.coefficient) }
        }
        guard refined < search.refine else { return nil }
        return roundSignificant((lo! * hi!).squareRoot())
    }
}

/// 3 significant digits: search coefficients become readable configuration ids.
func roundSignificant(_ x: Double, digits: Int = 3) -> Double {
    guard x != 0, x.isFinite else { return x }
    let p = pow(10, Double(digits) - 1 - floor(log10(abs(x))))
    return (x * p).rounded() / p
}
