import Foundation
import TillerFormats
import TillerModels
import TillerTokenizers
import XCTest

// Shared by the test targets that run the real default models: finding them in the cache
// (a missing model is a failure that says how to get it, never a skip) and loading each once.

public let smolFile = "SmolLM2-135M-Instruct.Q4_1.gguf"
public let gemmaFile = "gemma-3-270m-q4_k_m.gguf"

/// The path of a real model file in the cache; a missing model is a failure that says how to
/// get it (CI installs them), never a skip. Every test target finds the models through this.
public func realModelPath(_ fileName: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
    let path = ModelCache.modelsDirectory + "/" + fileName
    guard FileManager.default.fileExists(atPath: path) else {
        XCTFail("model \(fileName) is missing from \(ModelCache.modelsDirectory): run scripts/setup.sh", file: file, line: line)
        throw ModelError("missing model \(path)")
    }
    return path
}

/// A real model from the cache with its tokenizer.
public func loadRealModel(_ fileName: String, name: String, file: StaticString = #filePath, line: UInt = #line) throws -> LanguageModel {
    let weights = try GGUFWeightSource(path: realModelPath(fileName, file: file, line: line))
    return try LanguageModel(weights: weights, tokenizer: try loadTokenizer(gguf: weights.gguf), name: name)
}

/// One model per process: loading is the slow part of these tests.
public final class SharedModels: @unchecked Sendable {
    public static let shared = SharedModels()
    private let lock = NSLock()
    private var models: [String: LanguageModel] = [:]
    public func get(_ file: String, name: String) throws -> LanguageModel {
        try lock.withLock {
            if let m = models[file] {
                // The served name is part of what server tests check: one name per file, whichever test loads it first.
                guard m.name == name else { throw ModelError("SharedModels: \(file) is loaded as \"\(m.name)\", asked for as \"\(name)\"") }
                return m
            }
            let m = try loadRealModel(file, name: name)
            models[file] = m
            return m
        }
    }
}

/// Index of the largest value (the first on ties, as torch.argmax).
public func argmax(_ row: ArraySlice<Float>) -> Int {
    var best = row.startIndex
    for i in row.indices where row[i] > row[best] { best = i }
    return best - row.startIndex
}
