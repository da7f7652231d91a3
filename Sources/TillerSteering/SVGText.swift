import Foundation

// Text placed in the report's SVG figures, with the box it occupies, so that a figure can refuse
// a label that would overlap one already placed (tick labels are thinned this way) and a test can
// check every figure's labels geometrically. Widths are estimated from the character count
// (sans-serif at about 0.6 em per character, generous for digits and lower case).

public struct SVGRect: Sendable, Equatable {
    public var x: Double, y: Double, width: Double, height: Double
    public init(x: Double, y: Double, width: Double, height: Double) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }
    /// Interiors overlap (touching edges do not count).
    public func intersects(_ o: SVGRect) -> Bool {
        x < o.x + o.width && o.x < x + width && y < o.y + o.height && o.y < y + height
    }
    public func inset(_ d: Double) -> SVGRect { SVGRect(x: x - d, y: y - d, width: width + 2 * d, height: height + 2 * d) }
}

public struct SVGLabel: Sendable {
    public enum Anchor: String, Sendable { case start, middle, end }
    public var text: String
    public var x: Double
    public var y: Double
    public var size: Double
    public var anchor: Anchor
    /// Rotated −90° about (x, y): the text reads upwards.
    public var vertical: Bool
    public var fill: String?
    public var bold: Bool

    public init(_ text: String, x: Double, y: Double, size: Double = 10, anchor: Anchor = .start, vertical: Bool = false,
                fill: String? = nil, bold: Bool = false) {
        self.text = text
        self.x = x
        self.y = y
        self.size = size
        self.anchor = anchor
        self.vertical = vertical
        self.fill = fill
        self.bold = bold
    }

    public static func width(_ s: String, size: Double) -> Double { Double(s.count) * size * 0.62 }

    /// The box the text occupies (baseline at y; ascent 0.8 em, descent 0.25 em).
    public var box: SVGRect {
        let w = Self.width(text, size: size) * (bold ? 1.08 : 1)
        let along: Double = anchor == .start ? 0 : anchor == .middle ? -w / 2 : -w
        if vertical {
            return SVGRect(x: x - 0.8 * size, y: y - along - w, width: 1.05 * size, height: w)
        }
        return SVGRect(x: x + along, y: y - 0.8 * size, width: w, height: 1.05 * size)
    }

    public var svg: String {
        var s = "<text x=\"\(svgNum(x))\" y=\"\(svgNum(y))\""
        if size != 10 { s += " font-size=\"\(svgNum(size))\"" }
        if anchor != .start { s += " text-anchor=\"\(anchor.rawValue)\"" }
        if vertical { s += " transform=\"rotate(-90 \(svgNum(x)) \(svgNum(y)))\"" }
        if let fill { s += " fill=\"\(fill)\"" }
        if bold { s += " font-weight=\"bold\"" }
        return s + ">\(svgEscape(text))</text>"
    }
}

/// Labels that must not overlap, and whether a new one would.
public struct SVGLabelLayout: Sendable {
    public private(set) var labels: [SVGLabel] = []
    public init() {}
    /// Adds the label unless its box (with `gap` around it) overlaps one already placed.
    @discardableResult
    public mutating func place(_ l: SVGLabel, gap: Double = 1) -> Bool {
        let b = l.box.inset(gap)
        guard !labels.contains(where: { $0.box.intersects(b) }) else { return false }
        labels.append(l)
        return true
    }
    /// Pairs of placed labels whose boxes intersect (empty when the layout is clean).
    public var overlaps: [(String, String)] {
        var out: [(String, String)] = []
        for i in labels.indices { for j in labels.indices where j > i && labels[i].box.intersects(labels[j].box) { out.append((labels[i].text, labels[j].text)) } }
        return out
    }
    public var svg: String { labels.map(\.svg).joined(separator: "\n") }
}

func svgNum(_ x: Double) -> String { String(format: "%.1f", x) }

public func svgEscape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
