import COpenBLAS
import Foundation

/// L2-regularised logistic regression, the "probe" extraction method: scikit-learn's
/// `LogisticRegression(C=1, fit_intercept=True)` on row-L2-normalised activations, solved to
/// convergence. Objective (intercept not penalised, as sklearn):
///     f(w, b) = ½‖w‖² + C · Σᵢ [log(1 + e^{mᵢ}) − yᵢ mᵢ],   mᵢ = xᵢ·w + b,  yᵢ ∈ {0, 1}
/// Solved by Newton's method with conjugate-gradient inner solves (Hessian-vector products cost
/// two matrix-vector products, so a step is O(n·d) instead of O(n·d²) for a dense Newton step)
/// and an Armijo backtracking line search, all in Float64. Strictly convex, so Newton converges
/// quadratically; we stop on the gradient's max-norm.
public struct LogisticProbe: Sendable {
    public struct Options: Sendable, Equatable {
        /// Inverse regularisation strength (sklearn's C).
        public var c: Double = 1
        /// Stop when max|∇f| ≤ tolerance · max(1, max|∇f at 0|).
        public var tolerance: Double = 1e-10
        public var maxIterations: Int = 200
        public init() {}
    }

    public var options: Options
    public init(options: Options = Options()) { self.options = options }

    /// A fitted probe. `weights` live in the row-normalised space.
    public struct Fit: Sendable {
        public var weights: [Double]
        public var intercept: Double
        public var iterations: Int
        /// max|∇f| at the solution.
        public var gradientNorm: Double
        /// Share of training rows classified correctly (decision > 0 ⇒ positive).
        public var trainAccuracy: Double

        /// The unit steering direction (positive class side).
        public func direction() throws -> [Float] { try unitVector(weights, what: "probe") }

        /// Accuracy on other samples (rows are row-normalised and cleaned like the training rows).
        public func accuracy(positive: ActivationMatrix, negative: ActivationMatrix, zeroing dims: [Int] = []) -> Double {
            let (x, y) = LogisticProbe.design(positive: positive, negative: negative, zeroing: dims)
            let n = y.count, d = weights.count
            guard n > 0 else { return .nan }
            var correct = 0
            for i in 0..<n {
                var m = intercept
                for j in 0..<d { m += x[i * d + j] * weights[j] }
                if (m > 0) == (y[i] == 1) { correct += 1 }
            }
            return Double(correct) / Double(n)
        }
    }

    /// Builds the Float64 design matrix: positive rows then negative rows, `dims` zeroed, each row
    /// scaled to unit L2 norm (an all-zero row stays zero). Labels: 1 positive, 0 negative.
    static func design(positive: ActivationMatrix, negative: ActivationMatrix, zeroing dims: [Int]) -> ([Double], [Double]) {
        let d = positive.cols
        let n = positive.rows + negative.rows
        var x = [Double](repeating: 0, count: n * d)
        var y = [Double](repeating: 0, count: n)
        let zero = Set(dims)
        for (k, m) in [positive, negative].enumerated() {
            let offset = k == 0 ? 0 : positive.rows
            m.values.withUnsafeBufferPointer { src in
                for r in 0..<m.rows {
                    let i = offset + r
                    y[i] = k == 0 ? 1 : 0
                    var ss = 0.0
                    for j in 0..<d where !zero.contains(j) {
                        let v = Double(src[r * d + j])
                        x[i * d + j] = v
                        ss += v * v
                    }
                    if ss > 0 {
                        let s = 1 / ss.squareRoot()
                        for j in 0..<d { x[i * d + j] *= s }
                    }
                }
            }
        }
        return (x, y)
    }

    public func fit(positive: ActivationMatrix, negative: ActivationMatrix, zeroing dims: [Int] = []) throws -> Fit {
        guard positive.cols == negative.cols else {
            throw ExtractionError("probe: positive rows have \(positive.cols) dims, negative rows \(negative.cols)")
        }
        guard positive.rows > 0, negative.rows > 0 else {
            throw ExtractionError("probe: needs at least one positive and one negative sample (have \(positive.rows) and \(negative.rows))")
        }
        guard positive.values.allSatisfy({ $0.isFinite }), negative.values.allSatisfy({ $0.isFinite }) else {
            throw ExtractionError("probe: activations contain NaN or infinite values")
        }
        let (x, y) = Self.design(positive: positive, negative: negative, zeroing: dims)
        return try solve(x: x, y: y, n: y.count, d: positive.cols)
    }

    func solve(x: [Double], y: [Double], n: Int, d: Int) throws -> Fit {
        let C = options.c
        var w = [Double](repeating: 0, count: d)
        var b = 0.0
        var m = [Double](repeating: 0, count: n)     // margins X·w + b
        var r = [Double](repeating: 0, count: n)     // σ(m) − y
        var dd = [Double](repeating: 0, count: n)    // σ(m)(1 − σ(m))
        var gw = [Double](repeating: 0, count: d)
        var tmpN = [Double](repeating: 0, count: n)
        var tmpD = [Double](repeating: 0, count: d)

        // y ← X·v (+ shift)
        func xTimes(_ v: [Double], shift: Double, into out: inout [Double]) {
            x.withUnsafeBufferPointer { xp in v.withUnsafeBufferPointer { vp in out.withUnsafeMutableBufferPointer { op in
                for i in 0..<n { op[i] = shift }
                tiller_dgemv(Int32(TillerBlasNoTrans), Int32(n), Int32(d), 1, xp.baseAddress, Int32(d),
                            vp.baseAddress, 1, 1, op.baseAddress, 1)
            } } }
        }
        // out ← Xᵀ·u
        func xtTimes(_ u: [Double], into out: inout [Double]) {
            x.withUnsafeBufferPointer { xp in u.withUnsafeBufferPointer { up in out.withUnsafeMutableBufferPointer { op in
                tiller_dgemv(Int32(TillerBlasTrans), Int32(n), Int32(d), 1, xp.baseAddress, Int32(d),
                            up.baseAddress, 1, 0, op.baseAddress, 1)
            } } }
        }
        func objective(_ margins: [Double], _ w: [Double]) -> Double {
            var f = 0.0
            for i in 0..<n { f += softplus(margins[i]) - y[i] * margins[i] }
            return 0.5 * dot(w, w) + C * f
        }
        // Gradient at the current (w, b, m); fills r, dd, gw; returns (gb, max-norm).
        func gradient() -> (Double, Double) {
            var gb = 0.0
            for i in 0..<n {
                let p = sigmoid(m[i])
                r[i] = p - y[i]
                dd[i] = p * (1 - p)
                gb += C * r[i]
            }
            xtTimes(r, into: &gw)
            var norm = abs(gb)
            for j in 0..<d {
                gw[j] = w[j] + C * gw[j]
                norm = max(norm, abs(gw[j]))
            }
            return (gb, norm)
        }

        xTimes(w, shift: b, into: &m)
        var f = objective(m, w)
        var (gb, gnorm) = gradient()
        let target = options.tolerance * max(1, gnorm)
        var iterations = 0
        while gnorm > target {
            guard iterations < options.maxIterations else {
                throw ExtractionError("probe: Newton did not converge in \(options.maxIterations) iterations (max|∇f| = \(gnorm))")
            }
            iterations += 1
            // Conjugate gradients on H s = −g, H = [I + C·XᵀDX, C·XᵀD1; C·1ᵀDX, C·ΣD].
            func hess(_ vw: [Double], _ vb: Double) -> ([Double], Double) {
                xTimes(vw, shift: vb, into: &tmpN)
                var hb = 0.0
                for i in 0..<n { tmpN[i] *= C * dd[i]; hb += tmpN[i] }
                xtTimes(tmpN, into: &tmpD)
                var hw = tmpD
                for j in 0..<d { hw[j] += vw[j] }
                return (hw, hb)
            }
            var sw = [Double](repeating: 0, count: d), sb = 0.0
            var resW = gw.map { -$0 }, resB = -gb
            var pw = resW, pb = resB
            var rr = dot(resW, resW) + resB * resB
            let gg = rr.squareRoot()
            // Forcing term min(0.5, √‖g‖)·‖g‖: superlinear, then quadratic, convergence.
            let cgTarget = min(0.5, gg.squareRoot()) * gg
            for _ in 0 ..< (d + 1) {
                if rr.squareRoot() <= cgTarget { break }
                let (hw, hb) = hess(pw, pb)
                let curvature = dot(pw, hw) + pb * hb
                guard curvature > 0 else { break }
                let alpha = rr / curvature
                for j in 0..<d { sw[j] += alpha * pw[j]; resW[j] -= alpha * hw[j] }
                sb += alpha * pb; resB -= alpha * hb
                let rrNew = dot(resW, resW) + resB * resB
                let beta = rrNew / rr
                for j in 0..<d { pw[j] = resW[j] + beta * pw[j] }
                pb = resB + beta * pb
                rr = rrNew
            }
            // Armijo backtracking along s.
            let slope = dot(gw, sw) + gb * sb
            guard slope < 0 else {
                throw ExtractionError("probe: Newton step is not a descent direction (max|∇f| = \(gnorm)); activations may be degenerate")
            }
            var t = 1.0
            var accepted = false
            var wNew = w, bNew = b, fNew = f
            // Near the optimum the predicted decrease is below what Float64 resolves in f, so
            // Armijo compares rounding noise: take the full Newton step and judge by the gradient.
            let resolvable = -slope > 1e-11 * max(1, abs(f))
            if !resolvable {
                for j in 0..<d { wNew[j] = w[j] + sw[j] }
                bNew = b + sb
                xTimes(wNew, shift: bNew, into: &tmpN)
                fNew = objective(tmpN, wNew)
                accepted = true
            }
            for _ in 0..<60 where !accepted {
                for j in 0..<d { wNew[j] = w[j] + t * sw[j] }
                bNew = b + t * sb
                xTimes(wNew, shift: bNew, into: &tmpN)
                fNew = objective(tmpN, wNew)
                if fNew <= f + 1e-4 * t * slope { accepted = true; break }
                t *= 0.5
            }
            if !accepted {
                // No decrease representable in Float64: we are at the optimum to machine precision.
                if gnorm <= 1e-6 * max(1, target / options.tolerance) { break }
                throw ExtractionError("probe: line search failed (max|∇f| = \(gnorm))")
            }
            w = wNew; b = bNew; f = fNew
            xTimes(w, shift: b, into: &m)
            (gb, gnorm) = gradient()
        }
        var correct = 0
        for i in 0..<n where (m[i] > 0) == (y[i] == 1) { correct += 1 }
        return Fit(weights: w, intercept: b, iterations: iterations, gradientNorm: gnorm,
                   trainAccuracy: Double(correct) / Double(n))
    }
}

@inline(__always) private func sigmoid(_ z: Double) -> Double {
    z >= 0 ? 1 / (1 + Foundation.exp(-z)) : { let e = Foundation.exp(z); return e / (1 + e) }()
}
/// log(1 + e^z) without overflow.
@inline(__always) private func softplus(_ z: Double) -> Double {
    z > 0 ? z + Foundation.log1p(Foundation.exp(-z)) : Foundation.log1p(Foundation.exp(z))
}
@inline(__always) private func dot(_ a: [Double], _ b: [Double]) -> Double {
    var s = 0.0
    for i in a.indices { s += a[i] * b[i] }
    return s
}
