import Foundation
import TillerExperiment
import TillerFormats
import TillerModels
import TillerServer
import TillerSteering
import TillerTensor
import TillerTokenizers

// The parsers' fuzz driver (not part of CI; tools/fuzz/run.sh runs it): mutates the seed files of
// one format (tools/fuzz/seeds, from make_seeds.py) and feeds each mutant to the loader a user
// would hit: a GGUF becomes a model with its tokenizer and runs a forward, safetensors tensors are
// read, a tokenizer.json directory loads and encodes, a trait file and an experiment file are
// loaded and validated, a chat-completions body is decoded as the server decodes it.
//
// Each mutant is written to WORK/input.* before it is parsed, and the iteration number to
// WORK/iteration, so when a mutant crashes the process, run.sh keeps the input and restarts after
// it. Iteration i's mutations depend only on (seed, i). Errors must name the file (the chat body
// has no file: its errors must say which field is wrong): each one that does not is counted and
// printed.

/// The engine's SplitMix64 with a bounded draw.
struct Rng {
    var g: SplitMix64
    init(state: UInt64) { g = SplitMix64(seed: state) }
    mutating func next() -> UInt64 { g.next() }
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
}

enum Format: String, CaseIterable {
    case gguf, safetensors, tokenizer, trait, experiment, chat, completions

    var seeds: [String] {
        switch self {
        case .gguf: return ["tiny-llama.gguf-bin", "tiny-gemma3.gguf-bin"]
        case .safetensors: return ["tiny.safetensors"]
        case .tokenizer: return ["tokenizer.json"]
        case .trait: return ["trait.json"]
        case .experiment: return ["experiment.yaml"]
        case .chat: return ["chat.json"]
        case .completions: return ["completions.json"]
        }
    }
    var isText: Bool { ![.gguf, .safetensors].contains(self) }
}

/// One corruption of `bytes`: bit flips, random or boundary bytes, an extreme 64-bit value (a
/// count, length or offset), truncation, a deleted or duplicated chunk, a splice from the seed;
/// in text, JSON/YAML-significant characters, a number swapped for an extreme one, a line
/// deleted or duplicated.
func mutate(_ bytes: inout [UInt8], seed: [UInt8], text: Bool, rng: inout Rng) {
    func pos() -> Int {
        // Binary formats decide everything in their header: aim there most of the time.
        if !text && rng.below(10) < 7 { return rng.below(min(bytes.count, 4096)) }
        return rng.below(bytes.count)
    }
    let kinds = text ? 11 : 7
    switch rng.below(kinds) {
    case 0:
        for _ in 0...rng.below(4) { bytes[pos()] ^= UInt8(1 << rng.below(8)) }
    case 1:
        for _ in 0...rng.below(8) { bytes[pos()] = UInt8(truncatingIfNeeded: rng.next()) }
    case 2:
        guard bytes.count >= 8 else { break }
        let p = min(pos(), bytes.count - 8)
        let extremes: [UInt64] = [0, 1, .max, 1 << 63, 1 << 32, UInt64(bytes.count), 0xFFFF_FFFF, 1 << 40, 0x7FFF_FFFF]
        let v = rng.below(2) == 0 ? extremes[rng.below(extremes.count)] : rng.next()
        withUnsafeBytes(of: v.littleEndian) { bytes.replaceSubrange(p..<(p + 8), with: $0) }
    case 3:
        bytes.removeSubrange(rng.below(bytes.count)...)
    case 4:
        let p = pos()
        bytes.removeSubrange(p..<min(bytes.count, p + 1 + rng.below(32)))
    case 5:
        let p = pos()
        let chunk = Array(bytes[p..<min(bytes.count, p + 1 + rng.below(32))])
        bytes.insert(contentsOf: chunk, at: rng.below(bytes.count + 1))
    case 6:
        let from = rng.below(seed.count), to = pos()
        let n = min(1 + rng.below(64), seed.count - from, bytes.count - to)
        bytes.replaceSubrange(to..<(to + n), with: seed[from..<(from + n)])
    case 7:
        let alphabet = Array("0123456789-.,:[]{}\"'e\\ \n\t#&*!|>%@`nulltrue".utf8)
        for _ in 0...rng.below(3) { bytes[pos()] = alphabet[rng.below(alphabet.count)] }
    case 8:
        // A number becomes an extreme one.
        let digits = bytes.indices.filter { (48...57).contains(bytes[$0]) }
        guard let d = digits.isEmpty ? nil : digits[rng.below(digits.count)] else { break }
        var end = d
        while end < bytes.count && (48...57).contains(bytes[end]) { end += 1 }
        let extremes = ["-1", "0", "1e309", "-9223372036854775809", "18446744073709551616", "1.5", "NaN", "99999999999", "-0", "2147483648"]
        bytes.replaceSubrange(d..<end, with: Array(extremes[rng.below(extremes.count)].utf8))
    case 9:
        // A line is deleted or duplicated.
        let newlines = bytes.indices.filter { bytes[$0] == 10 }
        guard newlines.count >= 2 else { break }
        let i = rng.below(newlines.count - 1)
        let line = Array(bytes[(newlines[i] + 1)...newlines[i + 1]])
        if rng.below(2) == 0 { bytes.removeSubrange((newlines[i] + 1)...newlines[i + 1]) } else { bytes.insert(contentsOf: line, at: newlines[i] + 1) }
    default:
        // Invalid UTF-8 or a control character.
        let bad: [[UInt8]] = [[0xFF], [0xC3], [0xE2, 0x82], [0x00], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80]]
        bytes.insert(contentsOf: bad[rng.below(bad.count)], at: rng.below(bytes.count + 1))
    }
    if bytes.isEmpty { bytes = [0x7B] }
}

enum Outcome { case accepted, rejected, unnamed(String) }

/// Runs the loader of `format` on the file at `path`.
func exercise(_ format: Format, path: String, directory: String) -> Outcome {
    if format == .chat || format == .completions {
        // A body has no file: a rejection must be a client error that names the field at fault.
        guard let body = FileManager.default.contents(atPath: path) else { return .unnamed("cannot read \(path)") }
        guard let problem = chatServer.check(body, chat: format == .chat) else { return .accepted }
        // Errors about the body as a whole ("not valid JSON") name the body instead.
        return problem.isClientError && (problem.field != nil || problem.message.contains("body")) ? .rejected : .unnamed(problem.description)
    }
    func named(_ error: Error, _ names: [String]) -> Outcome {
        let text = "\(error)"
        return names.contains(where: { text.contains($0) }) ? .rejected : .unnamed(text)
    }
    do {
        switch format {
        case .gguf:
            let weights = try GGUFWeightSource(path: path)
            let tokenizer = try loadTokenizer(gguf: weights.gguf)
            let model = try LanguageModel(weights: weights, tokenizer: tokenizer, name: "fuzz", source: path)
            let ids = tokenizer.encode("ab a", addSpecialTokens: true).filter { $0 < model.config.vocabSize }
            _ = try model.forward([ids.isEmpty ? [0] : ids], logits: .last)
            _ = tokenizer.decode(ids, skipSpecialTokens: false)
        case .safetensors:
            let f = try SafetensorsFile(path: path)
            for info in f.tensorInfos {
                if info.dtype == .i32 { _ = try f.int32s(info.name) } else { _ = try f.floats(info.name) }
            }
        case .tokenizer:
            let t = try loadTokenizer(directory: directory)
            let ids = t.encode("The quick brown fox, 1234 <|im_end|> héllo", addSpecialTokens: true)
            _ = t.decode(ids, skipSpecialTokens: true)
        case .trait:
            let t = try Trait.load(path: path)
            try t.validate()
        case .experiment:
            let s = try ExperimentSpec.load(path: path)
            try s.validate()
            _ = try s.variantSpecs()
        case .chat, .completions:
            return .accepted // handled above
        }
        return .accepted
    } catch {
        switch format {
        case .tokenizer: return named(error, [directory])
        default: return named(error, [path])
        }
    }
}

// MARK: Main

let args = CommandLine.arguments
func option(_ name: String) -> String? { args.firstIndex(of: name).flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil } }
guard args.count >= 2, let format = Format(rawValue: args[1]) else {
    print("usage: tiller-fuzz FORMAT [--iterations N] [--start I] [--seed S] [--seeds DIR] [--work DIR]\nFORMAT: \(Format.allCases.map(\.rawValue).joined(separator: " | "))")
    exit(2)
}
let iterations = option("--iterations").flatMap(Int.init) ?? 1_000_000
let start = option("--start").flatMap(Int.init) ?? 0
let seed = option("--seed").flatMap(UInt64.init) ?? 0
let seedDir = option("--seeds") ?? "tools/fuzz/seeds"
let work = option("--work") ?? NSTemporaryDirectory() + "tiller-fuzz-\(format.rawValue)"
try FileManager.default.createDirectory(atPath: work + "/tok", withIntermediateDirectories: true)

let seeds: [[UInt8]] = try format.seeds.map { name in
    guard let d = FileManager.default.contents(atPath: seedDir + "/" + name) else {
        throw FileError(path: seedDir + "/" + name, "missing seed (run tools/fuzz/make_seeds.py)")
    }
    return Array(d)
}
// The chat body is decoded by a server on the tiny GGUF seed, with a vector `refusal` at layers 0 and 1.
let chatServer: ChatServer = try {
    let weights = try GGUFWeightSource(path: seedDir + "/tiny-llama.gguf-bin")
    let model = try LanguageModel(weights: weights, tokenizer: try loadTokenizer(gguf: weights.gguf), name: "smollm2-135m-instruct")
    let vectors = VectorStore()
    let h = model.hiddenSize
    let file = work + "/refusal.safetensors"
    let v = SteeringVectorFile(vectors: [0: [Float](repeating: 0.1, count: h), 1: [Float](repeating: -0.1, count: h)], metadata: VectorMetadata())
    try v.write(to: file)
    try vectors.add(name: "refusal", path: file)
    return try ChatServer(model: model, vectors: vectors)
}()
let ext = format.seeds[0].split(separator: ".").last.map(String.init) ?? "bin"
let input = format == .tokenizer ? work + "/tok/tokenizer.json" : work + "/input." + ext
let iterationFile = open(work + "/iteration", O_WRONLY | O_CREAT, 0o644)

// The unmutated seeds must load: otherwise every mutant is rejected for the seed's own fault.
for (i, s) in seeds.enumerated() {
    FileManager.default.createFile(atPath: input, contents: Data(s))
    if case .accepted = exercise(format, path: input, directory: work + "/tok") {} else {
        print("seed \(format.seeds[i]) does not load: \(exercise(format, path: input, directory: work + "/tok"))")
        exit(2)
    }
}

var accepted = 0, rejected = 0, unnamed = 0
var examples: [String] = []
let t0 = Date()
var lastReport = t0
for i in start..<iterations {
    var rng = Rng(state: seed &* 0x100_0000_01B3 ^ UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
    let base = seeds[rng.below(seeds.count)]
    var bytes = base
    for _ in 0...rng.below(3) { mutate(&bytes, seed: base, text: format.isText, rng: &rng) }
    var n = UInt64(i)
    _ = pwrite(iterationFile, &n, 8, 0)
    let fd = open(input, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    switch exercise(format, path: input, directory: work + "/tok") {
    case .accepted: accepted += 1
    case .rejected: rejected += 1
    case .unnamed(let message):
        unnamed += 1
        if examples.count < 8 { examples.append("iteration \(i): \(message.prefix(300))") }
    }
    let now = Date()
    if now.timeIntervalSince(lastReport) > 30 {
        lastReport = now
        let rate = Double(i + 1 - start) / now.timeIntervalSince(t0)
        FileHandle.standardError.write(Data(String(format: "%@: %d/%d (%.0f/s, ETA %.0f s)\n", format.rawValue, i + 1, iterations, rate, Double(iterations - i - 1) / rate).utf8))
    }
}
let seconds = Date().timeIntervalSince(t0)
print("\(format.rawValue): \(iterations - start) mutants (iterations \(start)..<\(iterations), seed \(seed)) in \(String(format: "%.0f", seconds)) s: \(accepted) accepted, \(rejected) rejected with an error naming the \(format == .chat || format == .completions ? "field" : "file"), \(unnamed) errors without it")
for e in examples { print("  " + e) }
exit(unnamed == 0 ? 0 : 1)
