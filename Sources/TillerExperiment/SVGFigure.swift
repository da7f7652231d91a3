import Foundation
import TillerSteering

// A small SVG figure builder for the report: plot areas with linear or log axes, shapes, and
// labels placed through an SVGLabelLayout (tick labels that would overlap are skipped; every
// other label is sized to fit). The figure keeps its labels so tests can check the layout.

struct Axis {
    var lo: Double
    var hi: Double
    var log: Bool

    init(lo: Double, hi: Double, log: Bool) {
        self.lo = lo
        self.hi = hi
        self.log = log
    }

    /// An axis spanning `values` (padded by 5%; a log axis takes the positive ones).
    init(_ values: [Double], log: Bool, include: [Double] = [], pad: Double = 0.05) {
        self.log = log
        let v = (values + include).filter { $0.isFinite && (!log || $0 > 0) }
        var a = v.min() ?? (log ? 0.1 : 0), b = v.max() ?? (log ? 1 : 1)
        if log { a = Foundation.log10(a); b = Foundation.log10(b) }
        if b - a < 1e-9 { a -= log ? 0.15 : max(abs(a) * 0.1, 0.5); b += log ? 0.15 : max(abs(b) * 0.1, 0.5) }
        let p = (b - a) * pad
        lo = a - p
        hi = b + p
    }
    /// 0…1 along the axis.
    func unit(_ v: Double) -> Double { ((log ? Foundation.log10(max(v, 1e-300)) : v) - lo) / (hi - lo) }
    func contains(_ v: Double) -> Bool { let u = unit(v); return u >= -1e-9 && u <= 1 + 1e-9 }

    /// Round-number ticks (1, 2, 5 × 10^k) inside the axis, about `count` of them.
    func niceTicks(_ count: Int = 5) -> [Double] {
        // A log axis spanning less than a decade gets round linear steps (1, 1.2, 1.4, …).
        if log, hi - lo < 1 {
            return Axis(lo: Foundation.pow(10, lo), hi: Foundation.pow(10, hi), log: false).niceTicks(count).filter { $0 > 0 }
        }
        if log {
            var out: [Double] = []
            for e in Int(Foundation.floor(lo))...Int(Foundation.ceil(hi)) {
                for m in [1.0, 2, 5] { let v = m * Foundation.pow(10, Double(e)); if contains(v) { out.append(v) } }
            }
            return out
        }
        let span = hi - lo, raw = span / Double(max(count, 1))
        let mag = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        var out: [Double] = []
        var v = Foundation.ceil(lo / step) * step
        while v <= hi + 1e-9 { out.append(abs(v) < step * 1e-9 ? 0 : v); v += step }
        return out
    }
}

struct PlotArea {
    var x0: Double, y0: Double, width: Double, height: Double
    var x: Axis
    var y: Axis
    func X(_ v: Double) -> Double { x0 + x.unit(v) * width }
    func Y(_ v: Double) -> Double { y0 + (1 - y.unit(v)) * height }
    func clampY(_ v: Double) -> Double { min(max(Y(v), y0), y0 + height) }
}

struct SVGFigure {
    var width: Double
    var height: Double
    var labels = SVGLabelLayout()
    var shapes: [String] = []
    /// Labels the layout refused (ticks thinned for room).
    var skipped = 0

    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    mutating func shape(_ s: String) { shapes.append(s) }

    /// Places a label; ticks may be refused for room, other labels are expected to fit.
    @discardableResult
    mutating func text(_ l: SVGLabel, gap: Double = 1) -> Bool {
        let ok = labels.place(l, gap: gap)
        if !ok { skipped += 1 }
        return ok
    }

    /// Frame, grid lines and tick labels of a plot area; `xTicks` defaults to round numbers.
    mutating func axes(_ p: PlotArea, xTicks: [Double]? = nil, xTitle: String?, yTitle: String?, xLabels: Bool = true) {
        shape("<rect x=\"\(svgN(p.x0))\" y=\"\(svgN(p.y0))\" width=\"\(svgN(p.width))\" height=\"\(svgN(p.height))\" fill=\"none\" stroke=\"#999\"/>")
        for v in p.y.niceTicks(max(3, Int(p.height / 35))) {
            let y = p.Y(v)
            shape("<line x1=\"\(svgN(p.x0))\" x2=\"\(svgN(p.x0 + p.width))\" y1=\"\(svgN(y))\" y2=\"\(svgN(y))\" stroke=\"#eee\"/>")
            text(SVGLabel(fmtTick(v), x: p.x0 - 4, y: y + 3, size: 10, anchor: .end))
        }
        if xLabels {
            for v in (xTicks ?? p.x.niceTicks(5)).filter(p.x.contains) {
                let x = p.X(v)
                shape("<line x1=\"\(svgN(x))\" x2=\"\(svgN(x))\" y1=\"\(svgN(p.y0 + p.height))\" y2=\"\(svgN(p.y0 + p.height + 3))\" stroke=\"#999\"/>")
                text(SVGLabel(fmtTick(v), x: x, y: p.y0 + p.height + 13, size: 10, anchor: .middle), gap: 2)
            }
        }
        if let xTitle { text(SVGLabel(xTitle, x: p.x0 + p.width / 2, y: p.y0 + p.height + 26, size: 10, anchor: .middle)) }
        if let yTitle { text(SVGLabel(yTitle, x: p.x0 - 34, y: p.y0 + p.height / 2, size: 10, anchor: .middle, vertical: true)) }
    }

    /// A legend of coloured entries laid out in rows within `maxWidth`, starting at (x, y);
    /// returns the y below it.
    mutating func legend(_ entries: [(String, String, String)], x: Double, y: Double, maxWidth: Double) -> Double {
        var cx = x, cy = y
        for (label, colour, dash) in entries {
            let w = 22 + SVGLabel.width(label, size: 10) + 12
            if cx + w > x + maxWidth, cx > x { cx = x; cy += 14 }
            shape("<line x1=\"\(svgN(cx))\" x2=\"\(svgN(cx + 18))\" y1=\"\(svgN(cy - 3))\" y2=\"\(svgN(cy - 3))\" stroke=\"\(colour)\" stroke-width=\"2\"\(dash)/>")
            text(SVGLabel(label, x: cx + 22, y: cy, size: 10))
            cx += w
        }
        return cy + 14
    }

    var svg: String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width.rounded(.up)))\" height=\"\(Int(height.rounded(.up)))\" viewBox=\"0 0 \(Int(width.rounded(.up))) \(Int(height.rounded(.up)))\" font-family=\"sans-serif\" font-size=\"10\">\n"
            + shapes.joined(separator: "\n") + "\n" + labels.svg + "\n</svg>"
    }
}

func svgN(_ x: Double) -> String { String(format: "%.1f", x) }

func fmtTick(_ x: Double) -> String {
    if x == 0 { return "0" }
    if abs(x) >= 1000 { return fmtShort(x) }
    if x == x.rounded() { return String(Int64(x)) }
    return String(format: "%.3g", x)
}

let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

/// Points joined in order (nil breaks the line).
func polyline(_ pts: [(Double, Double)], colour: String, width: Double = 1.5, dash: String = "") -> String {
    guard pts.count > 1 else { return "" }
    return "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"\(width)\"\(dash) points=\"\(pts.map { "\(svgN($0.0)),\(svgN($0.1))" }.joined(separator: " "))\"/>"
}

/// A filled band between a lower and an upper line over the same x values.
func band(_ xs: [Double], _ lo: [Double], _ hi: [Double], colour: String, opacity: Double = 0.15) -> String {
    guard xs.count > 1 else { return "" }
    let up = zip(xs, hi).map { "\(svgN($0)),\(svgN($1))" }, down = zip(xs, lo).reversed().map { "\(svgN($0)),\(svgN($1))" }
    return "<polygon fill=\"\(colour)\" fill-opacity=\"\(opacity)\" stroke=\"none\" points=\"\((up + down).joined(separator: " "))\"/>"
}
