import Foundation
import TillerFormats
import TillerModels
import TillerTokenizers
import XCTest
import TillerTestSupport
@testable import TillerSteering

/// The massive-activation scan on the real default models against transformers (tools/reference/scan_fixtures.py):
/// the same calibration texts give the same per-layer top-3 dims and max values (≤1e-3 relative).
final class ScanParityTests: XCTestCase {
    struct Reference: Decodable {
        struct Layer: Decodable {
            let layer: Int
            let top3: [Int]
            let max: [Double]
            let mean: [Double]
            let sorted_max_mid: [Double]
        }
        let model: String
        let tokens: Int
        let layers: [Layer]
    }

    func testSmolLM2ScanMatchesTransformers() throws {
        try check(model: "smollm2-135m-instruct")
    }

    func testGemma3ScanMatchesTransformers() throws {
        try check(model: "gemma-3-270m")
    }

    private func check(model name: String) throws {
        let fixtures = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: fixtures.appendingPathComponent("scan_\(name).json")))
        let lm = try loadCachedModel(name)
        let started = Date()
        let result = try MassiveActivationScan.run(model: lm, texts: PromptFile.shippedCalibration(), showProgress: false)
        let seconds = Date().timeIntervalSince(started)
        print("scan \(name): \(result.tokensSeen) tokens in \(String(format: "%.1f", seconds)) s; dominant \(result.dominant.map { "\($0.dim)" } ?? "-")")
        XCTAssertEqual(result.tokensSeen, ref.tokens, "same tokenization of the calibration set")
        XCTAssertEqual(result.layers.count, ref.layers.count)
        var worst = 0.0
        for (mine, theirs) in zip(result.layers, ref.layers) {
            XCTAssertEqual(Array(mine.top.prefix(3).map(\.dim)), theirs.top3, "L\(mine.layer) top-3 dims")
            for (m, (d, v)) in zip(mine.top.prefix(3), zip(theirs.top3, theirs.max)) where m.dim == d {
                let rel = abs(m.max - v) / v
                worst = max(worst, rel)
                XCTAssertLessThanOrEqual(rel, 1e-3, "L\(mine.layer) dim \(d): max \(m.max) vs transformers \(v)")
            }
            for (m, (d, v)) in zip(mine.top.prefix(3), zip(theirs.top3, theirs.mean)) where m.dim == d {
                XCTAssertLessThanOrEqual(abs(m.mean - v) / max(v, 1e-6), 1e-3, "L\(mine.layer) dim \(d): mean")
            }
            let median = (theirs.sorted_max_mid[0] + theirs.sorted_max_mid[1]) / 2
            XCTAssertLessThanOrEqual(abs(mine.medianMax - median) / median, 1e-3, "L\(mine.layer) median of per-dim maxima")
        }
        print("scan \(name): worst relative error of top-3 maxima \(worst)")
    }
}

/// A default model from the cache by name (TillerTestSupport's loader: fails, never skips).
func loadCachedModel(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> LanguageModel {
    guard let known = ModelCache.knownModel(named: name) else { throw ScanError("\(name) is not a known model") }
    return try SharedModels.shared.get(known.fileName, name: known.name)
}
