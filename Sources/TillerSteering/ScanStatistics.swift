import Foundation
import TillerModels

// The massive-activation scan: per-layer statistics of |activation| per residual dimension, streamed over
// a calibration set, then its summaries (top dims with their ratios, the
// dominant dim's presence and CV across layers, global dims). Nothing here keeps activations:
// memory is O(layers × hidden).

/// What kind of token a position holds, for "which tokens carry the massive dims".
public enum TokenRole: Int, Sendable, CaseIterable {
    case first = 0      // position 0 of a sequence (BOS when the tokenizer adds one)
    case delimiter = 1  // punctuation / newline / whitespace-only tokens
    case other = 2
}

public struct ScanParameters: Codable, Sendable, Equatable {
    /// Dims reported per layer.
    public var topK: Int = 5
    /// A dim is massive when max|a| / median of the layer's per-dim maxima exceeds this (Sun et al.).
    public var massiveRatio: Double = 100
    /// Global dims: dims in the per-layer top `globalTop` of at least `globalMinLayers` layers.
    public var globalTop: Int = 3
    public var globalMinLayers: Int = 3
    /// Layers shown in the "window top-3" line (e.g. "L12–18 top-3"); nil = middle third.
    public var window: ClosedRange<Int>? = nil

    public init() {}

    enum CodingKeys: String, CodingKey {
        case topK = "top_k", massiveRatio = "massive_ratio", globalTop = "global_top"
        case globalMinLayers = "global_min_layers", windowStart = "window_start", windowEnd = "window_end"
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        topK = try c.decode(Int.self, forKey: .topK)
        massiveRatio = try c.decode(Double.self, forKey: .massiveRatio)
        globalTop = try c.decode(Int.self, forKey: .globalTop)
        globalMinLayers = try c.decode(Int.self, forKey: .globalMinLayers)
        if let a = try c.decodeIfPresent(Int.self, forKey: .windowStart),
           let b = try c.decodeIfPresent(Int.self, forKey: .windowEnd) { window = a...b }
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(topK, forKey: .topK)
        try c.encode(massiveRatio, forKey: .massiveRatio)
        try c.encode(globalTop, forKey: .globalTop)
        try c.encode(globalMinLayers, forKey: .globalMinLayers)
        try c.encodeIfPresent(window?.lowerBound, forKey: .windowStart)
        try c.encodeIfPresent(window?.upperBound, forKey: .windowEnd)
    }
}

/// Streaming accumulator: feed it every layer's residual rows, then ask for the result.
public final class ScanAccumulator: @unchecked Sendable {
    public let layers: Int
    public let hidden: Int
    public let massiveRatio: Double
    private var maxAbs: [Float]      // [layers × hidden]
    private var sumAbs: [Double]     // [layers × hidden]
    private var tokens: [Int]        // rows seen per layer
    /// Per layer: dim → counts of carrier tokens by role. A token carries a dim when its |a| is
    /// more than `massiveRatio` × the median |a| of that token's row.
    private var carriers: [[Int: [Int]]]
    private var medianScratch: [Float]
    private let lock = NSLock()

    public init(layers: Int, hidden: Int, massiveRatio: Double = 100) {
        self.layers = layers
        self.hidden = hidden
        self.massiveRatio = massiveRatio
        maxAbs = [Float](repeating: 0, count: layers * hidden)
        sumAbs = [Double](repeating: 0, count: layers * hidden)
        tokens = [Int](repeating: 0, count: layers)
        carriers = [[Int: [Int]]](repeating: [:], count: layers)
        medianScratch = [Float](repeating: 0, count: hidden)
    }

    /// Adds `count` rows (row-major, `hidden` floats each) of layer `layer`; `roles[i]` is the
    /// role of row i's token.
    public func add(layer: Int, rows: UnsafePointer<Float>, count: Int, roles: [TokenRole]) {
        precondition(layer >= 0 && layer < layers, "layer \(layer) out of range")
        precondition(roles.count == count, "one role per row")
        lock.lock()
        defer { lock.unlock() }
        let h = hidden
        maxAbs.withUnsafeMutableBufferPointer { mx in
            sumAbs.withUnsafeMutableBufferPointer { sm in
                let mxL = mx.baseAddress! + layer * h
                let smL = sm.baseAddress! + layer * h
                for r in 0..<count {
                    let row = rows + r * h
                    for d in 0..<h {
                        let a = abs(row[d])
                        if a > mxL[d] { mxL[d] = a }
                        smL[d] += Double(a)
                    }
                    // Carrier tokens: only dims far above this row's median.
                    for d in 0..<h { medianScratch[d] = abs(row[d]) }
                    let med = Self.median(&medianScratch)
                    let limit = Float(massiveRatio) * med
                    guard limit > 0 || med == 0 else { continue }
                    for d in 0..<h where abs(row[d]) > limit && abs(row[d]) > 0 {
                        var c = carriers[layer][d] ?? [0, 0, 0]
                        c[roles[r].rawValue] += 1
                        carriers[layer][d] = c
                    }
                }
            }
        }
        tokens[layer] += count
    }

    static func median(_ v: inout [Float]) -> Float {
        guard !v.isEmpty else { return 0 }
        v.sort()
        let n = v.count
        return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
    }

    /// Per-layer per-dim max |a| (copy), for plots and tests.
    public func maxima(layer: Int) -> [Float] { Array(maxAbs[layer * hidden ..< (layer + 1) * hidden]) }
    public func means(layer: Int) -> [Double] {
        let n = Double(max(tokens[layer], 1))
        return sumAbs[layer * hidden ..< (layer + 1) * hidden].map { $0 / n }
    }

    public func result(model: String, parameters: ScanParameters) -> ScanResult {
        var perLayer: [LayerScan] = []
        for l in 0..<layers {
            let mx = maxima(layer: l)
            let mean = means(layer: l)
            var sorted = mx
            let med = Double(Self.median(&sorted))
            let layerMean = mean.reduce(0, +) / Double(hidden)
            let order = (0..<hidden).sorted { mx[$0] != mx[$1] ? mx[$0] > mx[$1] : $0 < $1 }
            let top = order.prefix(max(parameters.topK, parameters.globalTop)).map { d -> MassiveDim in
                let rm = med > 0 ? Double(mx[d]) / med : .infinity
                let c = carriers[l][d] ?? [0, 0, 0]
                let total = c.reduce(0, +)
                return MassiveDim(dim: d, max: Double(mx[d]), mean: mean[d], ratioMedian: rm,
                                  ratioMean: layerMean > 0 ? Double(mx[d]) / layerMean : .infinity,
                                  massive: rm > parameters.massiveRatio,
                                  carrierTokens: total,
                                  carrierShare: total == 0 ? nil : CarrierShare(
                                    first: Double(c[0]) / Double(total),
                                    delimiter: Double(c[1]) / Double(total),
                                    other: Double(c[2]) / Double(total)))
            }
            perLayer.append(LayerScan(layer: l, tokens: tokens[l], medianMax: med, meanAbs: layerMean,
                                      top: Array(top.prefix(parameters.topK)),
                                      topForGlobal: Array(top.prefix(parameters.globalTop)).map(\.dim)))
        }
        return ScanResult.summarise(model: model, hidden: hidden, layers: perLayer, parameters: parameters,
                                    massiveRatioOf: { l, d in
                                        let m = perLayer[l].medianMax
                                        return m > 0 ? Double(self.maxAbs[l * self.hidden + d]) / m : .infinity
                                    },
                                    maxOf: { l, d in Double(self.maxAbs[l * self.hidden + d]) })
    }
}

public struct CarrierShare: Codable, Sendable, Equatable {
    public var first: Double
    public var delimiter: Double
    public var other: Double
}

public struct MassiveDim: Codable, Sendable, Equatable {
    public var dim: Int
    public var max: Double
    public var mean: Double
    public var ratioMedian: Double
    public var ratioMean: Double
    public var massive: Bool
    /// Tokens whose |a| in this dim exceeded massive_ratio × their row's median, and their roles.
    public var carrierTokens: Int
    public var carrierShare: CarrierShare?

    enum CodingKeys: String, CodingKey {
        case dim, max, mean, massive
        case ratioMedian = "ratio_median", ratioMean = "ratio_mean"
        case carrierTokens = "carrier_tokens", carrierShare = "carrier_share"
    }
}

public struct LayerScan: Codable, Sendable, Equatable {
    public var layer: Int
    public var tokens: Int
    /// Median over dims of the per-dim max |a| (the denominator of ratio_median).
    public var medianMax: Double
    /// Mean |a| over all dims and tokens (the denominator of ratio_mean).
    public var meanAbs: Double
    public var top: [MassiveDim]
    /// The first `global_top` dims (used for global dims), kept even when top_k is smaller.
    public var topForGlobal: [Int]

    enum CodingKeys: String, CodingKey {
        case layer, tokens, top
        case medianMax = "median_max", meanAbs = "mean_abs", topForGlobal = "top_for_global"
    }
}

public struct DominantDim: Codable, Sendable, Equatable {
    public var dim: Int
    /// Layers in which it is the top-1 dim.
    public var layersTop1: Int
    /// Layers in which it is massive (ratio to median above the threshold).
    public var layersPresent: Int
    /// Coefficient of variation (std / mean) of its max |a| across the layers where it is massive.
    public var cv: Double
    /// Largest ratio to the median over layers, and the median of that ratio over present layers.
    public var peakRatio: Double
    public var typicalRatio: Double

    enum CodingKeys: String, CodingKey {
        case dim, cv
        case layersTop1 = "layers_top1", layersPresent = "layers_present"
        case peakRatio = "peak_ratio", typicalRatio = "typical_ratio"
    }
}

public struct GlobalDim: Codable, Sendable, Equatable {
    public var dim: Int
    /// Layers whose top-`global_top` contains the dim.
    public var layers: [Int]
}

/// The scan file (`scan.json`): input to variant cleaning, the report and plots.
public struct ScanResult: Codable, Sendable, Equatable {
    public var schema: String = "tiller.scan/1"
    public var model: String
    public var nLayers: Int
    public var hidden: Int
    public var tokensSeen: Int
    public var site: String = HookPoint.Kind.residPost.rawValue
    public var parameters: ScanParameters
    public var layers: [LayerScan]
    public var dominant: DominantDim?
    public var globalDims: [GlobalDim]
    public var window: [Int]
    public var windowTop3: [[Int]]

    enum CodingKeys: String, CodingKey {
        case schema, model, hidden, site, parameters, layers, dominant, window
        case nLayers = "n_layers", tokensSeen = "tokens_seen", globalDims = "global_dims"
        case windowTop3 = "window_top3"
    }

    static func summarise(model: String, hidden: Int, layers: [LayerScan], parameters p: ScanParameters,
                          massiveRatioOf: (Int, Int) -> Double, maxOf: (Int, Int) -> Double) -> ScanResult {
        let n = layers.count
        // Dominant dim: most frequent top-1; ties broken by larger summed magnitude.
        var top1Count: [Int: Int] = [:]
        for l in layers { if let d = l.top.first?.dim { top1Count[d, default: 0] += 1 } }
        let dominantDim = top1Count.max { a, b in
            a.value != b.value ? a.value < b.value
                : (0..<n).map { maxOf($0, a.key) }.reduce(0, +) < (0..<n).map { maxOf($0, b.key) }.reduce(0, +)
        }?.key
        var dominant: DominantDim?
        if let d = dominantDim {
            let present = (0..<n).filter { massiveRatioOf($0, d) > p.massiveRatio }
            let mags = present.map { maxOf($0, d) }
            let mean = mags.isEmpty ? 0 : mags.reduce(0, +) / Double(mags.count)
            let variance = mags.isEmpty ? 0 : mags.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(mags.count)
            let ratios = (0..<n).map { massiveRatioOf($0, d) }
            var presentRatios = present.map { massiveRatioOf($0, d) }.sorted()
            let typical = presentRatios.isEmpty ? 0 : presentRatios[presentRatios.count / 2]
            presentRatios.removeAll()
            dominant = DominantDim(dim: d, layersTop1: top1Count[d] ?? 0, layersPresent: present.count,
                                   cv: mean > 0 ? variance.squareRoot() / mean : 0,
                                   peakRatio: ratios.max() ?? 0, typicalRatio: typical)
        }
        // Global dims: in the top-`globalTop` of ≥ globalMinLayers layers, by frequency, then first layer.
        var seen: [Int: [Int]] = [:]
        for l in layers { for d in l.topForGlobal { seen[d, default: []].append(l.layer) } }
        let global = seen.filter { $0.value.count >= p.globalMinLayers }
            .map { GlobalDim(dim: $0.key, layers: $0.value) }
            .sorted { $0.layers.count != $1.layers.count ? $0.layers.count > $1.layers.count
                : ($0.layers.first ?? 0, $0.dim) < ($1.layers.first ?? 0, $1.dim) }
        let window = p.window ?? (n >= 3 ? (n / 3)...(2 * n / 3) : 0...max(n - 1, 0))
        let wl = Array(window.clamped(to: 0...max(n - 1, 0)))
        return ScanResult(model: model, nLayers: n, hidden: hidden, tokensSeen: layers.first?.tokens ?? 0,
                          parameters: p, layers: layers, dominant: dominant, globalDims: global,
                          window: wl, windowTop3: wl.map { Array(layers[$0].topForGlobal.prefix(3)) })
    }

    /// The dims a layer-aware `laN` variant cleans at `layer`: that layer's top N by max |a|.
    public func layerAwareDims(layer: Int, count: Int) -> [Int] {
        guard layer >= 0, layer < layers.count else { return [] }
        let l = layers[layer]
        let dims = l.top.map(\.dim) + l.topForGlobal.filter { d in !l.top.contains { $0.dim == d } }
        return Array(dims.prefix(count))
    }

    /// The dims a uniform `uN` variant cleans at every layer: the first N global dims.
    public func uniformDims(count: Int) -> [Int] { Array(globalDims.prefix(count).map(\.dim)) }

    public static func load(path: String) throws -> ScanResult {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ScanError("\(path): cannot read scan file: \(error.localizedDescription)")
        }
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do { return try dec.decode(ScanResult.self, from: data) } catch {
            throw ScanError("\(path): not a Tiller scan file (\(error))")
        }
    }

    public func write(path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try enc.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

public struct ScanError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
