import XCTest
@testable import TillerFormats

/// The one tensor-name table: under every architecture a tensor has one spelling and a name
/// denotes one tensor, and the three readers (loader names, shape check, GGUF mapping) agree.
final class TensorNamesTests: XCTestCase {
    func testEveryArchitectureSpellsEachTensorOnce() {
        for a in Architecture.allCases {
            let names = TensorName.spellings(a)
            XCTAssertEqual(Set(names.map(\.tensor)).count, names.count, "\(a.rawValue): a tensor with two spellings")
            XCTAssertEqual(Set(names.map(\.transformers)).count, names.count, "\(a.rawValue): a transformers name for two tensors")
            XCTAssertEqual(Set(names.map(\.gguf)).count, names.count, "\(a.rawValue): a GGUF name for two tensors")
        }
    }

    func testLoaderShapeCheckAndGGUFMappingAgree() {
        for a in Architecture.allCases {
            let c = ModelConfig(architecture: a, hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 4,
                                numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 16, vocabSize: 256, rmsNormEps: 1e-6,
                                ropeTheta: 10_000)
            for n in TensorName.spellings(a) {
                let layer: Int? = n.tensor.isPerLayer ? 3 : nil
                let hf = TensorName.transformers(n.tensor, layer: layer, architecture: a)
                XCTAssertEqual(c.expectedShape(of: hf), n.tensor.shape(c), "\(a.rawValue) \(hf)")
                XCTAssertEqual(TensorName.parse(transformers: hf, architecture: a)?.tensor, n.tensor, hf)
                let gguf = layer.map { "blk.\($0).\(n.gguf)" } ?? n.gguf
                XCTAssertEqual(GGUFNames.transformersName(gguf, architecture: a), hf, "\(a.rawValue) \(gguf)")
            }
        }
        // The norm before the MLP: post_attention_layernorm in Llama, pre_feedforward_layernorm in
        // Gemma (whose post_attention_layernorm is the norm after attention); OLMo-2 has none.
        XCTAssertEqual(TensorName.transformers(.preFFNorm, layer: 0, architecture: .llama), "model.layers.0.post_attention_layernorm.weight")
        XCTAssertEqual(TensorName.transformers(.preFFNorm, layer: 0, architecture: .gemma2), "model.layers.0.pre_feedforward_layernorm.weight")
        XCTAssertEqual(TensorName.transformers(.postAttentionNorm, layer: 0, architecture: .gemma2), "model.layers.0.post_attention_layernorm.weight")
        XCTAssertFalse(TensorName.spellings(.olmo2).contains { $0.tensor == .preFFNorm || $0.tensor == .inputNorm })
        XCTAssertEqual(ModelConfig(architecture: .olmo2, hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 4, numAttentionHeads: 4,
                                   numKeyValueHeads: 2, headDim: 16, vocabSize: 256, rmsNormEps: 1e-6, ropeTheta: 10_000)
                        .expectedShape(of: "model.layers.0.self_attn.q_norm.weight"), [64], "OLMo-2 norms the whole q")
    }
}
