import ArgumentParser
import Foundation
import TillerEval
import TillerModels
import TillerSteering
import TillerTensor
import TillerTokenizers

/// `tiller project`: the projection of each data row's activations on a trait vector, for
/// monitoring (which training samples or prompts point along the trait before any steering).
struct Project: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Project prompts (or prompt + response) onto a trait vector at one layer; AUC when rows carry labels.",
        discussion: """
        --data is JSONL, one object per line: {"prompt": "...", "response": "...", "label": true} or \
        {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}; an optional \
        "system" string; "response" (or a final assistant message) is optional, "label" (true/false or 1/0) too; \
        other fields are copied to the output. The prompt is formatted as extraction and steering format it \
        (the chat template, or the base-model Question/Answer format). Each row's value is a·v/|v| for \
        a = resid_post.LAYER: the mean over the response tokens when the row has a response, else the last \
        prompt token. The output (--out, .jsonl or .csv) is written as rows finish, and an interrupted run \
        resumes where it stopped when rerun with the same arguments.
        """)

    @OptionGroup var deviceOption: DeviceOption
    @Option(help: modelHelp)
    var model: String
    @Option(help: "Steering vector file (safetensors `layer.L` tensors, or a llama.cpp control-vector GGUF).")
    var vector: String
    @Option(help: "Layer whose resid_post is projected (default: the vector's only layer).")
    var layer: Int?
    @Option(help: "JSONL data file.")
    var data: String
    @Option(help: "Output file: .jsonl or .csv (default: JSONL on standard output).")
    var out: String?
    @Option(name: .customLong("batch-size"), help: "Sequences per forward pass.")
    var batchSize = 16
    @Option(help: "Seed of the AUC's bootstrap interval.")
    var seed: UInt64 = 0
    @Flag(help: "Replace an existing --out file instead of resuming it.")
    var overwrite = false

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        if let out, !(out.hasSuffix(".jsonl") || out.hasSuffix(".csv")) {
            throw ValidationError("--out must end in .jsonl or .csv")
        }
    }

    func run() throws {
        // Everything checkable from the files comes before the model is loaded.
        let rows = try Projection.readData(path: data)
        let file = try SteeringVectorFile.load(path: vector)
        let chosen: Int
        if let layer {
            guard file.vectors[layer] != nil else {
                throw CLIError("\(vector): no vector for layer \(layer) (it has layers \(file.layers.map(String.init).joined(separator: ", ")))")
            }
            chosen = layer
        } else {
            guard file.layers.count == 1 else {
                throw CLIError("\(vector) has vectors for layers \(file.layers.map(String.init).joined(separator: ", ")): choose one with --layer")
            }
            chosen = file.layers[0]
        }
        var sink = try ProjectionSink(path: out, settings: settingsRecord(layer: chosen), overwrite: overwrite)
        defer { sink.close() }

        let lm = try LanguageModel.load(model, backend: try deviceOption.backend())
        guard let tokenizer = lm.tokenizer else { throw CLIError("\(model): model has no tokenizer") }
        let v = try file.vector(layer: chosen, hidden: lm.config.hiddenSize)
        if file.metadata.site != HookPoint.Kind.residPost.rawValue {
            note("warning: \(vector) was extracted at \(file.metadata.site); projecting at resid_post.\(chosen)")
        }
        let tokens = try rows.enumerated().map { i, r in
            do { return try Projection.tokens(r, tokenizer: tokenizer) } catch { throw CLIError("\(data): row \(i + 1): \(error)") }
        }
        var values: [(position: ProjectionPosition, value: Double)] = sink.existing
        if !values.isEmpty { note("resuming: \(values.count) of \(rows.count) rows already in \(out ?? "")") }
        let progress = ProgressBar("project", total: rows.count, unit: "rows")
        progress.advance(by: values.count)
        let chunk = max(batchSize * 4, 64)
        var start = values.count
        while start < rows.count {
            let end = min(start + chunk, rows.count)
            var last = 0
            let part = try Projection.project(model: lm, vector: v, layer: chosen, rows: Array(tokens[start..<end]), batchSize: batchSize) { done in
                progress.advance(by: done - last)
                last = done
            }
            for (k, p) in part.enumerated() {
                let i = start + k
                try sink.write(row: i + 1, input: rows[i], tokens: tokens[i].prompt.count + tokens[i].response.count,
                               layer: chosen, position: p.position, value: p.value)
            }
            values += part
            start = end
        }
        progress.finish()

        let counts = Dictionary(grouping: values, by: \.position).mapValues(\.count)
        note("projected \(values.count) rows at resid_post.\(chosen) (" +
             ProjectionPosition.allCases.compactMap { p in counts[p].map { "\($0) at \(p.rawValue)" } }.joined(separator: ", ") + ")")
        let labelled = zip(rows, values).compactMap { r, v in r.label.map { ($0, v.value, v.position) } }
        if !labelled.isEmpty {
            let pos = labelled.filter { $0.0 }.map(\.1), neg = labelled.filter { !$0.0 }.map(\.1)
            if let ci = Statistics.aucBootstrapCI(positive: pos, negative: neg, seed: seed) {
                let mixed = Set(labelled.map(\.2)).count > 1 ? " (warning: the labelled rows mix response and prompt:last positions)" : ""
                print(String(format: "AUC %.3f [95%% CI %.3f, %.3f] (label true above false; n = %d true, %d false)",
                             ci.estimate, ci.low, ci.high, pos.count, neg.count) + mixed)
            } else {
                print("AUC: not computed (labels need both true and false rows; have \(pos.count) true, \(neg.count) false)")
            }
        }
    }

    func settingsRecord(layer: Int) throws -> [String: String] {
        ["format": "tiller.project/1", "model": model, "vector": vector, "layer": "\(layer)",
         "data": data, "data_fingerprint": try fingerprint(data)]
    }
}

/// The fingerprint of a file's bytes and its size: enough to tell that a resumed run reads the same data.
func fingerprint(_ path: String) throws -> String {
    guard let d = FileManager.default.contents(atPath: path) else { throw CLIError("\(path): cannot read") }
    var f = Fingerprint()
    f.add(bytes: d)
    return "\(f.hex)-\(d.count)"
}

/// Where projections go: JSONL or CSV, appended row by row, with a settings sidecar
/// (`OUT.settings.json`) so a rerun resumes only the same job and never mixes two.
struct ProjectionSink {
    let path: String?
    let csv: Bool
    static let csvHeader = "row,id,label,position,layer,tokens,projection\n"
    var handle: FileHandle?
    /// Rows already in the file when resuming.
    var existing: [(position: ProjectionPosition, value: Double)] = []

    init(path: String?, settings: [String: String], overwrite: Bool) throws {
        self.path = path
        csv = path?.hasSuffix(".csv") ?? false
        guard let path else { return }
        let fm = FileManager.default
        let sidecar = path + ".settings.json"
        let encoded = try JSONSerialization.data(withJSONObject: settings, options: [.sortedKeys])
        if fm.fileExists(atPath: path) && !overwrite {
            guard let old = fm.contents(atPath: sidecar),
                  let oldSettings = try? JSONSerialization.jsonObject(with: old) as? [String: String] else {
                throw CLIError("\(path) exists but has no readable \(sidecar), so it cannot be resumed; pass --overwrite to replace it, or choose another --out")
            }
            guard oldSettings == settings else {
                let diff = settings.keys.sorted().filter { oldSettings[$0] != settings[$0] }
                throw CLIError("\(path) was written with other settings (\(diff.joined(separator: ", ")) differ); pass --overwrite to replace it, or choose another --out")
            }
            existing = try Self.readBack(path: path, csv: csv)
        } else {
            fm.createFile(atPath: path, contents: csv ? Data(Self.csvHeader.utf8) : Data())
            try encoded.write(to: URL(fileURLWithPath: sidecar))
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw CLIError("\(path): cannot open for writing") }
        handle = h
        // A line cut by an interruption is dropped: rewrite the file up to the last whole row.
        let keep = try Self.wholeLinesLength(path: path)
        try h.truncate(atOffset: UInt64(keep))
        try h.seekToEnd()
        if csv && keep == 0 { try h.write(contentsOf: Data(Self.csvHeader.utf8)) }
    }

    static func wholeLinesLength(path: String) throws -> Int {
        guard let d = FileManager.default.contents(atPath: path) else { return 0 }
        guard let lastNewline = d.lastIndex(of: UInt8(ascii: "\n")) else { return 0 }
        return lastNewline + 1
    }

    /// The (position, value) of each whole row already written, checking rows are 1, 2, 3, ….
    static func readBack(path: String, csv: Bool) throws -> [(position: ProjectionPosition, value: Double)] {
        let d = FileManager.default.contents(atPath: path) ?? Data()
        let text = String(decoding: d.prefix(try wholeLinesLength(path: path)), as: UTF8.self)
        var lines = text.split(separator: "\n").map(String.init)
        if csv { lines = Array(lines.dropFirst()) }
        var out: [(position: ProjectionPosition, value: Double)] = []
        for (i, line) in lines.enumerated() {
            let row: Int?, position: ProjectionPosition?, value: Double?
            if csv {
                let f = parseCSVLine(line)
                row = Int(f.first ?? ""); position = f.count == 7 ? ProjectionPosition(rawValue: f[3]) : nil
                value = f.count == 7 ? Double(f[6]) : nil
            } else {
                let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
                row = (o?["row"] as? NSNumber)?.intValue
                position = (o?["position"] as? String).flatMap(ProjectionPosition.init(rawValue:))
                value = (o?["projection"] as? NSNumber)?.doubleValue
            }
            guard row == i + 1, let position, let value else {
                throw CLIError("\(path): line \(i + (csv ? 2 : 1)) is not row \(i + 1) of a projection output; pass --overwrite to start again")
            }
            out.append((position, value))
        }
        return out
    }

    mutating func write(row: Int, input: ProjectionInput, tokens: Int, layer: Int, position: ProjectionPosition, value: Double) throws {
        var line: String
        if csv {
            let id = input.fields["id"].map { "\($0.value)" } ?? ""
            let label = input.label.map { $0 ? "1" : "0" } ?? ""
            line = [String(row), csvField(id), label, position.rawValue, String(layer), String(tokens), String(value)].joined(separator: ",")
        } else {
            var o = input.fields.mapValues(\.value)
            o["row"] = row
            o["layer"] = layer
            o["position"] = position.rawValue
            o["tokens"] = tokens
            o["projection"] = value
            line = String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
        }
        line += "\n"
        if let handle { try handle.write(contentsOf: Data(line.utf8)) } else { FileHandle.standardOutput.write(Data(line.utf8)) }
    }

    func close() { try? handle?.close() }
}

func csvField(_ s: String) -> String {
    s.contains(",") || s.contains("\"") || s.contains("\n") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
}

/// Splits one CSV line written by `csvField` (quoted fields with doubled quotes).
func parseCSVLine(_ line: String) -> [String] {
    var fields: [String] = [], cur = "", quoted = false
    var chars = Array(line)[...]
    while let c = chars.popFirst() {
        if quoted {
            if c == "\"" {
                if chars.first == "\"" { cur.append("\""); chars.removeFirst() } else { quoted = false }
            } else { cur.append(c) }
        } else if c == "\"" { quoted = true }
        else if c == "," { fields.append(cur); cur = "" }
        else { cur.append(c) }
    }
    fields.append(cur)
    return fields
}
