import Foundation
import XCTest
@testable import TillerEval

/// Tiller's statistics against the Python reference (tools/reference/statistics_fixture.py:
/// sklearn's ROC AUC, numpy's bootstrap quantiles, the same SplitMix64 draws), plus the properties a
/// report relies on: determinism for a seed, and intervals that see a real shift and no phantom one.
final class StatisticsTests: XCTestCase {
    struct Reference: Decodable {
        struct RNGCase: Decodable {
            let seed: UInt64
            let next_hex: [String]
        }
        struct NextIntCase: Decodable {
            let seed: UInt64
            let bounds: [Int]
            let values: [Int]
        }
        struct AUCCase: Decodable {
            let name: String
            let positive: [Double]
            let negative: [Double]
            let expected: Double
        }
        struct BootstrapCase: Decodable {
            let name: String
            let values: [Double]
            let seed: UInt64
            let resamples: Int
            let level: Double
            let estimate: Double
            let low: Double
            let high: Double
        }
        struct PairedCase: Decodable {
            let name: String
            let a: [Double]
            let b: [Double]
            let seed: UInt64
            let resamples: Int
            let level: Double
            let estimate: Double
            let low: Double
            let high: Double
        }
        struct SplitCase: Decodable {
            let count: Int
            let seed: UInt64
            let selection: [Int]
            let heldout: [Int]
        }
        let rng: [RNGCase]
        let next_int: NextIntCase
        let auc: [AUCCase]
        let bootstrap: [BootstrapCase]
        let paired: [PairedCase]
        let split: [SplitCase]
    }

    static let reference: Reference = {
        let url = URL(fileURLWithPath: Fixtures.path("statistics.json"))
        return try! JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
    }()

    /// Uniform noise in [-0.5, 0.5) from the statistics generator itself (deterministic).
    private func noise(_ count: Int, seed: UInt64) -> [Double] {
        var rng = StatsRNG(seed: seed)
        return (0..<count).map { _ in Double(rng.next() >> 11) * 0x1p-53 - 0.5 }
    }

    // MARK: - Generator

    func testStatsRNGMatchesReference() {
        // Published SplitMix64 output for seed 0.
        var zero = StatsRNG(seed: 0)
        XCTAssertEqual(zero.next(), 0xE220_A839_7B1D_CDAF)
        for c in Self.reference.rng {
            var rng = StatsRNG(seed: c.seed)
            let got = c.next_hex.map { _ -> String in
                let s = String(rng.next(), radix: 16)
                return String(repeating: "0", count: 16 - s.count) + s
            }
            XCTAssertEqual(got, c.next_hex, "seed \(c.seed)")
        }
        let c = Self.reference.next_int
        var rng = StatsRNG(seed: c.seed)
        XCTAssertEqual(c.bounds.map { rng.nextInt(below: $0) }, c.values)
    }

    // MARK: - AUC

    func testAUCMatchesSklearn() {
        XCTAssertFalse(Self.reference.auc.isEmpty)
        for c in Self.reference.auc {
            guard let auc = Statistics.auc(positive: c.positive, negative: c.negative) else {
                XCTFail("\(c.name): no AUC"); continue
            }
            XCTAssertEqual(auc, c.expected, accuracy: 1e-12, c.name)
        }
    }

    func testAUCProperties() {
        // A constant scorer cannot tell anything apart.
        XCTAssertEqual(Statistics.auc(positive: Array(repeating: 3, count: 7), negative: Array(repeating: 3, count: 19)), 0.5)
        // Swapping the roles mirrors the AUC around one half.
        let pos = noise(33, seed: 1).map { $0 + 0.2 }, neg = noise(21, seed: 2)
        XCTAssertEqual(Statistics.auc(positive: pos, negative: neg)! + Statistics.auc(positive: neg, negative: pos)!, 1, accuracy: 1e-12)
        // Agrees with counting every pair.
        let rounded = pos.map { ($0 * 4).rounded() }, roundedNeg = neg.map { ($0 * 4).rounded() }
        var wins = 0.0
        for p in rounded { for q in roundedNeg { wins += p > q ? 1 : (p == q ? 0.5 : 0) } }
        XCTAssertEqual(Statistics.auc(positive: rounded, negative: roundedNeg)!, wins / Double(rounded.count * roundedNeg.count), accuracy: 1e-12)
        XCTAssertNil(Statistics.auc(positive: [], negative: [1]))
        XCTAssertNil(Statistics.auc(positive: [1], negative: []))
        XCTAssertNil(Statistics.auc(positive: [1, .nan], negative: [0]))
    }

    // MARK: - Bootstrap

    func testBootstrapMatchesNumpy() {
        XCTAssertFalse(Self.reference.bootstrap.isEmpty)
        for c in Self.reference.bootstrap {
            guard let ci = Statistics.bootstrapCI(c.values, level: c.level, resamples: c.resamples, seed: c.seed) else {
                XCTFail("\(c.name): no interval"); continue
            }
            XCTAssertEqual(ci.estimate, c.estimate, accuracy: 1e-9, c.name)
            XCTAssertEqual(ci.low, c.low, accuracy: 1e-9, c.name)
            XCTAssertEqual(ci.high, c.high, accuracy: 1e-9, c.name)
            XCTAssertEqual(ci.n, c.values.count, c.name)
            XCTAssertEqual(ci.level, c.level, c.name)
        }
    }

    func testPairedBootstrapMatchesNumpy() {
        XCTAssertFalse(Self.reference.paired.isEmpty)
        for c in Self.reference.paired {
            guard let ci = Statistics.pairedBootstrapCI(c.a, c.b, level: c.level, resamples: c.resamples, seed: c.seed) else {
                XCTFail("\(c.name): no interval"); continue
            }
            XCTAssertEqual(ci.estimate, c.estimate, accuracy: 1e-9, c.name)
            XCTAssertEqual(ci.low, c.low, accuracy: 1e-9, c.name)
            XCTAssertEqual(ci.high, c.high, accuracy: 1e-9, c.name)
            XCTAssertEqual(ci.n, c.a.count, c.name)
        }
    }

    func testBootstrapEdgeCases() {
        XCTAssertNil(Statistics.bootstrapCI([], seed: 1))
        XCTAssertNil(Statistics.bootstrapCI([1, 2], level: 0, seed: 1))
        XCTAssertNil(Statistics.bootstrapCI([1, 2], level: 1, seed: 1))
        XCTAssertNil(Statistics.bootstrapCI([1, 2], resamples: 0, seed: 1))
        XCTAssertNil(Statistics.bootstrapCI([1, .nan], seed: 1))
        XCTAssertEqual(Statistics.bootstrapCI([2.5], seed: 9), ConfidenceInterval(estimate: 2.5, low: 2.5, high: 2.5, n: 1, level: 0.95))
        XCTAssertNil(Statistics.pairedBootstrapCI([1, 2], [1], seed: 1))
        XCTAssertNil(Statistics.pairedBootstrapCI([], [], seed: 1))
        XCTAssertNil(Statistics.mean([]))
        XCTAssertEqual(Statistics.mean([1, 2, 6]), 3)
    }

    func testClearShiftExcludesZeroAndNoiseIncludesIt() {
        let base = noise(60, seed: 3).map { 50 + 20 * $0 }
        let steered = zip(base, noise(60, seed: 4)).map { $0 + 2 + $1 }  // +2 ± 0.5 on every prompt
        let shift = Statistics.pairedBootstrapCI(steered, base, seed: 5)!
        XCTAssertTrue(shift.excludesZero)
        XCTAssertGreaterThan(shift.low, 1.5)
        XCTAssertLessThan(shift.high, 2.5)
        XCTAssertTrue(shift.low <= shift.estimate && shift.estimate <= shift.high)

        let raw = noise(200, seed: 6)
        let m = Statistics.mean(raw)!
        let centred = raw.map { $0 - m }
        let null = Statistics.bootstrapCI(centred, seed: 7)!
        XCTAssertFalse(null.excludesZero)
        XCTAssertLessThan(null.low, 0)
        XCTAssertGreaterThan(null.high, 0)
    }

    func testConfidenceIntervalRoundTripsThroughJSON() throws {
        let ci = Statistics.bootstrapCI(noise(30, seed: 8), seed: 8)!
        XCTAssertEqual(try JSONDecoder().decode(ConfidenceInterval.self, from: JSONEncoder().encode(ci)), ci)
    }

    // MARK: - Split

    func testSplitMatchesReference() {
        XCTAssertFalse(Self.reference.split.isEmpty)
        for c in Self.reference.split {
            let s = Statistics.split(count: c.count, seed: c.seed)
            XCTAssertEqual(s.selection, c.selection, "count \(c.count) seed \(c.seed)")
            XCTAssertEqual(s.heldout, c.heldout, "count \(c.count) seed \(c.seed)")
        }
    }

    func testSplitIsASortedPartition() {
        for count in 0...25 {
            let s = Statistics.split(count: count, seed: UInt64(count) &* 31)
            XCTAssertEqual(s.selection.count, (count + 1) / 2)
            XCTAssertEqual((s.selection + s.heldout).sorted(), Array(0..<count))
            XCTAssertEqual(s.selection, s.selection.sorted())
            XCTAssertEqual(s.heldout, s.heldout.sorted())
        }
        XCTAssertEqual(Statistics.split(count: 1, seed: 0).selection, [0])
        XCTAssertEqual(Statistics.split(count: 1, seed: 0).heldout, [])
    }

    // MARK: - Determinism

    func testSameSeedSameResultDifferentSeedDifferentResult() {
        let values = noise(40, seed: 10)
        XCTAssertEqual(Statistics.bootstrapCI(values, seed: 42), Statistics.bootstrapCI(values, seed: 42))
        XCTAssertNotEqual(Statistics.bootstrapCI(values, seed: 42), Statistics.bootstrapCI(values, seed: 43))
        let other = noise(40, seed: 11)
        XCTAssertEqual(Statistics.pairedBootstrapCI(values, other, seed: 1), Statistics.pairedBootstrapCI(values, other, seed: 1))
        XCTAssertNotEqual(Statistics.pairedBootstrapCI(values, other, seed: 1), Statistics.pairedBootstrapCI(values, other, seed: 2))
        let a = Statistics.split(count: 40, seed: 42), b = Statistics.split(count: 40, seed: 42), c = Statistics.split(count: 40, seed: 43)
        XCTAssertEqual(a.selection, b.selection)
        XCTAssertEqual(a.heldout, b.heldout)
        XCTAssertNotEqual(a.selection, c.selection)
    }
}
