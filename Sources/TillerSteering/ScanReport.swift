import Foundation

// Human-readable views of a scan: the massive-activation summary in Markdown, and an SVG with a
// layers × top-dims heatmap of log10 max|a| beside the dominant dim's magnitude per layer.

extension ScanResult {
    public func markdownSummary() -> String {
        var s = "# Massive-activation scan: \(model)\n\n"
        s += "Site `\(site)`, \(nLayers) layers, hidden \(hidden), \(tokensSeen) tokens. "
        s += "A dim is massive when its max |a| exceeds \(fmt(parameters.massiveRatio))× the median of the layer's per-dim maxima.\n\n"
        if let d = dominant {
            s += "- **Dominant dim: \(d.dim)** (\(fmt(d.typicalRatio))× typical ratio, \(fmt(d.peakRatio))× peak; "
            s += "top-1 in \(d.layersTop1)/\(nLayers) layers, massive in \(d.layersPresent)/\(nLayers) layers, CV=\(String(format: "%.2f", d.cv)))\n"
        }
        if let a = window.first, let b = window.last {
            let rows = zip(window, windowTop3).map { "L\($0): [\($1.map(String.init).joined(separator: ", "))]" }
            s += "- L\(a)–\(b) top-3: " + rows.joined(separator: "; ") + "\n"
        }
        let g = globalDims.map { "\($0.dim) (\($0.layers.count))" }.joined(separator: ", ")
        s += "- Global dims (top-\(parameters.globalTop) in ≥\(parameters.globalMinLayers) layers): \(g.isEmpty ? "none" : g)\n\n"
        s += "| Layer | top dims (max \\| ratio to median \\| ratio to mean) | massive |\n|---|---|---|\n"
        for l in layers {
            let cells = l.top.map { "\($0.dim) (\(fmt($0.max)) \\| \(fmt($0.ratioMedian))× \\| \(fmt($0.ratioMean))×)" }
            s += "| L\(l.layer) | \(cells.joined(separator: ", ")) | \(l.top.filter(\.massive).map { String($0.dim) }.joined(separator: ", ")) |\n"
        }
        if let d = dominant, let l = layers.first(where: { $0.top.first?.dim == d.dim && $0.top.first?.massive == true })
            ?? layers.first(where: { $0.top.first?.dim == d.dim }), let share = l.top.first?.carrierShare {
            s += "\nTokens carrying dim \(d.dim) at L\(l.layer): first position \(pct(share.first)), delimiters \(pct(share.delimiter)), other \(pct(share.other)).\n"
        }
        return s
    }

    /// Layers × dims heatmap (dims = union of every layer's top-k, ordered by frequency) and a line
    /// plot of the dominant dim's max |a| per layer (log scale).
    public func svg() -> String { svgFigure().svg }

    /// The heatmap and its labels: dim labels stand vertically above their columns, and the top
    /// margin is as tall as the longest of them, so none overlaps a neighbour, the cells or the title.
    public func svgFigure() -> (svg: String, labels: SVGLabelLayout) {
        var freq: [Int: Int] = [:]
        for l in layers { for t in l.top { freq[t.dim, default: 0] += 1 } }
        let dims = freq.keys.sorted { freq[$0]! != freq[$1]! ? freq[$0]! > freq[$1]! : $0 < $1 }.prefix(24)
        let longest = dims.map { SVGLabel.width(String($0), size: 10) }.max() ?? 0
        let cell = 18.0, left = 60.0, top = 30.0 + longest + 8
        let heatW = Double(dims.count) * cell, heatH = Double(layers.count) * cell
        let plotX = left + heatW + 60, plotW = 320.0
        let width = plotX + plotW + 40, height = max(heatH + top + 30, 300)
        var values: [[Double?]] = []
        for l in layers {
            values.append(dims.map { d in l.top.first { $0.dim == d }.map { log10(max($0.max, 1e-9)) } })
        }
        let flat = values.flatMap { $0.compactMap { $0 } }
        let lo = flat.min() ?? 0, hi = max(flat.max() ?? 1, lo + 1e-9)
        var labels = SVGLabelLayout()
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"10\">\n"
        labels.place(SVGLabel("\(model): log10 max|a| of top dims per layer", x: left, y: 16, size: 13))
        for (i, d) in dims.enumerated() {
            labels.place(SVGLabel(String(d), x: left + Double(i) * cell + cell / 2 + 3.5, y: top - 4, vertical: true), gap: 0)
        }
        for (r, l) in layers.enumerated() {
            let y = top + Double(r) * cell
            labels.place(SVGLabel("L\(l.layer)", x: left - 4, y: y + cell * 0.7, anchor: .end), gap: 0)
            for (c, v) in values[r].enumerated() {
                let x = left + Double(c) * cell
                let color: String
                if let v = v {
                    let t = (v - lo) / (hi - lo)
                    color = heat(t)
                } else { color = "#f2f2f2" }
                let title = v.map { String(format: "L%d dim %d: %.4g", l.layer, dims[dims.startIndex + c], pow(10, $0)) } ?? ""
                out += "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(cell - 1)\" height=\"\(cell - 1)\" fill=\"\(color)\"><title>\(title)</title></rect>\n"
            }
        }
        if let d = dominant {
            let mags = layers.map { l in l.top.first { $0.dim == d.dim }?.max }
            let logs = mags.compactMap { $0 }.map { log10(max($0, 1e-9)) }
            let ylo = (logs.min() ?? 0).rounded(.down), yhi = max((logs.max() ?? 1).rounded(.up), ylo + 1)
            let ph = heatH
            labels.place(SVGLabel("dim \(d.dim): max|a| per layer (log10)", x: plotX, y: top - 8, size: 12))
            out += "<rect x=\"\(plotX)\" y=\"\(top)\" width=\"\(plotW)\" height=\"\(ph)\" fill=\"none\" stroke=\"#999\"/>\n"
            var pts: [String] = []
            for (i, m) in mags.enumerated() {
                guard let m = m else { continue }
                let x = plotX + (layers.count > 1 ? Double(i) / Double(layers.count - 1) : 0.5) * plotW
                let y = top + ph - (log10(max(m, 1e-9)) - ylo) / (yhi - ylo) * ph
                pts.append(String(format: "%.1f,%.1f", x, y))
                out += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"#c0392b\"><title>L%d: %.4g</title></circle>\n", x, y, layers[i].layer, m)
            }
            out += "<polyline points=\"\(pts.joined(separator: " "))\" fill=\"none\" stroke=\"#c0392b\"/>\n"
            labels.place(SVGLabel(fmt(pow(10, yhi)), x: plotX - 4, y: top + 8, anchor: .end))
            labels.place(SVGLabel(fmt(pow(10, ylo)), x: plotX - 4, y: top + ph, anchor: .end))
            labels.place(SVGLabel("layer", x: plotX + plotW / 2, y: top + ph + 16, anchor: .middle))
        }
        out += labels.svg + "\n</svg>\n"
        return (out, labels)
    }
}

private func heat(_ t: Double) -> String {
    // White → orange → dark red.
    let t = min(max(t, 0), 1)
    let r = 255.0 - 80 * t, g = 245 - 215 * t, b = 230 - 215 * t
    return String(format: "#%02x%02x%02x", Int(r), Int(g), Int(b))
}

private func esc(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}

func fmt(_ x: Double) -> String {
    if !x.isFinite { return "∞" }
    if abs(x) >= 100 { return String(format: "%.0f", x) }
    if abs(x) >= 1 { return String(format: "%.1f", x) }
    return String(format: "%.3g", x)
}

private func pct(_ x: Double) -> String { String(format: "%.0f%%", x * 100) }
