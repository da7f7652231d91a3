import Foundation
import TillerSteering

// `tiller report`: the notepad's Phase 4 tables and results summary in Markdown, and one
// self-contained HTML page (no network: inline CSS, SVG and a little JavaScript) with the
// massive-dim heatmap, trait and coherence vs coefficient per layer for each variant, and a
// browser of the steered answers. Everything is read from the results database.

public struct ExperimentReport {
    public let store: ResultsStore
    public let spec: ExperimentSpec
    public let selection: Selection

    public init(store: ResultsStore) throws {
        self.store = store
        guard let spec = try store.experiment() else { throw StoreError("\(store.path): holds no experiment") }
        self.spec = spec
        selection = try Selection(store: store, spec: spec)
    }

    public func write(directory: String) throws -> (markdown: String, html: String) {
        let md = (directory as NSString).appendingPathComponent("report.md")
        let html = (directory as NSString).appendingPathComponent("report.html")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try markdown().write(toFile: md, atomically: true, encoding: .utf8)
        try self.html().write(toFile: html, atomically: true, encoding: .utf8)
        return (md, html)
    }

    // MARK: Markdown

    public func markdown() throws -> String {
        var s = "# Experiment \(spec.name)\n\n"
        s += try setupMarkdown()
        for c in selection.conditions {
            s += "## \(c.model), \(c.trait)\n\n"
            s += conditionMarkdown(c)
        }
        s += "## Results summary\n\n" + summaryTable()
        return s
    }

    func setupMarkdown() throws -> String {
        var s = "- Models: \(spec.models.joined(separator: ", ")); traits: \(spec.traits.joined(separator: ", "))\n"
        s += "- Variants: \(((try? spec.variantSpecs()) ?? []).map(\.name).joined(separator: ", "))\n"
        s += "- Layers: \(spec.layers.layers.map { "L\($0)" }.joined(separator: ", "))\n"
        if let sr = spec.coefficients.search {
            s += "- Coefficients: adaptive search (\(spec.coefficients.scale.rawValue)), start \(fmt(sr.start)), ×\(fmt(sr.factor)), ≤\(sr.maxSteps) steps, \(sr.refine) refinements\n"
        } else {
            s += "- Coefficients (\(spec.coefficients.scale.rawValue)\(spec.coefficients.scale == .relative ? " to the layer's mean residual norm, massive dims excluded" : "")): \(spec.coefficients.values.map(fmt).joined(separator: ", "))\n"
        }
        s += "- Judge: \(spec.judge); coherence thresholds: \(spec.coherenceThresholds.map(fmt).joined(separator: ", "))\n"
        s += "- \(spec.questionsPerTrait) questions × \(spec.samplesPerQuestion) sample(s), ≤\(spec.maxNewTokens) new tokens, temperature \(fmt(spec.temperature)), seed \(spec.seed), steering at \(spec.steerPositions) positions\n"
        s += "- Stored: \(try store.count("configurations")) configurations, \(try store.count("generations")) answers, \(try store.count("scores")) scored\n\n"
        return s
    }

    func conditionMarkdown(_ c: ConditionResult) -> String {
        var s = ""
        if let b = c.baseline {
            s += "**Baseline:** trait=\(fmt1(b.trait)), coherence=\(fmt1(b.coherence)) (\(b.answers) answers)\n\n"
        } else {
            s += "**Baseline:** not scored yet (Δ below is against 0)\n\n"
        }
        for t in selection.thresholds {
            s += "**Best per method family (coherence ≥ \(fmt(t))):**\n\n"
            s += "| Method | Trait | Δ | Coef | Coef (×norm) | Layer | Coh |\n|---|---|---|---|---|---|---|\n"
            for b in c.best[t] ?? [] {
                let r = b.result
                s += "| \(b.variant) | \(fmt1(r.trait)) | \(signed(b.delta)) | \(fmt(r.config.absoluteCoefficient)) | \(r.relativeCoefficient.map { fmt($0) } ?? "–") | L\(r.config.layer) | \(fmt1(r.coherence)) |\n"
            }
            let missing = c.variants.filter { v in !(c.best[t] ?? []).contains { $0.variant == v } }
            if !missing.isEmpty { s += "\nNo configuration reaches coherence \(fmt(t)): \(missing.joined(separator: ", "))\n" }
            s += "\n"
        }
        let t0 = selection.thresholds[0]
        let groups = selection.groupAverages(threshold: t0, conditions: [c])
        if !groups.isEmpty {
            s += "**Cleaning comparisons (mean best Δ at coherence ≥ \(fmt(t0))):**\n\n| Group | mean Δ | variants |\n|---|---|---|\n"
            for g in groups { s += "| \(g.name) | \(g.mean.map(signed) ?? "–") | \(g.variants.joined(separator: ", ")) |\n" }
            s += "\n"
        }
        if let norms = try? store.layerNorms(model: c.model), !norms.isEmpty {
            s += "**Layer norms** (mean ‖resid_post‖; relative coefficients multiply the norm without massive dims):\n\n"
            s += "| Layer | norm | norm w/o massive dims | excluded dims |\n|---|---|---|---|\n"
            for l in norms.keys.sorted() {
                let n = norms[l]!
                s += "| L\(l) | \(fmt(n.mean)) | \(fmt(n.excludingMassive)) | \(n.excludedDims.map(String.init).joined(separator: ", ")) |\n"
            }
            s += "\n"
        }
        return s
    }

    public func summaryTable() -> String {
        let t0 = selection.thresholds[0]
        var s = ""
        if let w = selection.winner { s += "**Winner: `\(w)`** (coherence ≥ \(fmt(t0)))\n\n" }
        s += "| Condition | Winner Δ | Baseline Probe Δ | Benefit | Best variant (Δ) |\n|---|---|---|---|---|\n"
        for r in selection.summary {
            s += "| \(r.condition) | \(r.winnerDelta.map(signed) ?? "–") | \(r.probeDelta.map(signed) ?? "–") | \(r.benefit.map(signed) ?? "–") | \(r.bestVariant.map { "\($0) (\(signed(r.bestDelta ?? 0)))" } ?? "–") |\n"
        }
        let groups = selection.groupAverages(threshold: t0)
        if !groups.isEmpty, selection.conditions.count > 1 {
            s += "\n**Across conditions (mean best Δ at coherence ≥ \(fmt(t0))):**\n\n| Group | mean Δ |\n|---|---|\n"
            for g in groups { s += "| \(g.name) | \(g.mean.map(signed) ?? "–") |\n" }
        }
        return s
    }

    // MARK: HTML

    public func html() throws -> String {
        var body = "<h1>Experiment \(esc(spec.name))</h1>\n"
        body += markdownToHTML(try setupMarkdown())
        var scans: Set<String> = []
        for c in selection.conditions {
            body += "<h2>\(esc(c.model)), \(esc(c.trait))</h2>\n"
            if scans.insert(c.model).inserted, let json = try store.artifact(model: c.model, kind: "scan"),
               let scan = try? JSONDecoder().decode(ScanResult.self, from: Data(json.utf8)) {
                body += "<h3>Massive dims</h3>\n<div class=\"plot\">\(scan.svg())</div>\n"
            }
            body += markdownToHTML(conditionMarkdown(c))
            body += "<h3>Trait (solid) and coherence (dashed) vs coefficient, per layer</h3>\n<div class=\"grid\">\n"
            for v in c.variants { body += "<div class=\"plot\">\(variantPlot(c, variant: v))</div>\n" }
            body += "</div>\n"
        }
        body += "<h2>Results summary</h2>\n" + markdownToHTML(summaryTable())
        body += try answerBrowser()
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>Tiller: \(esc(spec.name))</title>
        <style>
        body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
        table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:13px}
        th{background:#f3f3f3}.grid{display:flex;flex-wrap:wrap;gap:8px}.plot{overflow-x:auto}
        .ans td{vertical-align:top}.ans td.r{white-space:pre-wrap;max-width:600px}code{background:#f3f3f3;padding:0 3px}
        select,input{margin:0 .5em .5em 0}
        </style></head><body>
        \(body)
        </body></html>
        """
    }

    /// Small multiple for one variant: x = coefficient (log scale), y = 0…100; one colour per
    /// layer, trait solid, coherence dashed; the baseline trait as a grey line; the first
    /// coherence threshold dotted.
    func variantPlot(_ c: ConditionResult, variant: String) -> String {
        let rs = c.results.filter { $0.config.variant == variant }
        let w = 360.0, h = 220.0, l = 40.0, r = 10.0, t = 24.0, b = 30.0
        // x: the coefficient as the sweep gives it (relative ones share one grid across layers).
        let xs = rs.map(\.config.coefficient).filter { $0 > 0 }
        guard let lo = xs.min(), let hi = xs.max() else { return "" }
        let a = log10(lo), z = max(log10(hi), a + 1e-9)
        let pad = (z - a) * 0.05 + (z == a + 1e-9 ? 0.5 : 0)
        func X(_ v: Double) -> Double { l + (log10(v) - (a - pad)) / ((z + pad) - (a - pad)) * (w - l - r) }
        func Y(_ v: Double) -> Double { t + (1 - v / 100) * (h - t - b) }
        let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"10\">"
        s += "<text x=\"\(l)\" y=\"14\" font-size=\"12\">\(esc(variant))</text>"
        s += "<rect x=\"\(l)\" y=\"\(t)\" width=\"\(w - l - r)\" height=\"\(h - t - b)\" fill=\"none\" stroke=\"#999\"/>"
        for v in [0.0, 50, 100] { s += "<text x=\"\(l - 4)\" y=\"\(Y(v) + 3)\" text-anchor=\"end\">\(Int(v))</text>" }
        for v in Array(Set(xs)).sorted() {
            s += "<text x=\"\(X(v))\" y=\"\(h - b + 12)\" text-anchor=\"middle\">\(fmtShort(v))</text>"
        }
        if let bt = c.baseline?.trait {
            s += "<line x1=\"\(l)\" x2=\"\(w - r)\" y1=\"\(Y(bt))\" y2=\"\(Y(bt))\" stroke=\"#aaa\"/>"
        }
        let th = selection.thresholds[0]
        s += "<line x1=\"\(l)\" x2=\"\(w - r)\" y1=\"\(Y(th))\" y2=\"\(Y(th))\" stroke=\"#aaa\" stroke-dasharray=\"1,3\"/>"
        let layers = Array(Set(rs.map(\.config.layer))).sorted()
        for (i, layer) in layers.enumerated() {
            let col = palette[i % palette.count]
            let pts = rs.filter { $0.config.layer == layer }.sorted { $0.config.coefficient < $1.config.coefficient }
            func line(_ f: (ConfigResult) -> Double?, dash: String) -> String {
                let p = pts.compactMap { r in f(r).map { "\(X(r.config.coefficient)),\(Y($0))" } }
                guard !p.isEmpty else { return "" }
                return "<polyline fill=\"none\" stroke=\"\(col)\" stroke-width=\"1.5\"\(dash) points=\"\(p.joined(separator: " "))\"/>"
                    + pts.compactMap { r in f(r).map { "<circle cx=\"\(X(r.config.coefficient))\" cy=\"\(Y($0))\" r=\"2\" fill=\"\(col)\"/>" } }.joined()
            }
            s += line({ $0.trait }, dash: "") + line({ $0.coherence }, dash: " stroke-dasharray=\"4,3\"")
            s += "<text x=\"\(w - r - 4)\" y=\"\(t + 12 + Double(i) * 11)\" text-anchor=\"end\" fill=\"\(col)\">L\(layer)</text>"
        }
        s += "<text x=\"\((l + w - r) / 2)\" y=\"\(h - 4)\" text-anchor=\"middle\">\(rs.first?.config.scale == .relative ? "coefficient × layer norm (log)" : "coefficient (log)")</text></svg>"
        return s
    }

    /// Every answer with its scores, filterable by condition, variant, layer and text.
    func answerBrowser() throws -> String {
        let scores = Dictionary(try store.scores().map { (itemKey($0.configId, $0.question, $0.sample), $0) }, uniquingKeysWith: { a, _ in a })
        let configs = Dictionary(try store.configurations().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var rows = ""
        var variants = Set<String>(), layers = Set<Int>(), conds = Set<String>()
        for g in try store.generations() {
            guard let c = configs[g.configId] else { continue }
            let sc = scores[itemKey(g.configId, g.question, g.sample)]
            let cond = "\(c.model) \(c.trait)"
            variants.insert(c.variant); layers.insert(c.layer); conds.insert(cond)
            rows += "<tr data-c=\"\(esc(cond))\" data-v=\"\(esc(c.variant))\" data-l=\"\(c.layer)\"><td>\(esc(cond))</td><td>\(esc(c.variant))</td>"
            rows += "<td>\(c.isBaseline ? "–" : "L\(c.layer)")</td><td>\(c.isBaseline ? "0" : fmt(c.absoluteCoefficient))</td>"
            rows += "<td>\(fmt1(sc?.trait))</td><td>\(fmt1(sc?.coherence))</td><td>\(esc(g.prompt))</td><td class=\"r\">\(esc(g.response))</td></tr>\n"
        }
        func options(_ xs: [String]) -> String { xs.map { "<option>\(esc($0))</option>" }.joined() }
        return """
        <h2>Steered answers</h2>
        <div><select id="fc"><option value="">all conditions</option>\(options(conds.sorted()))</select>
        <select id="fv"><option value="">all variants</option>\(options(variants.sorted()))</select>
        <select id="fl"><option value="">all layers</option>\(options(layers.sorted().filter { $0 >= 0 }.map(String.init)))</select>
        <input id="ft" placeholder="search text"></div>
        <table class="ans" id="answers"><thead><tr><th>condition</th><th>variant</th><th>layer</th><th>coef</th><th>trait</th><th>coh</th><th>question</th><th>answer</th></tr></thead>
        <tbody>
        \(rows)</tbody></table>
        <script>
        (function(){var f=['fc','fv','fl','ft'].map(function(i){return document.getElementById(i)});
        function apply(){var c=f[0].value,v=f[1].value,l=f[2].value,t=f[3].value.toLowerCase();
        document.querySelectorAll('#answers tbody tr').forEach(function(r){
        var ok=(!c||r.dataset.c===c)&&(!v||r.dataset.v===v)&&(!l||r.dataset.l===l)&&(!t||r.textContent.toLowerCase().indexOf(t)>=0);
        r.style.display=ok?'':'none';});}
        f.forEach(function(e){e.addEventListener('input',apply);e.addEventListener('change',apply)});})();
        </script>
        """
    }
}

// MARK: - Formatting

func fmt(_ x: Double) -> String {
    if x == x.rounded(), abs(x) < 1e9 { return String(Int64(x)) }
    if abs(x) >= 100 { return String(format: "%.0f", x) }
    return String(format: "%.3g", x)
}
func fmtShort(_ x: Double) -> String { abs(x) >= 1000 ? String(format: "%.3gk", x / 1000) : fmt(x) }
func fmt1(_ x: Double?) -> String { x.map { String(format: "%.1f", $0) } ?? "–" }
func signed(_ x: Double) -> String { String(format: "%+.1f", x) }

func esc(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}

/// The few Markdown forms the report writes (paragraphs, bullet lists, tables, **bold**,
/// `code`) as HTML.
func markdownToHTML(_ md: String) -> String {
    func inline(_ s: String) -> String {
        var out = esc(s).replacingOccurrences(of: "\\|", with: "|")
        while let a = out.range(of: "**"), let b = out.range(of: "**", range: a.upperBound..<out.endIndex) {
            out = out.replacingCharacters(in: a.lowerBound..<b.upperBound, with: "<b>" + out[a.upperBound..<b.lowerBound] + "</b>")
        }
        while let a = out.range(of: "`"), let b = out.range(of: "`", range: a.upperBound..<out.endIndex) {
            out = out.replacingCharacters(in: a.lowerBound..<b.upperBound, with: "<code>" + out[a.upperBound..<b.lowerBound] + "</code>")
        }
        return out
    }
    var html = ""
    var list = false, table = false, header = false
    func close() {
        if list { html += "</ul>\n"; list = false }
        if table { html += "</table>\n"; table = false }
    }
    for raw in md.components(separatedBy: "\n") {
        let line = raw.trimmingCharacters(in: .whitespaces)
        if line.hasPrefix("|") {
            if line.hasPrefix("|---") { continue }
            if !table { close(); html += "<table>\n"; table = true; header = true }
            let cells = line.dropFirst().dropLast().components(separatedBy: " | ").map { $0.trimmingCharacters(in: .whitespaces) }
            let tag = header ? "th" : "td"
            html += "<tr>" + cells.map { "<\(tag)>\(inline($0))</\(tag)>" }.joined() + "</tr>\n"
            header = false
        } else if line.hasPrefix("- ") {
            if !list { close(); html += "<ul>\n"; list = true }
            html += "<li>\(inline(String(line.dropFirst(2))))</li>\n"
        } else if line.hasPrefix("#") {
            close()
            let level = min(line.prefix(while: { $0 == "#" }).count, 6)
            html += "<h\(level)>\(inline(String(line.dropFirst(level)).trimmingCharacters(in: .whitespaces)))</h\(level)>\n"
        } else if line.isEmpty {
            close()
        } else {
            close()
            html += "<p>\(inline(line))</p>\n"
        }
    }
    close()
    return html
}
