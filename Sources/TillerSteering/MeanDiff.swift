import Foundation

/// Row-major activations: `rows` samples of `cols` (= hidden) floats, one sample per row.
public struct ActivationMatrix: Sendable, Equatable {
    public var rows: Int
    public var cols: Int
    public var values: [Float]

    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(values.count == rows * cols, "ActivationMatrix: \(values.count) values for \(rows)×\(cols)")
        self.rows = rows
        self.cols = cols
        self.values = values
    }
    public init(cols: Int, rows: [[Float]]) {
        self.init(rows: rows.count, cols: cols, values: rows.flatMap { $0 })
    }

    public func row(_ r: Int) -> ArraySlice<Float> { values[r * cols ..< (r + 1) * cols] }

    /// A copy with the given columns set to zero (preclean).
    public func zeroing(_ dims: [Int]) -> ActivationMatrix {
        guard !dims.isEmpty else { return self }
        var out = self
        for r in 0..<rows { for d in dims where d >= 0 && d < cols { out.values[r * cols + d] = 0 } }
        return out
    }

    /// The rows selected by `indices`, in that order.
    public func selecting(_ indices: [Int]) -> ActivationMatrix {
        var v: [Float] = []
        v.reserveCapacity(indices.count * cols)
        for i in indices { v.append(contentsOf: row(i)) }
        return ActivationMatrix(rows: indices.count, cols: cols, values: v)
    }

    /// Column means accumulated in Float64.
    public func columnMeans() -> [Double] {
        var acc = [Double](repeating: 0, count: cols)
        values.withUnsafeBufferPointer { x in
            for r in 0..<rows {
                let base = r * cols
                for d in 0..<cols { acc[d] += Double(x[base + d]) }
            }
        }
        let n = Double(max(rows, 1))
        return acc.map { $0 / n }
    }
}

public struct ExtractionError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Difference of class means: mean(pos) − mean(neg), accumulated in Float64 and unit-normalised.
public enum MeanDiff {
    public static func direction(positive: ActivationMatrix, negative: ActivationMatrix,
                                 zeroing dims: [Int] = []) throws -> [Float] {
        guard positive.cols == negative.cols else {
            throw ExtractionError("mean_diff: positive rows have \(positive.cols) dims, negative rows \(negative.cols)")
        }
        guard positive.rows > 0, negative.rows > 0 else {
            throw ExtractionError("mean_diff: needs at least one positive and one negative sample (have \(positive.rows) and \(negative.rows))")
        }
        var diff = zip(positive.columnMeans(), negative.columnMeans()).map { $0 - $1 }
        // Zeroing dims in the activations zeroes them in each mean, so doing it here is exact.
        for d in dims where d >= 0 && d < diff.count { diff[d] = 0 }
        return try unitVector(diff, what: "mean_diff")
    }
}

/// v / ‖v‖ in Float64, returned as Float. A zero vector is an error: it has no direction.
func unitVector(_ v: [Double], what: String) throws -> [Float] {
    let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
    guard n > 0, n.isFinite else { throw ExtractionError("\(what): the vector is zero or not finite, it has no direction") }
    return v.map { Float($0 / n) }
}

/// Cosine similarity in Float64.
public func cosineSimilarity(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "cosine of vectors of different lengths")
    var ab = 0.0, aa = 0.0, bb = 0.0
    for i in a.indices {
        let x = Double(a[i]), y = Double(b[i])
        ab += x * y; aa += x * x; bb += y * y
    }
    return aa > 0 && bb > 0 ? ab / (aa * bb).squareRoot() : 0
}
