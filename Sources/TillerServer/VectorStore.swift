import Foundation
import TillerFormats
import TillerModels
import TillerSteering

/// Steering vector files the server knows, by name: anything `tiller generate --steer` reads
/// (Tiller's safetensors with F32 tensors `layer.L`, or a llama.cpp control-vector GGUF), loaded
/// through SteeringVectorFile. Once bound to a model's shape (`bind`), every file is checked on
/// load: each tensor must have the model's hidden size and name a layer the model has.
public final class VectorStore: @unchecked Sendable {
    private var files: [String: SteeringVectorFile] = [:]
    private var shape: (hidden: Int, layers: Int)?
    private let lock = NSLock()

    /// File name endings `addDirectory` picks up.
    public static let extensions = [".safetensors", ".gguf"]

    public init() {}

    /// Checks every vector already added against the model's hidden size and layer count, and
    /// checks those added later on load.
    public func bind(hidden: Int, layers: Int) throws {
        try lock.withLock {
            for name in files.keys.sorted() { try Self.check(files[name]!, name: name, hidden: hidden, layers: layers) }
            shape = (hidden, layers)
        }
    }

    static func check(_ f: SteeringVectorFile, name: String, hidden: Int, layers: Int) throws {
        let source = f.path ?? "vector \"\(name)\""
        if let bad = f.layers.first(where: { $0 >= layers }) {
            throw VectorFileError("\(source): layer.\(bad) is beyond the model's \(layers) layers (0…\(layers - 1))")
        }
        if f.hidden != hidden {
            throw VectorFileError("\(source): the vectors have \(f.hidden) elements but the model's hidden size is \(hidden)")
        }
    }

    /// Registers `path` as `name` (read and checked now: a bad file fails when it is added, not
    /// per request). An existing name is replaced only when `replace` is set. `source` names the
    /// file in listings when `path` is a temporary copy (an upload).
    public func add(name: String, path: String, replace: Bool = true, source: String? = nil) throws {
        guard Self.isValidName(name) else {
            throw VectorFileError("vector name \"\(name)\" must be 1–128 characters of letters, digits, '_', '-', '.'")
        }
        var f = try SteeringVectorFile.load(path: path)
        if let source { f.path = source }
        try lock.withLock {
            if let shape { try Self.check(f, name: name, hidden: shape.hidden, layers: shape.layers) }
            if !replace, files[name] != nil { throw VectorExists(name: name) }
            files[name] = f
        }
    }

    struct VectorExists: Error, CustomStringConvertible {
        let name: String
        var description: String { "a vector named \"\(name)\" is already loaded; send \"replace\": true to replace it" }
    }

    static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 128 && s.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "_-.".unicodeScalars.contains($0) }
    }

    /// Every vector file of a directory (*.safetensors, *.gguf), named by its file name without
    /// the extension.
    public func addDirectory(_ dir: String) throws {
        let items = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        for item in items {
            guard let ext = Self.extensions.first(where: { item.hasSuffix($0) }) else { continue }
            try add(name: String(item.dropLast(ext.count)), path: (dir as NSString).appendingPathComponent(item))
        }
    }

    public var names: [String] { lock.withLock { files.keys.sorted() } }

    func file(_ name: String) -> SteeringVectorFile? { lock.withLock { files[name] } }

    /// What `GET /v1/vectors` lists for one vector: its layers, the L2 norm of each layer's
    /// vector, the site it acts at and what its metadata says about its extraction.
    func entry(_ name: String) -> [String: Any]? {
        guard let f = file(name) else { return nil }
        let m = f.metadata
        var norms: [String: Double] = [:]
        for l in f.layers {
            norms[String(l)] = Foundation.sqrt(f.vectors[l]!.reduce(0.0) { $0 + Double($1) * Double($1) })
        }
        var e: [String: Any] = [
            "id": name, "object": "vector", "layers": f.layers, "hidden": f.hidden, "norms": norms,
            "site": m.site, "file": f.path.map { ($0 as NSString).lastPathComponent } as Any? ?? NSNull(),
        ]
        var extraction: [String: Any] = [:]
        if let v = m.model { extraction["model"] = v }
        if let v = m.trait { extraction["trait"] = v }
        if let v = m.method { extraction["method"] = v }
        if let v = m.variant { extraction["variant"] = v }
        if let v = m.positions { extraction["positions"] = v }
        if let v = m.positiveSamples { extraction["positive_samples"] = v }
        if let v = m.negativeSamples { extraction["negative_samples"] = v }
        if !m.cleanedDims.isEmpty {
            extraction["cleaned_dims"] = Dictionary(uniqueKeysWithValues: m.cleanedDims.map { (String($0.key), $0.value) })
        }
        e["extraction"] = extraction
        return e
    }

    func vector(_ name: String, layer: Int, hidden: Int) throws -> [Float] {
        guard let f = file(name) else {
            let known = names
            throw ServerError.badRequest("unknown steering vector \"\(name)\"; known: \(known.isEmpty ? "none (start serve with --vector NAME=PATH, or POST /v1/vectors)" : known.joined(separator: ", "))", param: "steering")
        }
        guard f.vectors[layer] != nil else {
            throw ServerError.badRequest("steering vector \"\(name)\" has no tensor for layer \(layer) (it has layers \(f.layers.map(String.init).joined(separator: ", ")))", param: "steering")
        }
        do { return try f.vector(layer: layer, hidden: hidden) } catch {
            throw ServerError.badRequest("steering vector \"\(name)\": \(error)", param: "steering")
        }
    }
}
