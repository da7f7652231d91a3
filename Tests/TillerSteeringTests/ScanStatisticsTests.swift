import XCTest
import TillerModels
@testable import TillerSteering

final class ScanStatisticsTests: XCTestCase {
    /// Plants a massive dim (7) in every layer and a second one (3) in the first half only, and
    /// checks the per-layer tops, ratios, dominant dim, CV, global dims and carrier shares.
    func testPlantedMassiveDims() throws {
        let layers = 6, hidden = 32, tokens = 10
        let acc = ScanAccumulator(layers: layers, hidden: hidden, massiveRatio: 100)
        var rng = SplitMix64(seed: 1)
        for l in 0..<layers {
            var rows = [Float](repeating: 0, count: tokens * hidden)
            for t in 0..<tokens {
                for d in 0..<hidden { rows[t * hidden + d] = Float.random(in: -1..<1, using: &rng) }
                if t == 0 {  // the first token carries the massive values, as in real models
                    rows[d(7, t, hidden)] = -Float(1000 * (l + 1))
                    if l < 3 { rows[d(3, t, hidden)] = 500 }
                }
            }
            var roles = [TokenRole](repeating: .other, count: tokens)
            roles[0] = .first
            rows.withUnsafeBufferPointer { acc.add(layer: l, rows: $0.baseAddress!, count: tokens, roles: roles) }
        }
        var p = ScanParameters()
        p.topK = 3
        let r = acc.result(model: "synthetic", parameters: p)
        XCTAssertEqual(r.nLayers, layers)
        XCTAssertEqual(r.tokensSeen, tokens)
        for l in 0..<layers {
            XCTAssertEqual(r.layers[l].top[0].dim, 7)
            XCTAssertEqual(r.layers[l].top[0].max, Double(1000 * (l + 1)), accuracy: 1e-3)
            XCTAssertTrue(r.layers[l].top[0].massive)
            XCTAssertGreaterThan(r.layers[l].top[0].ratioMedian, 1000)
            XCTAssertEqual(r.layers[l].top[0].carrierShare?.first ?? -1, 1.0)
            if l < 3 { XCTAssertEqual(r.layers[l].top[1].dim, 3) } else { XCTAssertFalse(r.layers[l].top[1].massive) }
        }
        let dom = try XCTUnwrap(r.dominant)
        XCTAssertEqual(dom.dim, 7)
        XCTAssertEqual(dom.layersPresent, layers)
        // Magnitudes 1000…6000: population CV = std/mean.
        let mags = (1...layers).map { Double($0) * 1000 }
        let mean = mags.reduce(0, +) / Double(layers)
        let std = (mags.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(layers)).squareRoot()
        XCTAssertEqual(dom.cv, std / mean, accuracy: 1e-9)
        XCTAssertEqual(r.globalDims.first?.dim, 7)
        XCTAssertEqual(r.globalDims.first?.layers.count, layers)
        XCTAssertTrue(r.globalDims.contains { $0.dim == 3 && $0.layers == [0, 1, 2] })
        XCTAssertEqual(r.layerAwareDims(layer: 0, count: 2), [7, 3])
        XCTAssertEqual(r.uniformDims(count: 1), [7])

        // Round trip through scan.json.
        let path = NSTemporaryDirectory() + "scan-\(UUID().uuidString).json"
        try r.write(path: path)
        XCTAssertEqual(try ScanResult.load(path: path), r)
        XCTAssertTrue(r.markdownSummary().contains("Dominant dim: 7"))
        XCTAssertTrue(r.svg().hasPrefix("<svg"))
    }

    func testPromptFileFormats() throws {
        XCTAssertEqual(try PromptFile.parse("a\n\nb c\n", path: "x"), ["a", "b c"])
        XCTAssertEqual(try PromptFile.parse("{\"text\": \"x\\ny\"}\n", path: "x"), ["x\ny"])
        XCTAssertThrowsError(try PromptFile.parse("{\"txt\": 1}", path: "p.jsonl")) { e in
            XCTAssertTrue("\(e)".contains("p.jsonl:1"))
        }
        XCTAssertGreaterThanOrEqual(try PromptFile.shippedCalibration().count, 50)
    }

    private func d(_ dim: Int, _ t: Int, _ hidden: Int) -> Int { t * hidden + dim }
}
