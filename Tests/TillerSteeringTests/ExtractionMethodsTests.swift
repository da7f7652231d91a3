import Foundation
import TillerFormats
import XCTest
@testable import TillerSteering

/// mean_diff, probe and the cleaned variants against numpy + scikit-learn on stored activations
/// (tools/reference/extraction_fixtures.py).
final class ExtractionMethodsTests: XCTestCase {
    struct Expected: Decodable {
        let layers: Int
        let hidden: Int
        let la_dims: [String: [Int]]
        let global_dims: [Int]
        let massive_dims: [String: [Int]]
        let probe_train_accuracy: [String: Double]
        let probe_heldout_accuracy: [String: Double]
        let cosine: [String: [String: Double]]
        let massive_share: [String: [String: Double]]
        let cohens_d: [String: [String: Double]]
    }

    func fixture(_ name: String) throws -> String {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures"),
                                "fixture \(name) missing; regenerate with tools/reference/extraction_fixtures.py")
        return url.path
    }

    func load() throws -> (ContrastiveActivations, Expected, SafetensorsFile) {
        let acts = try ContrastiveActivations.load(safetensors: try fixture("extraction_activations.safetensors"))
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: try fixture("extraction_expected.json"))))
        let vectors = try SafetensorsFile(path: try fixture("extraction_expected.safetensors"))
        return (acts, expected, vectors)
    }

    func testBaselinesMatchSklearn() throws {
        let (acts, exp, ref) = try load()
        XCTAssertEqual(acts.layers, Array(0..<exp.layers))
        XCTAssertEqual(acts.hidden, exp.hidden)
        for l in acts.layers {
            let pos = acts.positive[l]!, neg = acts.negative[l]!
            let md = try MeanDiff.direction(positive: pos, negative: neg)
            XCTAssertGreaterThanOrEqual(cosineSimilarity(md, try ref.floats("mean_diff.layer.\(l)")), 0.999_999, "mean_diff L\(l)")
            let fit = try LogisticProbe().fit(positive: pos, negative: neg)
            let cos = cosineSimilarity(try fit.direction(), try ref.floats("probe.layer.\(l)"))
            XCTAssertGreaterThanOrEqual(cos, 0.999, "probe L\(l)")
            XCTAssertGreaterThanOrEqual(cos, 0.999_99, "probe L\(l): both solvers converge tightly, so they should agree closely")
            XCTAssertEqual(fit.trainAccuracy, exp.probe_train_accuracy[String(l)]!, accuracy: 1e-9, "train accuracy L\(l)")
            XCTAssertLessThan(fit.gradientNorm, 1e-8)
            print(String(format: "L%d: cos(mean_diff, numpy) = %.9f, cos(probe, sklearn) = %.9f, train acc %.3f, Newton iterations %d",
                         l, cosineSimilarity(md, try ref.floats("mean_diff.layer.\(l)")), cos, fit.trainAccuracy, fit.iterations))
        }
    }

    func testVariantsMatchNumpy() throws {
        let (acts, exp, ref) = try load()
        let specs = VariantSpec.defaultGrid()
        XCTAssertEqual(specs.count, 22)
        let vectors = try VariantExtractor().run(acts, specs: specs) { sel, layer in
            switch sel {
            case .layerAware(let n): return Array(exp.la_dims[String(layer)]!.prefix(n))
            case .uniform(let n): return Array(exp.global_dims.prefix(n))
            }
        }
        XCTAssertEqual(vectors.map(\.spec.name), specs.map(\.name))
        for ev in vectors {
            for l in acts.layers {
                let v = try XCTUnwrap(ev.vectors[l])
                let cos = cosineSimilarity(v, try ref.floats("\(ev.spec.name).layer.\(l)"))
                XCTAssertGreaterThanOrEqual(cos, 0.999, "\(ev.spec.name) L\(l)")
                if let (_, sel) = ev.spec.cleaning {
                    let dims = sel == .uniform(1) || sel == .uniform(2) ? Array(exp.global_dims.prefix(sel == .uniform(1) ? 1 : 2))
                        : Array(exp.la_dims[String(l)]!.prefix({ if case .layerAware(let n) = sel { return n }; return 0 }()))
                    XCTAssertEqual(ev.cleanedDims[l], dims, "\(ev.spec.name) L\(l)")
                    for d in dims { XCTAssertEqual(v[d], 0, "\(ev.spec.name) L\(l): cleaned dim \(d) must be exactly zero") }
                }
            }
            XCTAssertEqual(ev.probeStats.isEmpty, ev.spec.method == .meanDiff || ev.spec.cleaning?.mode == .postclean, ev.spec.name)
        }
        let probe = vectors.first { $0.spec.name == "probe" }!
        for l in acts.layers {
            XCTAssertEqual(probe.probeStats[l]!.heldoutAccuracy!, exp.probe_heldout_accuracy[String(l)]!, accuracy: 1e-9, "held-out L\(l)")
        }

        // The cleaned-variants table against numpy's cosines, massive shares and Cohen's d.
        let table = VariantTable(model: "synthetic", trait: "planted", vectors: vectors, activations: acts) { exp.massive_dims[String($0)]! }
        for name in table.variants {
            for l in acts.layers {
                let c = try XCTUnwrap(table.cells[name]?[String(l)])
                XCTAssertEqual(c.cosineToBaseline, exp.cosine[name]![String(l)]!, accuracy: 1e-3, "cos \(name) L\(l)")
                XCTAssertEqual(c.massiveShare, exp.massive_share[name]![String(l)]!, accuracy: 1e-3, "share \(name) L\(l)")
                XCTAssertEqual(c.separation, exp.cohens_d[name]![String(l)]!, accuracy: 2e-3 * max(1, abs(c.separation)), "d \(name) L\(l)")
            }
        }
        // The expected qualitative finding on this data: removing the massive dim turns mean_diff a lot,
        // postclean barely moves the probe, and mean_diff pre- and postclean coincide exactly.
        XCTAssertLessThan(table.cells["mean_diff_postclean_la1"]!["0"]!.cosineToBaseline, 0.9)
        XCTAssertGreaterThan(table.cells["probe_postclean_la1"]!["0"]!.cosineToBaseline, 0.95)
        for l in acts.layers {
            let a = vectors.first { $0.spec.name == "mean_diff_preclean_la2" }!.vectors[l]!
            let b = vectors.first { $0.spec.name == "mean_diff_postclean_la2" }!.vectors[l]!
            XCTAssertGreaterThan(cosineSimilarity(a, b), 0.999_999)
        }
        let md = table.markdown()
        XCTAssertTrue(md.contains("probe_preclean_la2"))
        XCTAssertTrue(md.contains("Cosine similarity with the baseline"))
    }

    func testVariantNames() throws {
        XCTAssertEqual(try VariantSpec(name: "probe_preclean_la2"), VariantSpec(.probe, .preclean, .layerAware(2)))
        XCTAssertEqual(try VariantSpec(name: "mean_diff_postclean_u2"), VariantSpec(.meanDiff, .postclean, .uniform(2)))
        XCTAssertEqual(try VariantSpec(name: "mean_diff").name, "mean_diff")
        for bad in ["probe_la2", "mean_diff_preclean", "probe_preclean_x2", "probe_preclean_la0", "pca"] {
            XCTAssertThrowsError(try VariantSpec(name: bad), bad)
        }
    }

    /// The probe on separable-ish data with a known answer: two clusters along one axis.
    func testProbeConvergesAndRejectsBadInput() throws {
        let pos = ActivationMatrix(cols: 3, rows: [[1, 0.1, 0], [1, -0.1, 0.2], [0.9, 0, -0.1]])
        let neg = ActivationMatrix(cols: 3, rows: [[-1, 0.1, 0], [-1, 0, 0.1], [-0.8, -0.1, 0]])
        let fit = try LogisticProbe().fit(positive: pos, negative: neg)
        XCTAssertEqual(fit.trainAccuracy, 1)
        XCTAssertGreaterThan(try fit.direction()[0], 0.95)
        XCTAssertThrowsError(try LogisticProbe().fit(positive: pos, negative: ActivationMatrix(rows: 0, cols: 3, values: [])))
        XCTAssertThrowsError(try LogisticProbe().fit(positive: pos, negative: ActivationMatrix(cols: 2, rows: [[1, 2]])))
        XCTAssertThrowsError(try MeanDiff.direction(positive: pos, negative: pos), "identical classes have no mean difference")
    }
}
