import Foundation
import TillerEval
import TillerSteering

// `tiller report`: the steering-sweep tables and results summary in Markdown, and one
// self-contained HTML page (no network: inline CSS, SVG and a little JavaScript) with the
// massive-dim heatmap, the sweep figures, trait-vs-coherence scatters and threshold curves
// (ReportFigures.swift), and a browser of the steered answers. Everything is read from the results database.

public struct ExperimentReport {
    public let store: ResultsStore
    public let spec: ExperimentSpec
    public let selection: Selection
    /// Sweeps, cosines and threshold curves, computed once for the three files.
    let derived = ReportDerived()

    public init(store: ResultsStore) throws {
        self.store = store
        guard let spec = try store.experiment() else { throw StoreError("\(store.path): holds no experiment") }
        self.spec = spec
        selection = try Selection(store: store, spec: spec)
    }

    public func write(directory: String) throws -> (markdown: String, html: String) {
        let md = (directory as NSString).appendingPathComponent("report.md")
        let html = (directory as NSString).appendingPathComponent("report.html")
        let json = (directory as NSString).appendingPathComponent("report.json")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try markdown().write(toFile: md, atomically: true, encoding: .utf8)
        try self.html().write(toFile: html, atomically: true, encoding: .utf8)
        try reportJSON().write(to: URL(fileURLWithPath: json), options: .atomic)
        return (md, html)
    }

    /// Judge-based tables exist although the judge failed validation (or was never validated):
    /// `tiller run` then exits non-zero unless `--allow-invalid-judge`.
    public var judgeFailedButUsed: Bool {
        selection.conditions.contains { c in c.evaluator(.judge).map { !($0.validated && $0.gateValidated) } ?? false }
    }

    /// The findings of every condition and trait evaluator.
    public var findings: [Finding] {
        selection.conditions.flatMap { c in
            c.evaluators.flatMap { Findings.evaluate(c, $0, claims: spec.claims, seed: selection.splitSeed, resamples: selection.resamples) }
        }
    }

    // MARK: Markdown

    public func markdown() throws -> String {
        var s = "# Experiment \(spec.name)\n\n"
        s += try setupMarkdown()
        s += instrumentsMarkdown()
        let all = findings
        let cos = try cosines()
        for c in selection.conditions {
            s += "## \(c.model), \(c.trait)\n\n"
            s += conditionMarkdown(c, findings: all.filter { $0.condition == c.label }) + cosineMarkdown(cos.filter { $0.condition == c.label })
        }
        s += "## Results summary\n\n" + summaryTable()
        s += findingsAcrossConditions(all)
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
        s += "- Evaluators: \(spec.evaluators.map(\.rawValue).joined(separator: ", ")); judge: \(spec.judge ?? "none")\n"
        s += "- Gates: judge coherence ≥ \(spec.coherenceThresholds.map(fmt).joined(separator: ", "))"
        s += spec.evaluators.contains(.perplexity) ? "; perplexity ratio ≤ \(spec.maxPerplexityRatio.map(fmt).joined(separator: ", "))\n" : "\n"
        if spec.generatesAnswers {
            s += "- Answers: \(spec.questionsPerTrait) questions × \(spec.samplesPerQuestion) sample(s), ≤\(spec.maxNewTokens) new tokens, temperature \(fmt(spec.temperature)), seed \(spec.seed), steering at \(spec.steerPositions.rawValue) positions\n"
        }
        s += "- Selection: items split with seed \(selection.splitSeed) into a selection half (chooses each variant's layer and coefficient) and a held-out half (every Δ below, with a paired 95% bootstrap CI over held-out items, \(selection.resamples) resamples)\n"
        s += "- Stored: \(try store.count("configurations")) configurations, \(try store.count("generations")) answers, \(try store.count("scores")) scored, \(try store.count("metrics")) metric values\n\n"
        return s
    }

    public func instrumentsMarkdown() -> String {
        let rows = selection.conditions.flatMap { c in c.validations.map { (c, $0) } }
        var s = "## Instruments\n\n"
        let scoring = judgeScoring
        if let scoring, let judge = spec.judge {
            s += "Judge \(judge) scores by **\(scoring.mode.rawValue)**\(scoring.continuation.map { " (continuing an assistant message as a \($0.rawValue))" } ?? "")"
            s += scoring.mode == .digitScale ? ": its server cannot continue an assistant message, so it answered on a 0–9 scale, rescaled to 0–100.\n\n" : ".\n\n"
        }
        if rows.isEmpty {
            return s + "**⚠ No instrument was validated: no number in this report is backed by evidence that its instrument works.**\n\n"
        }
        let failedJudge = rows.filter { $0.1.instrument == "judge" && !$0.1.passed }
        if !failedJudge.isEmpty {
            s += "**⚠ JUDGE FAILED VALIDATION** (\(spec.judge ?? "")): \(Set(failedJudge.map { "\($0.1.check) \($0.1.value.map { String(format: "%.2f", $0) } ?? "n/a")" }).sorted().joined(separator: ", ")), below \(fmt(spec.judgeValidation.minAUC)). Its trait and coherence scores cannot tell known cases apart: judge-based tables are labelled and are not evidence.\n\n"
        }
        for r in rows where r.1.instrument != "judge" && !r.1.passed {
            s += "**⚠ \(r.1.instrument) failed validation** on \(r.0.label) (\(r.1.check) \(r.1.value.map { String(format: "%.2f", $0) } ?? "n/a")): its tables are labelled.\n\n"
        }
        s += "| Condition | Instrument | Check | Value | n | Pass ≥ | Result | Known cases |\n|---|---|---|---|---|---|---|---|\n"
        for (c, v) in rows {
            let instrument = v.instrument == "judge" ? scoring.map { "judge (\($0.mode.rawValue))" } ?? v.instrument : v.instrument
            s += "| \(c.label) | \(instrument) | \(v.check) | \(v.value.map { String(format: "%.3f", $0) } ?? "n/a") | \(v.n) | \(fmt(v.threshold)) | \(v.passed ? "passed" : "**FAILED**") | \(v.detail) |\n"
        }
        return s + "\n"
    }

    /// The judge's scoring mode as its cache in the results database records it (nil: no judge,
    /// or it never answered).
    var judgeScoring: JudgeScoring? {
        guard let text = spec.judge, let j = try? JudgeSpec(parsing: text) else { return nil }
        if j.backend == .local { return .teacherForced }
        return try? store.db.read { try JudgeCache.recordedScoring($0, backend: j.backend.rawValue, model: j.model) }
    }

    static func ci(_ c: ConfidenceInterval?) -> String {
        guard let c else { return "–" }
        return "\(signed(c.estimate)) [\(signed(c.low)), \(signed(c.high))]"
    }

    func status(_ e: EvaluatorResult) -> String {
        if e.validations.isEmpty { return "⚠ NOT VALIDATED" }
        if !e.validated { return e.evaluator == .judge ? "⚠ judge failed validation" : "⚠ FAILED VALIDATION" }
        if !e.gateValidated { return "⚠ its coherence gate failed validation" }
        return "validated"
    }

    /// The stored extraction record of a condition (nil for databases written before it existed).
    func extraction(_ c: ConditionResult) -> ExtractionRecord? {
        guard let json = try? store.artifact(model: c.model, trait: c.trait, kind: ExtractionRecord.kind) else { return nil }
        return try? JSONDecoder().decode(ExtractionRecord.self, from: Data(json.utf8))
    }

    func conditionMarkdown(_ c: ConditionResult, findings: [Finding]) -> String {
        var s = ""
        if let x = extraction(c) {
            s += "**Extraction:** \(x.form) at \(x.positions), \(x.positive) positive / \(x.negative) negative samples"
            if let v = x.vetting {
                s += "; judge vetting kept \(v.positiveKept)/\(v.positiveTotal) positive and \(v.negativeKept)/\(v.negativeTotal) negative"
            } else {
                s += x.form == "scenarios" && x.positions == "prompt:last" ? " (teacher-forced scenarios: no vetting needed)" : " (not vetted)"
            }
            s += "\n\n"
        }
        if let b = c.baseline {
            s += "**Baseline (unsteered), judge:** trait=\(fmt1(b.trait)), coherence=\(fmt1(b.coherence)) (\(b.answers) answers)\n\n"
        }
        for e in c.evaluators {
            s += "### \(e.evaluator.rawValue): \(e.evaluator.unit) (\(status(e)))\n\n"
            for v in e.validations + e.gateValidations {
                s += "- \(v.instrument) \(v.check) = \(v.value.map { String(format: "%.3f", $0) } ?? "n/a") (n=\(v.n), pass ≥ \(fmt(v.threshold))): \(v.passed ? "passed" : "FAILED")\n"
            }
            s += "- \(e.items) items: selection \(e.selection.count) \(list(e.selection)), held-out \(e.heldout.count) \(list(e.heldout)); baseline held-out mean \(e.baselineHeldout.map { String(format: "%.2f", $0) } ?? "–")\n\n"
            if e.heldout.count < 4 {
                s += "**⚠ Only \(e.heldout.count) held-out items: the intervals below are too wide to decide anything.**\n\n"
            }
            for g in e.gates {
                if g == .none {
                    s += "**⚠ No coherence gate** (add the perplexity evaluator): selection may choose configurations that break the model.\n\n"
                }
                s += "**Best per variant (\(g); chosen on the selection half, Δ on the held-out half)\(e.validated && e.gateValidated ? "" : " — \(status(e)), not evidence"):**\n\n"
                s += "| Variant | Δ held-out [95% CI] | n | Δ selection | Coef | Coef (×norm) | Layer | Gate value | vs uncleaned [95% CI] |\n|---|---|---|---|---|---|---|---|---|\n"
                for b in e.best[g] ?? [] {
                    let vs = b.vsUncleaned.map { "\(Self.ci($0))\(b.noSignificantDifference ? " no significant difference" : "")" } ?? "–"
                    s += "| \(b.variant) | \(Self.ci(b.delta)) | \(b.delta.n) | \(signed(b.selectionDelta)) | \(fmt(b.config.absoluteCoefficient)) | \(b.relativeCoefficient.map { fmt($0) } ?? "–") | L\(b.config.layer) | \(b.gateValue.map { String(format: "%.2f", $0) } ?? "–") | \(vs) |\n"
                }
                let missing = c.variants.filter { v in !(e.best[g] ?? []).contains { $0.variant == v } }
                if !missing.isEmpty { s += "\nNo configuration passes the gate (\(g)): \(missing.joined(separator: ", "))\n" }
                s += "\n"
            }
            let mine = findings.filter { $0.evaluator == e.evaluator.rawValue }
            if !mine.isEmpty {
                s += "**Findings (\(e.evaluator.rawValue), paired on held-out items):**\n\n"
                s += "| Claim | Gate | Verdict | Δ [95% CI] | n | A | B |\n|---|---|---|---|---|---|---|\n"
                for f in mine {
                    let d = f.delta.map { "\(signed($0)) [\(signed(f.ciLow!)), \(signed(f.ciHigh!))]" } ?? "–"
                    s += "| \(f.title) | \(f.threshold) | \(f.verdict.rawValue)\(f.thresholdSensitive ? " (threshold-sensitive)" : "") | \(d) | \(f.n) | \(f.sideA) | \(f.sideB)\(f.note.map { " (\($0))" } ?? "") |\n"
                }
                s += "\n"
            }
        }
        if !c.perplexityRatio.isEmpty || !c.repetition.isEmpty {
            let best = Set(c.evaluators.flatMap { e in e.best.values.flatMap { $0.map(\.config.id) } })
            s += "**Cost of the selected configurations** (perplexity on neutral text ÷ unsteered; share of repeated word bigrams in answers):\n\n"
            s += "| Configuration | Perplexity ratio | Repetition |\n|---|---|---|\n"
            let base = c.results.first(where: { $0.config.isBaseline })?.config.id ?? "\(c.model)/\(c.trait)/baseline"
            for id in [base] + best.sorted() {
                s += "| \(id) | \(c.perplexityRatio[id].map { String(format: "%.3f", $0) } ?? "–") | \(c.repetition[id].map { String(format: "%.3f", $0) } ?? "–") |\n"
            }
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

    func list(_ xs: [Int]) -> String { xs.count > 24 ? "[\(xs.prefix(24).map(String.init).joined(separator: ", ")), …]" : "[\(xs.map(String.init).joined(separator: ", "))]" }

    public func summaryTable() -> String {
        var s = ""
        if let w = selection.winner { s += "**Winner: `\(w)`** (\(spec.winner == nil ? "best mean selection-half Δ" : "as the experiment file names it"); every Δ is held-out with its 95% CI)\n\n" }
        s += "| Condition | Evaluator | Gate | Winner Δ [CI] | Baseline Probe Δ [CI] | Benefit [CI] | Best variant (held-out Δ [CI]) |\n|---|---|---|---|---|---|---|\n"
        for r in selection.summary {
            let ev = r.validated ? r.evaluator.rawValue : "\(r.evaluator.rawValue) ⚠ not validated"
            let benefit = r.benefit.map { "\(Self.ci($0))\($0.excludesZero ? "" : " n.s.")" } ?? "–"
            s += "| \(r.condition) | \(ev) | \(r.gate) | \(Self.ci(r.winner?.delta)) | \(Self.ci(r.probe?.delta)) | \(benefit) | \(r.best.map { "\($0.variant) (\(Self.ci($0.delta)))" } ?? "–") |\n"
        }
        return s + "\n"
    }

    /// Rows are the claims, columns the conditions (each evaluator), cells the verdict at the
    /// first gate with Δ [CI].
    func findingsAcrossConditions(_ all: [Finding]) -> String {
        guard !all.isEmpty else { return "" }
        var cols: [String] = []
        for f in all { let k = "\(f.condition) (\(f.evaluator))"; if !cols.contains(k) { cols.append(k) } }
        var claims: [String] = []
        for f in all where !claims.contains(f.title) { claims.append(f.title) }
        var s = "## Findings across conditions\n\nThe built-in cleaning claims are matched: each compares variants of one method (and cleaning mode), one row per family the experiment holds, and a pooled row (per held-out item the mean of the families' paired differences, bootstrapped over items). Verdict at the first gate (supported: CI above 0; contradicted: below 0; inconclusive: holds 0); † the verdict changes with the gate threshold.\n\n"
        s += "| Claim | " + cols.joined(separator: " | ") + " |\n|---|" + cols.map { _ in "---|" }.joined() + "\n"
        for cl in claims {
            s += "| \(cl) |"
            for col in cols {
                let f = all.first { "\($0.condition) (\($0.evaluator))" == col && $0.title == cl }
                if let f {
                    let d = f.delta.map { " \(signed($0)) [\(signed(f.ciLow!)), \(signed(f.ciHigh!))]" } ?? ""
                    s += " \(f.verdict.rawValue)\(f.thresholdSensitive ? " †" : "")\(d) |"
                } else { s += " – |" }
            }
            s += "\n"
        }
        return s + "\n"
    }

    // MARK: report.json

    /// `tiller.report/1`: the held-out results, baselines, validations and findings as data.
    public func reportJSON() throws -> Data {
        func ci(_ c: ConfidenceInterval?) -> Any {
            guard let c else { return NSNull() }
            return ["delta": c.estimate, "ci_low": c.low, "ci_high": c.high, "n": c.n, "level": c.level] as [String: Any]
        }
        var conds: [[String: Any]] = []
        for c in selection.conditions {
            var evals: [[String: Any]] = []
            for e in c.evaluators {
                var best: [[String: Any]] = []
                for g in e.gates {
                    for b in e.best[g] ?? [] {
                        var row: [String: Any] = [
                            "gate": g.description, "variant": b.variant, "layer": b.config.layer, "coef": b.config.absoluteCoefficient,
                            "coef_relative": b.relativeCoefficient ?? NSNull(), "delta": b.delta.estimate, "ci_low": b.delta.low,
                            "ci_high": b.delta.high, "n": b.delta.n, "split": "heldout", "selection_delta": b.selectionDelta,
                            "gate_value": b.gateValue ?? NSNull(), "no_significant_difference": b.noSignificantDifference,
                        ]
                        if let u = b.uncleaned { row["vs_uncleaned"] = ["variant": u, "diff": ci(b.vsUncleaned)] as [String: Any] }
                        best.append(row)
                    }
                }
                evals.append([
                    "evaluator": e.evaluator.rawValue, "unit": e.evaluator.unit, "validated": e.validated && e.gateValidated,
                    "items": e.items, "selection_items": e.selection, "heldout_items": e.heldout,
                    "baseline_heldout_mean": e.baselineHeldout ?? NSNull(), "best": best,
                ])
            }
            let jt = c.validations.first { $0.instrument == "judge" && $0.check == "trait_auc" }
            let jc = c.validations.first { $0.instrument == "judge" && $0.check == "coherence_auc" }
            var cond: [String: Any] = [
                "model": c.model, "trait": c.trait, "evaluators": evals,
                "baseline": ["judge_trait": c.baseline?.trait ?? NSNull(), "judge_coherence": c.baseline?.coherence ?? NSNull(),
                             "answers": c.baseline?.answers ?? 0] as [String: Any],
                "validations": c.validations.map { ["instrument": $0.instrument, "check": $0.check, "value": $0.value ?? NSNull(), "n": $0.n,
                                                    "threshold": $0.threshold, "passed": $0.passed, "detail": $0.detail] as [String: Any] },
            ]
            cond["extraction"] = extraction(c).map { x -> [String: Any] in
                ["form": x.form, "positions": x.positions, "positive": x.positive, "negative": x.negative,
                 "vetting": x.vetting.map { ["pos_kept": $0.positiveKept, "pos_total": $0.positiveTotal,
                                             "neg_kept": $0.negativeKept, "neg_total": $0.negativeTotal] as [String: Any] } ?? NSNull()]
            } ?? NSNull()
            cond["judge_validation"] = (jt == nil && jc == nil) ? NSNull() : [
                "trait_auc": jt?.value ?? NSNull(), "coherence_auc": jc?.value ?? NSNull(),
                "passed": (jt?.passed ?? false) && (jc?.passed ?? false),
            ] as [String: Any]
            conds.append(cond)
        }
        let summary: [[String: Any]] = selection.summary.map { r in
            ["condition": r.condition, "evaluator": r.evaluator.rawValue, "validated": r.validated, "gate": r.gate.description,
             "winner": r.winner.map { ["variant": $0.variant, "heldout": ci($0.delta)] as [String: Any] } ?? NSNull(),
             "probe": r.probe.map { ci($0.delta) } ?? NSNull(), "benefit": ci(r.benefit),
             "best": r.best.map { ["variant": $0.variant, "heldout": ci($0.delta)] as [String: Any] } ?? NSNull()]
        }
        let enc = JSONEncoder()
        // Every finding has every field: its family (null for claims that are not matched), and
        // null Δ, CI and note where there are none.
        let fs = (try JSONSerialization.jsonObject(with: try enc.encode(findings)) as? [[String: Any]] ?? []).map { f -> [String: Any] in
            var f = f
            for k in ["family", "delta", "ci_low", "ci_high", "note"] where f[k] == nil { f[k] = NSNull() }
            return f
        }
        let root: [String: Any] = [
            "schema": "tiller.report/1", "experiment": spec.name, "split_seed": selection.splitSeed, "resamples": selection.resamples,
            "winner": selection.winner ?? NSNull(), "conditions": conds, "summary": summary, "findings": fs,
            "sweeps": sweepsJSON(try sweeps()), "cosines": cosinesJSON(try cosines()), "threshold_curves": thresholdCurvesJSON(try thresholdCurves()),
            "judge": spec.judge.map { j -> Any in
                ["spec": j, "scoring_mode": judgeScoring?.mode.rawValue ?? NSNull(),
                 "continuation": judgeScoring?.continuation?.rawValue ?? NSNull()] as [String: Any]
            } ?? NSNull(),
        ]
        return try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
    }

    // MARK: HTML

    public func html() throws -> String {
        var body = "<h1>Experiment \(esc(spec.name))</h1>\n"
        body += markdownToHTML(try setupMarkdown()) + markdownToHTML(instrumentsMarkdown())
        let all = findings
        let cos = try cosines()
        let figs = figures(sweeps: try sweeps(), curves: try thresholdCurves())
        var scans: Set<String> = []
        for c in selection.conditions {
            body += "<h2>\(esc(c.model)), \(esc(c.trait))</h2>\n"
            if scans.insert(c.model).inserted, let json = try store.artifact(model: c.model, kind: "scan"),
               let scan = try? JSONDecoder().decode(ScanResult.self, from: Data(json.utf8)) {
                body += "<h3>Massive dims</h3>\n<div class=\"plot\">\(scan.svg())</div>\n"
            }
            body += markdownToHTML(conditionMarkdown(c, findings: all.filter { $0.condition == c.label }))
            body += markdownToHTML(cosineMarkdown(cos.filter { $0.condition == c.label }))
            for f in figs where f.condition == c.label {
                body += "<h3>\(esc(f.title))</h3>\n<div class=\"grid\">\n" + f.figures.map { "<div class=\"plot\">\($0.svg)</div>\n" }.joined() + "</div>\n"
            }
        }
        body += "<h2>Results summary</h2>\n" + markdownToHTML(summaryTable()) + markdownToHTML(findingsAcrossConditions(all))
        body += try answerBrowser()
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>Tiller: \(esc(spec.name))</title>
        <style>
        body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
        table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:13px}
        th{background:#f3f3f3}.grid{display:flex;flex-wrap:wrap;gap:8px}.plot{overflow-x:auto;max-width:100%}.plot svg{max-width:100%;height:auto}
        .ans td{vertical-align:top}.ans td.r{white-space:pre-wrap;max-width:600px}code{background:#f3f3f3;padding:0 3px}
        select,input{margin:0 .5em .5em 0}
        </style></head><body>
        \(body)
        </body></html>
        """
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

/// What a condition's vectors were extracted from: stored by the extraction stage, shown in the
/// report beside the vetting survivors.
public struct ExtractionRecord: Codable, Sendable, Equatable {
    public static let kind = "extraction"
    public var form: String
    public var positions: String
    public var positive: Int
    public var negative: Int
    public var vetting: VettingReport?
}
