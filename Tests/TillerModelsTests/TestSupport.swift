import Foundation
import TillerFormats
import TillerTensor
import XCTest
@testable import TillerModels

// Shared helpers: fixture locations, a reader for the fixture safetensors files, error metrics.

enum Fixtures {
    static var directory: String {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path
    }
    static func path(_ name: String) -> String { directory + "/" + name }
}

/// A real model from the cache, or a failure telling how to get it (never a skip).
func realModelPath(_ fileName: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
    let path = ModelCache.modelsDirectory + "/" + fileName
    guard FileManager.default.fileExists(atPath: path) else {
        XCTFail("model \(fileName) is missing from \(ModelCache.modelsDirectory): run scripts/setup.sh", file: file, line: line)
        throw ModelError("missing model \(path)")
    }
    return path
}

/// Minimal safetensors reader for the fixture files (F32 and I32 tensors).
final class FixtureFile {
    let path: String
    let data: Data
    let header: [String: Any]
    let headerSize: Int

    init(_ path: String) throws {
        self.path = path
        data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        headerSize = Int(n)
        header = try JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< 8 + headerSize)) as! [String: Any]
    }

    var metadata: [String: Any] {
        guard let m = header["__metadata__"] as? [String: String], let s = m["tiller"],
              let obj = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] else { return [:] }
        return obj
    }

    private func entry(_ name: String) throws -> (dtype: String, shape: [Int], bytes: Data) {
        guard let e = header[name] as? [String: Any], let dtype = e["dtype"] as? String,
              let shape = e["shape"] as? [Int], let off = e["data_offsets"] as? [Int] else {
            throw ModelError("\(path): no tensor \(name)")
        }
        let base = 8 + headerSize
        return (dtype, shape, data.subdata(in: base + off[0] ..< base + off[1]))
    }

    func floats(_ name: String) throws -> [Float] {
        let e = try entry(name)
        guard e.dtype == "F32" else { throw ModelError("\(path): \(name) is \(e.dtype), expected F32") }
        return e.bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func ints(_ name: String) throws -> [Int] {
        let e = try entry(name)
        guard e.dtype == "I32" else { throw ModelError("\(path): \(name) is \(e.dtype), expected I32") }
        return e.bytes.withUnsafeBytes { $0.bindMemory(to: Int32.self).map { Int($0) } }
    }

    func shape(_ name: String) throws -> [Int] { try entry(name).shape }
    func has(_ name: String) -> Bool { header[name] != nil }
}

/// max|a−b| / max|b|
func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    var num: Float = 0, den: Float = 0
    for i in 0..<a.count {
        num = max(num, abs(a[i] - b[i]))
        den = max(den, abs(b[i]))
    }
    return den > 0 ? num / den : num
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a[i] - b[i])) }
    return m
}

func argmax(_ v: ArraySlice<Float>) -> Int {
    var best = v.startIndex
    for i in v.indices where v[i] > v[best] { best = i }
    return best - v.startIndex
}

/// TEMPORARY until TillerFormats' HFWeightSource lands: the tiny fixture checkpoints
/// (config.json + F32 model.safetensors) as a WeightSource.
final class TinyCheckpoint: WeightSource, @unchecked Sendable {
    let config: ModelConfig
    let names: [String]
    let file: FixtureFile

    init(directory: String) throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json"))) as! [String: Any]
        file = try FixtureFile(directory + "/model.safetensors")
        names = file.header.keys.filter { $0 != "__metadata__" }.sorted()
        func int(_ k: String) -> Int? { json[k] as? Int }
        func dbl(_ k: String) -> Double? { (json[k] as? NSNumber)?.doubleValue }
        let arch: Architecture
        switch json["model_type"] as! String {
        case "llama": arch = .llama
        case "qwen2": arch = .qwen2
        case "gemma2": arch = .gemma2
        case "gemma3_text", "gemma3": arch = .gemma3
        case let t: throw ModelError("unknown model_type \(t)")
        }
        let hidden = int("hidden_size")!, heads = int("num_attention_heads")!
        var theta = 10_000.0, local: Double?
        var scaling: RopeScaling?
        func parseScaling(_ d: [String: Any]) -> RopeScaling? {
            let type = (d["rope_type"] as? String) ?? "default"
            if type == "default" { return nil }
            return RopeScaling(type: type, factor: (d["factor"] as! NSNumber).doubleValue,
                               lowFreqFactor: (d["low_freq_factor"] as? NSNumber)?.doubleValue,
                               highFreqFactor: (d["high_freq_factor"] as? NSNumber)?.doubleValue,
                               originalMaxPositionEmbeddings: d["original_max_position_embeddings"] as? Int)
        }
        if let rp = json["rope_parameters"] as? [String: Any] {
            if let full = rp["full_attention"] as? [String: Any] {
                theta = (full["rope_theta"] as! NSNumber).doubleValue
                scaling = parseScaling(full)
                if let sl = rp["sliding_attention"] as? [String: Any] { local = (sl["rope_theta"] as! NSNumber).doubleValue }
            } else {
                theta = (rp["rope_theta"] as! NSNumber).doubleValue
                scaling = parseScaling(rp)
            }
        }
        config = ModelConfig(
            architecture: arch, hiddenSize: hidden, intermediateSize: int("intermediate_size")!,
            numHiddenLayers: int("num_hidden_layers")!, numAttentionHeads: heads,
            numKeyValueHeads: int("num_key_value_heads") ?? heads, headDim: int("head_dim") ?? hidden / heads,
            vocabSize: int("vocab_size")!, rmsNormEps: dbl("rms_norm_eps")!, ropeTheta: theta, ropeScaling: scaling,
            maxPositionEmbeddings: int("max_position_embeddings") ?? 8192,
            tieWordEmbeddings: (json["tie_word_embeddings"] as? Bool) ?? true,
            attentionBias: (json["attention_bias"] as? Bool) ?? (arch == .qwen2),
            hiddenActivation: (json["hidden_activation"] as? String) ?? (json["hidden_act"] as? String) ?? "silu",
            queryPreAttnScalar: dbl("query_pre_attn_scalar"), attnLogitSoftcapping: dbl("attn_logit_softcapping"),
            finalLogitSoftcapping: dbl("final_logit_softcapping"), slidingWindow: int("sliding_window"),
            layerTypes: (json["layer_types"] as? [String]) ?? [], ropeLocalBaseFreq: local,
            bosTokenId: int("bos_token_id"), eosTokenIds: int("eos_token_id").map { [$0] } ?? [],
            padTokenId: int("pad_token_id"))
    }

    func tensor(_ name: String) throws -> RawTensor? {
        guard file.has(name) else { return nil }
        return OwnedBytes.f32Tensor(name: name, shape: try file.shape(name), values: try file.floats(name))
    }
}
