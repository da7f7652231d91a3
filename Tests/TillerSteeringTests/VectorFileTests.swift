import Foundation
import TillerFormats
import XCTest
@testable import TillerSteering

final class VectorFileTests: XCTestCase {
    func tmp(_ ext: String) -> String { NSTemporaryDirectory() + "vec-\(UUID().uuidString).\(ext)" }

    func sample() -> SteeringVectorFile {
        let ev = ExtractedVector(spec: VariantSpec(.probe, .preclean, .layerAware(2)),
                                 vectors: [0: [1, 0, 0, 0], 3: [0, 0.6, 0.8, 0], 5: [0.5, -0.5, 0.5, -0.5]],
                                 cleanedDims: [0: [], 3: [1, 2], 5: [3, 0]],
                                 probeStats: [3: ProbeStats(trainAccuracy: 0.9, heldoutAccuracy: 0.75, iterations: 6)])
        return SteeringVectorFile(ev, model: "smollm2-135m-instruct", trait: "refusal", positions: "response:5",
                                  positiveSamples: 50, negativeSamples: 48, tillerVersion: "9.9.9")
    }

    func testSafetensorsRoundTrip() throws {
        let f = sample()
        let path = tmp("safetensors")
        try f.write(to: path)
        let g = try SteeringVectorFile.load(path: path)
        XCTAssertEqual(g.vectors, f.vectors)
        XCTAssertEqual(g.metadata, f.metadata)
        XCTAssertEqual(g.metadata.variant, "probe_preclean_la2")
        XCTAssertEqual(g.metadata.method, "probe")
        XCTAssertEqual(g.metadata.cleanedDims, [3: [1, 2], 5: [3, 0]])
        XCTAssertEqual(g.metadata.probeStats[3]?.heldoutAccuracy, 0.75)
        XCTAssertEqual(g.metadata.tillerVersion, "9.9.9")
        // The raw file is what the README promises: F32 layer.L tensors and string metadata.
        let raw = try SafetensorsFile(path: path)
        XCTAssertEqual(raw.info("layer.3")?.dtype, .f32)
        XCTAssertEqual(raw.info("layer.3")?.shape, [4])
        XCTAssertEqual(raw.metadata["site"], "resid_post")
        XCTAssertEqual(raw.metadata["positions"], "response:5")
        XCTAssertEqual(raw.metadata["n_pos"], "50")
        XCTAssertEqual(try g.vector(layer: 3, hidden: 4), [0, 0.6, 0.8, 0])
        XCTAssertThrowsError(try g.vector(layer: 4, hidden: 4)) { XCTAssertTrue(String(describing: $0).contains("no tensor layer.4")) }
        XCTAssertThrowsError(try g.vector(layer: 3, hidden: 8)) { XCTAssertTrue(String(describing: $0).contains("hidden size is 8")) }
    }

    func testRejectsFilesWithoutVectors() throws {
        let path = tmp("safetensors")
        var w = SafetensorsWriter()
        try w.add("something", floats: [1, 2], shape: [2])
        try w.write(to: path)
        XCTAssertThrowsError(try SteeringVectorFile.load(path: path)) { XCTAssertTrue(String(describing: $0).contains("expected tensors named layer.L")) }
    }

    /// Export to llama.cpp's control-vector GGUF and back: `layer.L` ↔ `direction.L` (llama.cpp adds
    /// direction.N to the output of its 0-based block N), block 0 left out.
    func testControlVectorRoundTrip() throws {
        let f = sample()
        let path = tmp("gguf")
        let dropped = try ControlVectorGGUF.export(f, to: path, modelHint: "llama")
        XCTAssertEqual(dropped, [0])
        let g = try GGUFFile(path: path)
        XCTAssertEqual(g.architecture, "controlvector")
        XCTAssertEqual(g.metadata["controlvector.model_hint"]?.string, "llama")
        XCTAssertEqual(g.metadata["controlvector.layer_count"]?.int, 2)
        XCTAssertEqual(g.tensorInfos.map(\.name).sorted(), ["direction.3", "direction.5"])
        XCTAssertEqual(g.info("direction.3")?.ggmlDims, [4])
        XCTAssertEqual(g.info("direction.3")?.type, .f32)
        XCTAssertEqual(g.dataOffset % 32, 0)

        let back = try ControlVectorGGUF.load(path: path)
        XCTAssertEqual(back.vectors, [3: f.vectors[3]!, 5: f.vectors[5]!])
        XCTAssertEqual(back.metadata, f.metadata)
        XCTAssertEqual(try SteeringVectorFile.load(path: path).vectors, back.vectors, "load() recognises GGUF control vectors")

        // A scaled export stores scaled directions (what llama.cpp adds) and loads back unit vectors.
        let scaled = tmp("gguf")
        try ControlVectorGGUF.export(f, to: scaled, modelHint: "llama", scale: 4)
        let t = try GGUFFile(path: scaled).tensor("direction.3")
        XCTAssertEqual(t.data.loadUnaligned(fromByteOffset: 8, as: Float.self), 3.2, accuracy: 1e-6)
        XCTAssertEqual(try ControlVectorGGUF.load(path: scaled).vectors[3]!, f.vectors[3]!)

        let only0 = SteeringVectorFile(vectors: [0: [1, 2]], metadata: VectorMetadata())
        XCTAssertThrowsError(try ControlVectorGGUF.export(only0, to: tmp("gguf"), modelHint: "llama"))
    }
}
