import Foundation
import TillerModels
import TillerFormats

/// What a steering vector file says about its vectors (safetensors `__metadata__`, all strings).
public struct VectorMetadata: Sendable, Equatable {
    public static let format = "tiller.vector/1"
    public static let defaultTillerVersion = "0.1.0"

    public var model: String?
    public var trait: String?
    public var method: String?
    /// The variant name (`probe_preclean_la2`); equals `method` for baselines.
    public var variant: String?
    public var site: String = HookPoint.Kind.residPost.rawValue
    /// The position set activations were read at (`response:5`, `response`, `prompt:last`).
    public var positions: String?
    public var positiveSamples: Int?
    public var negativeSamples: Int?
    /// Per layer, the dims zeroed by cleaning.
    public var cleanedDims: [Int: [Int]] = [:]
    /// Per layer, probe accuracies (probe baseline and preclean variants).
    public var probeStats: [Int: ProbeStats] = [:]
    public var tillerVersion: String = VectorMetadata.defaultTillerVersion
    /// Keys this type does not interpret, kept on a round trip.
    public var extra: [String: String] = [:]

    public init() {}

    static let known: Set<String> = ["format", "model", "trait", "method", "variant", "site", "positions", "n_pos", "n_neg",
                                     "cleaned_dims", "probe", "tiller_version"]

    public var strings: [String: String] {
        var m = extra
        m["format"] = Self.format
        m["site"] = site
        m["tiller_version"] = tillerVersion
        if let model { m["model"] = model }
        if let trait { m["trait"] = trait }
        if let method { m["method"] = method }
        if let variant { m["variant"] = variant }
        if let positions { m["positions"] = positions }
        if let positiveSamples { m["n_pos"] = String(positiveSamples) }
        if let negativeSamples { m["n_neg"] = String(negativeSamples) }
        if !cleanedDims.isEmpty { m["cleaned_dims"] = jsonString(Dictionary(uniqueKeysWithValues: cleanedDims.map { (String($0.key), $0.value) })) }
        if !probeStats.isEmpty { m["probe"] = jsonString(Dictionary(uniqueKeysWithValues: probeStats.map { (String($0.key), $0.value) })) }
        return m
    }

    public init(strings m: [String: String], path: String) throws {
        model = m["model"]; trait = m["trait"]; method = m["method"]; variant = m["variant"]
        site = m["site"] ?? HookPoint.Kind.residPost.rawValue
        positions = m["positions"]
        if let s = m["n_pos"] { guard let n = Int(s) else { throw VectorFileError("\(path): metadata n_pos \"\(s)\" is not an integer") }; positiveSamples = n }
        if let s = m["n_neg"] { guard let n = Int(s) else { throw VectorFileError("\(path): metadata n_neg \"\(s)\" is not an integer") }; negativeSamples = n }
        if let s = m["cleaned_dims"] {
            guard let d = try? JSONDecoder().decode([String: [Int]].self, from: Data(s.utf8)) else {
                throw VectorFileError("\(path): metadata cleaned_dims is not a JSON object of layer → [dims]")
            }
            cleanedDims = Dictionary(uniqueKeysWithValues: try d.map { k, v in
                guard let l = Int(k) else { throw VectorFileError("\(path): metadata cleaned_dims has non-integer layer \"\(k)\"") }
                return (l, v)
            })
        }
        if let s = m["probe"] {
            guard let d = try? JSONDecoder().decode([String: ProbeStats].self, from: Data(s.utf8)) else {
                throw VectorFileError("\(path): metadata probe is not a JSON object of layer → accuracies")
            }
            probeStats = Dictionary(uniqueKeysWithValues: d.compactMap { k, v in Int(k).map { ($0, v) } })
        }
        tillerVersion = m["tiller_version"] ?? "unknown"
        extra = m.filter { !Self.known.contains($0.key) }
    }
}

private func jsonString<T: Encodable>(_ v: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    return String(decoding: (try? enc.encode(v)) ?? Data("{}".utf8), as: UTF8.self)
}

public struct VectorFileError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A steering vector file: safetensors with one F32 tensor `layer.L` [hidden] per layer
/// (L = the 0-based block whose output, `resid_post.L`, the vector belongs to) and metadata.
public struct SteeringVectorFile: Sendable {
    public var vectors: [Int: [Float]]
    public var metadata: VectorMetadata
    public var path: String?

    public init(vectors: [Int: [Float]], metadata: VectorMetadata) {
        self.vectors = vectors
        self.metadata = metadata
    }

    public var layers: [Int] { vectors.keys.sorted() }
    public var hidden: Int { vectors.values.first?.count ?? 0 }

    /// Reads a Tiller vector file, or a llama.cpp control-vector GGUF (recognised by its magic).
    public static func load(path: String) throws -> SteeringVectorFile {
        if let h = FileHandle(forReadingAtPath: path) {
            let magic = h.readData(ofLength: 4)
            try? h.close()
            if magic == Data("GGUF".utf8) { return try ControlVectorGGUF.load(path: path) }
        }
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch {
            throw VectorFileError("\(path): cannot read steering vector file: \(error)")
        }
        var vectors: [Int: [Float]] = [:]
        for info in file.tensorInfos {
            let parts = info.name.split(separator: ".")
            guard parts.count == 2, parts[0] == "layer", let l = Int(parts[1]), l >= 0 else { continue }
            let count = info.shape.reduce(1, *)
            guard info.shape.count == 1 || (info.shape.count == 2 && info.shape[0] == 1) else {
                throw VectorFileError("\(path): tensor \(info.name) has shape \(info.shape), expected [hidden]")
            }
            let v = try file.floats(info.name)
            guard v.count == count, v.allSatisfy({ $0.isFinite }) else {
                throw VectorFileError("\(path): tensor \(info.name) has non-finite values")
            }
            vectors[l] = v
        }
        guard !vectors.isEmpty else {
            throw VectorFileError("\(path): no steering vectors (expected tensors named layer.L)")
        }
        guard Set(vectors.values.map(\.count)).count == 1 else {
            throw VectorFileError("\(path): layer.L tensors have different sizes")
        }
        var f = SteeringVectorFile(vectors: vectors, metadata: try VectorMetadata(strings: file.metadata, path: path))
        f.path = path
        return f
    }

    public func write(to path: String) throws {
        guard !vectors.isEmpty else { throw VectorFileError("\(path): refusing to write a vector file with no layers") }
        var w = SafetensorsWriter(metadata: metadata.strings)
        for l in layers { try w.add("layer.\(l)", floats: vectors[l]!, shape: [vectors[l]!.count]) }
        try w.write(to: path)
    }

    /// The vector for `layer`, checked against the model's hidden size.
    public func vector(layer: Int, hidden: Int) throws -> [Float] {
        let where_ = path ?? "steering vector file"
        guard let v = vectors[layer] else {
            throw VectorFileError("\(where_): no tensor layer.\(layer) (the file has layers \(layers.map(String.init).joined(separator: ", ")))")
        }
        guard v.count == hidden else {
            throw VectorFileError("\(where_): layer.\(layer) has \(v.count) elements but the model's hidden size is \(hidden)")
        }
        return v
    }

    /// The file for one extracted variant.
    public init(_ ev: ExtractedVector, model: String?, trait: String?, positions: String?,
                positiveSamples: Int?, negativeSamples: Int?, tillerVersion: String = VectorMetadata.defaultTillerVersion) {
        var m = VectorMetadata()
        m.model = model
        m.trait = trait
        m.method = ev.spec.method.rawValue
        m.variant = ev.spec.name
        m.positions = positions
        m.positiveSamples = positiveSamples
        m.negativeSamples = negativeSamples
        m.cleanedDims = ev.cleanedDims.filter { !$0.value.isEmpty }
        m.probeStats = ev.probeStats
        m.tillerVersion = tillerVersion
        self.init(vectors: ev.vectors, metadata: m)
    }
}
