import Foundation
import TillerFormats

/// Contrastive activations: per layer, one row per positive and per negative sample.
public struct ContrastiveActivations: Sendable {
    public var hidden: Int
    public var positive: [Int: ActivationMatrix]
    public var negative: [Int: ActivationMatrix]

    public init(hidden: Int, positive: [Int: ActivationMatrix], negative: [Int: ActivationMatrix]) {
        self.hidden = hidden
        self.positive = positive
        self.negative = negative
    }

    public var layers: [Int] { Set(positive.keys).intersection(negative.keys).sorted() }
    public var positiveCount: Int { positive.values.first?.rows ?? 0 }
    public var negativeCount: Int { negative.values.first?.rows ?? 0 }

    /// Keeps the given sample rows of each polarity (for vetting).
    public func selecting(positive p: [Int], negative n: [Int]) -> ContrastiveActivations {
        ContrastiveActivations(hidden: hidden, positive: positive.mapValues { $0.selecting(p) },
                               negative: negative.mapValues { $0.selecting(n) })
    }

    /// Reads `pos.L` / `neg.L` (F32 [n, hidden]) tensors from a safetensors file.
    public static func load(safetensors path: String) throws -> ContrastiveActivations {
        let file = try SafetensorsFile(path: path)
        var pos: [Int: ActivationMatrix] = [:], neg: [Int: ActivationMatrix] = [:]
        var hidden: Int?
        for info in file.tensorInfos {
            let parts = info.name.split(separator: ".")
            guard parts.count == 2, parts[0] == "pos" || parts[0] == "neg", let layer = Int(parts[1]) else { continue }
            guard info.shape.count == 2 else {
                throw ExtractionError("\(path): tensor \(info.name) has shape \(info.shape), expected [samples, hidden]")
            }
            if let h = hidden, h != info.shape[1] {
                throw ExtractionError("\(path): tensor \(info.name) has hidden size \(info.shape[1]), others have \(h)")
            }
            hidden = info.shape[1]
            let m = ActivationMatrix(rows: info.shape[0], cols: info.shape[1], values: try file.floats(info.name))
            if parts[0] == "pos" { pos[layer] = m } else { neg[layer] = m }
        }
        guard let hidden, !pos.isEmpty else {
            throw ExtractionError("\(path): no activation tensors (expected pos.L and neg.L for each layer L)")
        }
        guard Set(pos.keys) == Set(neg.keys) else {
            throw ExtractionError("\(path): pos.L and neg.L tensors cover different layers")
        }
        guard Set(pos.values.map(\.rows)).count == 1, Set(neg.values.map(\.rows)).count == 1 else {
            throw ExtractionError("\(path): layers have different sample counts")
        }
        return ContrastiveActivations(hidden: hidden, positive: pos, negative: neg)
    }

    func addTensors(to w: inout SafetensorsWriter) throws {
        for l in layers {
            try w.add("pos.\(l)", floats: positive[l]!.values, shape: [positive[l]!.rows, hidden])
            try w.add("neg.\(l)", floats: negative[l]!.values, shape: [negative[l]!.rows, hidden])
        }
    }
}
