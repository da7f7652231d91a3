import Foundation
import TillerFormats
import TillerModels
import TillerTokenizers

/// A model argument (cache name, .gguf path or HF directory) → weights, tokenizer and engine.
func loadLanguageModel(_ argument: String) throws -> LanguageModel {
    let files = try ModelCache.resolve(argument)
    let weights = try ModelCache.openWeightSource(files)
    let tokenizer: Tokenizer
    switch files {
    case .gguf(let path):
        tokenizer = try loadTokenizer(gguf: (weights as? GGUFWeightSource)?.gguf ?? GGUFFile(path: path))
    case .hfDirectory(let path):
        tokenizer = try loadTokenizer(directory: path)
    }
    let name = ModelCache.known.first { $0.path == files.path }?.name ?? (files.path as NSString).lastPathComponent
    return try LanguageModel(weights: weights, tokenizer: tokenizer, name: name)
}
