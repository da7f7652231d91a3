import Foundation
import TillerModels
import TillerTokenizers

/// Runs the massive-activation scan on a model: every calibration text through the forward pass, `resid_post` of
/// every layer streamed into a `ScanAccumulator` (no activation tensor is kept).
public enum MassiveActivationScan {
    public static func run(model: LanguageModel, texts: [String], chat: Bool = false,
                           parameters: ScanParameters = ScanParameters(), batchSize: Int = 8,
                           showProgress: Bool = true) throws -> ScanResult {
        guard let tokenizer = model.tokenizer else {
            throw ScanError("model \(model.name) has no tokenizer: the scan needs one to read its texts")
        }
        if chat && tokenizer.chatTemplate == nil {
            FileHandle.standardError.write(Data("note: \(model.name) has no chat template (base model): scanning plain text\n".utf8))
        }
        let sequences: [[Int]] = try texts.map { text in
            // Calibration texts are not questions: a base model reads them as they are.
            if chat, tokenizer.chatTemplate != nil { return try PromptFormat.prompt(tokenizer, user: text) }
            return tokenizer.encode(text, addSpecialTokens: true)
        }
        let layers = model.config.numHiddenLayers
        let acc = ScanAccumulator(layers: layers, hidden: model.config.hiddenSize, massiveRatio: parameters.massiveRatio)
        var delimiterCache: [Int: Bool] = [:]
        func role(_ id: Int, position: Int) -> TokenRole {
            if position == 0 || id == tokenizer.bosTokenId { return .first }
            if let d = delimiterCache[id] { return d ? .delimiter : .other }
            let text = tokenizer.decode([id], skipSpecialTokens: false)
            let isDelimiter = !text.isEmpty && text.unicodeScalars.allSatisfy {
                $0.properties.isWhitespace || CharacterSet.punctuationCharacters.contains($0)
            }
            delimiterCache[id] = isDelimiter
            return isDelimiter ? .delimiter : .other
        }
        let progress = ProgressBar("scan \(model.name)", total: sequences.reduce(0) { $0 + $1.count }, unit: "tokens",
                                   enabled: showProgress)
        for start in stride(from: 0, to: sequences.count, by: max(batchSize, 1)) {
            let batch = Array(sequences[start ..< min(start + batchSize, sequences.count)])
            let roles = batch.map { ids in ids.enumerated().map { role($1, position: $0) } }
            _ = try model.forward(batch, capture: CaptureSpec(layers: Array(0..<layers), positions: .all),
                                  logits: .none) { layer, seq, rows, count, positions in
                let r = positions.map { roles[seq][$0] }
                acc.add(layer: layer, rows: rows.baseAddress!, count: count, roles: r)
            }
            progress.advance(by: batch.reduce(0) { $0 + $1.count })
        }
        progress.finish()
        return acc.result(model: model.name, parameters: parameters)
    }
}
