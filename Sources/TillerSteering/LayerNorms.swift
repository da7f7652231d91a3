import Foundation
import TillerModels

/// The typical size of the residual stream at a layer: mean ‖resid_post.L‖ over calibration
/// tokens (the first token, the attention sink, left out), with and without the layer's massive
/// dims. Relative steering coefficients are multiples of the norm without them, so that one
/// number means the same push at every layer and on every model, whatever its massive dims do.
public struct LayerNorm: Sendable, Equatable {
    public var mean: Double
    public var excludingMassive: Double
    /// The dims left out of `excludingMassive`.
    public var excluded: [Int]
}

public enum LayerNorms {
    /// Dims excluded from the norm: those the scan flags massive at the layer, else the top-1 dim
    /// when it is ≥ 10× the layer's median max (milder models flag none at the 100× cut).
    public static func massiveDims(_ scan: ScanResult, layer: Int) -> [Int] {
        let flagged = scan.massiveDims(layer: layer)
        if !flagged.isEmpty { return flagged }
        guard layer < scan.layers.count, let top = scan.layers[layer].top.first, top.ratioMedian >= 10 else { return [] }
        return [top.dim]
    }

    /// Measures `layers` on `texts` (default: the first 16 shipped calibration texts), 8 at a time.
    public static func measure(model: LanguageModel, layers: [Int], scan: ScanResult, texts: [String]? = nil) throws -> [Int: LayerNorm] {
        guard let tok = model.tokenizer else { throw ScanError("model \(model.name) has no tokenizer: layer norms need one to read their texts") }
        let seqs = try (texts ?? Array(PromptFile.shippedCalibration().prefix(16))).map { tok.encode($0, addSpecialTokens: true) }
        let h = model.hiddenSize
        var sum = [Int: Double](), sumExcl = [Int: Double](), count = [Int: Int]()
        let massive = Dictionary(uniqueKeysWithValues: layers.map { ($0, Set(massiveDims(scan, layer: $0))) })
        for start in stride(from: 0, to: seqs.count, by: 8) {
            let batch = Array(seqs[start..<min(start + 8, seqs.count)])
            try model.forward(batch, capture: CaptureSpec(layers: layers, positions: .all), logits: .none) { layer, _, rows, n, positions in
                let ex = massive[layer] ?? []
                for r in 0..<n where positions[positions.startIndex + r] > 0 {
                    var a = 0.0, b = 0.0
                    for d in 0..<h {
                        let x = Double(rows[r * h + d]); a += x * x
                        if !ex.contains(d) { b += x * x }
                    }
                    sum[layer, default: 0] += a.squareRoot()
                    sumExcl[layer, default: 0] += b.squareRoot()
                    count[layer, default: 0] += 1
                }
            }
        }
        var out: [Int: LayerNorm] = [:]
        for l in layers {
            let n = Double(max(count[l] ?? 0, 1))
            out[l] = LayerNorm(mean: (sum[l] ?? 0) / n, excludingMassive: (sumExcl[l] ?? 0) / n, excluded: (massive[l] ?? []).sorted())
        }
        return out
    }
}
