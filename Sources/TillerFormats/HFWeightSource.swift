import Foundation
import TillerTensor

/// The safetensors weights of a Hugging Face directory: one `model.safetensors`, or the shards
/// that `model.safetensors.index.json` lists.
public final class SafetensorsCheckpoint: @unchecked Sendable {
    public let directory: String
    public let files: [SafetensorsFile]
    /// Tensor names in shard order.
    public let names: [String]
    private let location: [String: Int] // name → index into files

    public init(directory: String) throws {
        self.directory = directory
        let fm = FileManager.default
        let indexPath = directory + "/model.safetensors.index.json"
        let singlePath = directory + "/model.safetensors"
        var files: [SafetensorsFile] = []
        var location: [String: Int] = [:]
        var names: [String] = []
        if fm.fileExists(atPath: indexPath) {
            guard let data = fm.contents(atPath: indexPath),
                  let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                  let weightMap = root["weight_map"] as? [String: Any] else {
                throw FileError(path: indexPath, "not a JSON object with a weight_map")
            }
            var shardIndex: [String: Int] = [:]
            for (name, value) in weightMap.sorted(by: { $0.key < $1.key }) {
                guard let shard = value as? String else {
                    throw FileError(path: indexPath, "weight_map[\(name)] is not a file name")
                }
                // Shards are plain names in the same directory; anything else could read elsewhere.
                guard !shard.isEmpty, !shard.contains("/"), !shard.contains("\\"), shard != ".", shard != ".." else {
                    throw FileError(path: indexPath, "weight_map[\(name)] = \"\(shard)\" is not a file name in this directory")
                }
                if shardIndex[shard] == nil {
                    shardIndex[shard] = files.count
                    files.append(try SafetensorsFile(path: directory + "/" + shard))
                }
                let i = shardIndex[shard]!
                guard files[i].info(name) != nil else {
                    throw FileError(path: files[i].path, "tensor \(name), listed in model.safetensors.index.json, is not in this shard")
                }
                location[name] = i
            }
            for (i, f) in files.enumerated() {
                for n in f.names where location[n] == i { names.append(n) }
            }
        } else if fm.fileExists(atPath: singlePath) {
            let f = try SafetensorsFile(path: singlePath)
            files = [f]
            names = f.names
            for n in names { location[n] = 0 }
        } else {
            throw FileError(path: directory, "no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not supported)")
        }
        self.files = files
        self.names = names
        self.location = location
    }

    public func file(containing name: String) -> SafetensorsFile? { location[name].map { files[$0] } }

    public func tensor(_ name: String) throws -> RawTensor? {
        guard let f = file(containing: name) else { return nil }
        return try f.tensor(name)
    }
}

/// A Hugging Face model directory (config.json + safetensors) as a `WeightSource`. Parameter
/// names are normalised to the causal-LM layout (`model.…`, `lm_head.weight`): multimodal
/// wrappers store the language model under `language_model.model.` (transformers v4) or
/// `model.language_model.` (v5); their vision tower and projector are left out.
public final class HFWeightSource: WeightSource, @unchecked Sendable {
    public let directory: String
    public let config: ModelConfig
    public let checkpoint: SafetensorsCheckpoint
    public let names: [String]
    private let storedName: [String: String]

    public init(directory: String) throws {
        self.directory = directory
        config = try ModelConfig(hfConfigAt: directory + "/config.json")
        checkpoint = try SafetensorsCheckpoint(directory: directory)
        var names: [String] = []
        var stored: [String: String] = [:]
        for original in checkpoint.names {
            guard let name = Self.normalisedName(original) else { continue }
            if let other = stored[name] {
                throw FileError(path: directory, "tensors \(other) and \(original) both stand for \(name)")
            }
            stored[name] = original
            names.append(name)
        }
        self.names = names
        storedName = stored
        for name in names {
            let original = stored[name]!
            let f = checkpoint.file(containing: original)!
            let info = f.info(original)!
            guard info.dtype.ggmlType != nil else {
                throw FileError(path: f.path, "tensor \(original): dtype \(info.dtype.rawValue) is not a weight type")
            }
            if let problem = config.shapeProblem(of: name, shape: info.shape) {
                throw FileError(path: f.path, "tensor \(original): \(problem)")
            }
        }
        for required in ["model.embed_tokens.weight", "model.norm.weight"] where stored[required] == nil {
            throw FileError(path: directory, "checkpoint has no \(required)")
        }
        if !config.tieWordEmbeddings, stored["lm_head.weight"] == nil {
            throw FileError(path: directory, "tie_word_embeddings is false but the checkpoint has no lm_head.weight")
        }
    }

    /// The causal-LM name of a stored parameter, or nil for parts that are not the language model.
    public static func normalisedName(_ name: String) -> String? {
        for (prefix, replacement) in [("language_model.model.", "model."), ("model.language_model.", "model."),
                                      ("language_model.lm_head.", "lm_head.")] where name.hasPrefix(prefix) {
            return replacement + name.dropFirst(prefix.count)
        }
        if name.hasPrefix("model.") || name.hasPrefix("lm_head.") {
            // Non-persistent buffers some old checkpoints saved.
            return name.hasSuffix("rotary_emb.inv_freq") ? nil : name
        }
        return nil
    }

    public func storedName(for name: String) -> String? { storedName[name] }

    public func tensor(_ name: String) throws -> RawTensor? {
        guard let original = storedName[name], let t = try checkpoint.tensor(original) else { return nil }
        return RawTensor(name: name, type: t.type, shape: t.shape, data: t.data, owner: t.owner)
    }
}

extension ModelCache {
    /// Opens the weights behind resolved model files.
    public static func openWeightSource(_ files: ModelFiles) throws -> WeightSource {
        switch files {
        case .gguf(let path): return try GGUFWeightSource(path: path)
        case .hfDirectory(let path): return try HFWeightSource(directory: path)
        }
    }
}
