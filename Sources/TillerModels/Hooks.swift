import Foundation
import TillerTensor

// Hook points, capture and steering. One definition of "where" (HookPoint) and "which tokens"
// (positions relative to the prompt) serves capture, steering and ablation alike.
//
// `resid_post.L` is the output of block L (0-based), after steering edits at L are applied.
// It equals transformers' `hidden_states[L+1]` for every L but the last: transformers applies the
// final norm to its last entry, while Tiller's last `resid_post` is the raw block output.

/// A named point in the forward pass, TransformerLens style (`resid_post.12`).
public struct HookPoint: Hashable, Sendable, CustomStringConvertible, Codable {
    public enum Kind: String, Sendable, Codable {
        case residPost = "resid_post"
    }
    public var kind: Kind
    public var layer: Int

    public init(_ kind: Kind, layer: Int) {
        self.kind = kind
        self.layer = layer
    }
    public static func residPost(_ layer: Int) -> HookPoint { HookPoint(.residPost, layer: layer) }

    /// Parses "resid_post.L".
    public init?(_ name: String) {
        let parts = name.split(separator: ".")
        guard parts.count == 2, let k = Kind(rawValue: String(parts[0])), let l = Int(parts[1]), l >= 0 else { return nil }
        self.init(k, layer: l)
    }
    public var description: String { "\(kind.rawValue).\(layer)" }
}

/// Which tokens of a sequence a capture reads. "Prompt" tokens are positions < promptLength;
/// everything after is "response" (generated tokens, or the continuation given to `forward`).
/// That is the one meaning of "response" in Tiller: steering (`SteeringPositions.response`),
/// capture and extraction position sets (`response`, `response:K`) all count from the prompt's end.
public enum CapturePositions: Sendable, Equatable, Hashable {
    case all
    case prompt
    /// Every response row.
    case response
    /// The first k response tokens.
    case firstResponse(Int)
    /// The last prompt token (the one whose logits produce the first response token).
    case lastPrompt
    /// One row: the mean over response tokens.
    case meanResponse

    func selects(position p: Int, promptLength: Int) -> Bool {
        switch self {
        case .all: return true
        case .prompt: return p < promptLength
        case .response, .meanResponse: return p >= promptLength
        case .firstResponse(let k): return p >= promptLength && p < promptLength + k
        case .lastPrompt: return p == promptLength - 1
        }
    }
}

/// Which residual streams to record: `resid_post.L` for each layer, at the selected positions.
public struct CaptureSpec: Sendable, Equatable {
    public var layers: [Int]
    public var positions: CapturePositions

    public init(layers: [Int], positions: CapturePositions = .all) {
        self.layers = layers
        self.positions = positions
    }
    public init(hooks: [HookPoint], positions: CapturePositions = .all) {
        self.layers = hooks.map(\.layer)
        self.positions = positions
    }
    public static let none = CaptureSpec(layers: [], positions: .all)
    public var isEmpty: Bool { layers.isEmpty }
}

/// Activations captured for one sequence: per layer a row-major [rowCount, hidden] buffer.
public struct CapturedActivations: Sendable {
    public let hidden: Int
    /// Absolute token positions of the rows (for `.meanResponse`: the positions averaged).
    public internal(set) var positions: [Int]
    public internal(set) var layers: [Int: [Float]]
    /// Rows per layer (1 for `.meanResponse` when it saw at least one response token).
    public internal(set) var rowCount: Int

    public init(hidden: Int, positions: [Int] = [], layers: [Int: [Float]] = [:], rowCount: Int = 0) {
        self.hidden = hidden
        self.positions = positions
        self.layers = layers
        self.rowCount = rowCount
    }

    /// The captured rows at `resid_post.layer` ([rowCount·hidden], row-major), or nil if not captured.
    public subscript(layer: Int) -> [Float]? { layers[layer] }
    public subscript(hook: HookPoint) -> [Float]? { layers[hook.layer] }

    /// One row as an array.
    public func row(_ r: Int, layer: Int) -> [Float]? {
        guard let buf = layers[layer], r >= 0, r < rowCount else { return nil }
        return Array(buf[r * hidden ..< (r + 1) * hidden])
    }
}

public enum SteeringPositions: String, Sendable, Codable, Equatable {
    /// Every token, prompt included.
    case all
    /// Only tokens at positions ≥ promptLength: generated tokens, or a teacher-forced continuation.
    case response
}

public enum SteeringKind: String, Sendable, Codable, Equatable {
    /// x ← x + coef·v
    case add
    /// x ← x − (x·v̂)v̂ (directional ablation; coef unused)
    case ablate
}

/// One edit of the residual stream at `resid_post.layer`.
public struct SteeringEdit: Sendable, Equatable {
    public var layer: Int
    public var vector: [Float]
    public var coef: Float
    public var positions: SteeringPositions
    public var kind: SteeringKind

    public init(layer: Int, vector: [Float], coef: Float = 1, positions: SteeringPositions = .all,
                kind: SteeringKind = .add) {
        self.layer = layer
        self.vector = vector
        self.coef = coef
        self.positions = positions
        self.kind = kind
    }
    public var hook: HookPoint { .residPost(layer) }

    public static func add(layer: Int, vector: [Float], coef: Float, positions: SteeringPositions = .all) -> SteeringEdit {
        SteeringEdit(layer: layer, vector: vector, coef: coef, positions: positions, kind: .add)
    }
    public static func ablate(layer: Int, direction: [Float], positions: SteeringPositions = .all) -> SteeringEdit {
        SteeringEdit(layer: layer, vector: direction, coef: 1, positions: positions, kind: .ablate)
    }
}

/// The edits applied to one sequence. A batch takes one (or nil) per sequence.
public struct SteeringSpec: Sendable, Equatable {
    public var edits: [SteeringEdit]
    public init(edits: [SteeringEdit]) { self.edits = edits }
    public init(_ edits: SteeringEdit...) { self.edits = edits }
}

/// The streaming variant of capture: called once per (layer, sequence) with that sequence's
/// selected rows of `resid_post.layer` in this step (`count` rows of `hidden`, row-major) and
/// their absolute positions. The buffer is only valid during the call.
public typealias ResidualCallback = (_ layer: Int, _ sequence: Int, _ rows: UnsafeBufferPointer<Float>,
                                     _ count: Int, _ positions: ArraySlice<Int>) -> Void

// MARK: - Internal: the per-call hook plan

/// A steering edit resolved for the hot loop (ablation direction normalised once), its vector
/// uploaded to the backend once.
struct ResolvedEdit {
    let sequence: Int
    let layer: Int
    let vector: [Float]
    let coef: Float
    let responseOnly: Bool
    let ablate: Bool
    var buffer: BackendBuffer?
}

/// Everything the forward pass does at resid_post.L, prepared once per call. Per step it records
/// the edits on the backend and a `read` of each captured row block into a host staging area;
/// after the step's submit (`finishStep`) it appends those rows to the captures or hands them to
/// the streaming callback, so captured rows come back once per step, not per layer.
final class HookPlan {
    let hidden: Int
    let backend: Backend
    /// layer → edits (any sequence)
    var edits: [[ResolvedEdit]]
    var captureLayers: Set<Int>
    let capturePositions: CapturePositions
    /// Per sequence id, accumulated captures (when not streaming).
    var captured: [Int: CapturedActivations] = [:]
    let callback: ResidualCallback?

    let layers: Int
    /// Sequence ids the plan holds steering/capture state for (`forward`: 0..<sequences).
    private(set) var sequenceIDs: [Int] = []

    /// Rows read back in the current step, in the order recorded (layer by layer, sequence by
    /// sequence), and where they wait on the host.
    private struct PendingCapture {
        let layer: Int, sequence: Int, count: Int, firstPosition: Int, offset: Int
    }
    private var pending: [PendingCapture] = []
    private var staging: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
    private var stagingCapacity = 0
    private var stagingUsed = 0

    init(layers: Int, hidden: Int, sequences: Int, steering: [SteeringSpec?], capture: CaptureSpec,
         callback: ResidualCallback?, backend: Backend) throws {
        self.hidden = hidden
        self.layers = layers
        self.backend = backend
        edits = Array(repeating: [], count: layers)
        if steering.count > sequences {
            throw ModelError("steering: \(steering.count) specs given for a batch of \(sequences) sequences")
        }
        for l in capture.layers where l < 0 || l >= layers {
            throw ModelError("capture: layer \(l) is out of range (the model has \(layers) layers, 0…\(layers - 1))")
        }
        captureLayers = Set(capture.layers)
        capturePositions = capture.positions
        self.callback = callback
        for s in 0..<sequences { try add(sequence: s, steering: s < steering.count ? steering[s] : nil) }
    }

    deinit { staging.deallocate() }

    /// Resolves one sequence's steering edits (checked here, before any work is done).
    static func resolve(_ spec: SteeringSpec?, sequence s: Int, layers: Int, hidden: Int) throws -> [ResolvedEdit] {
        guard let spec else { return [] }
        var out: [ResolvedEdit] = []
        for e in spec.edits {
            guard e.layer >= 0, e.layer < layers else {
                throw ModelError("steering: layer \(e.layer) is out of range (the model has \(layers) layers, 0…\(layers - 1))")
            }
            guard e.vector.count == hidden else {
                throw ModelError("steering: vector for layer \(e.layer) has \(e.vector.count) elements, expected hidden size \(hidden)")
            }
            guard e.vector.allSatisfy({ $0.isFinite }), e.coef.isFinite else {
                throw ModelError("steering: vector or coefficient for layer \(e.layer) is not finite")
            }
            var v = e.vector
            if e.kind == .ablate {
                let n = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
                guard n > 0 else { throw ModelError("steering: ablation direction for layer \(e.layer) is zero") }
                v = v.map { $0 / n }
            }
            out.append(ResolvedEdit(sequence: s, layer: e.layer, vector: v, coef: e.coef,
                                    responseOnly: e.positions == .response, ablate: e.kind == .ablate))
        }
        return out
    }

    /// Adds a sequence (continuous batching: sequences join between steps); its vectors go to the
    /// backend now.
    func add(sequence s: Int, steering: SteeringSpec?) throws {
        var resolved = try Self.resolve(steering, sequence: s, layers: layers, hidden: hidden)
        for i in resolved.indices { resolved[i].buffer = try backend.upload(resolved[i].vector) }
        for e in resolved { edits[e.layer].append(e) }
        captured[s] = CapturedActivations(hidden: hidden)
        sequenceIDs.append(s)
    }

    /// Forgets a finished sequence: its edits stop costing time and its captures are returned.
    @discardableResult
    func remove(sequence s: Int) -> CapturedActivations {
        for l in edits.indices where edits[l].contains(where: { $0.sequence == s }) {
            edits[l].removeAll { $0.sequence == s }
        }
        sequenceIDs.removeAll { $0 == s }
        let c = captured.removeValue(forKey: s) ?? CapturedActivations(hidden: hidden)
        return Self.finalized(c, positions: capturePositions)
    }

    var maxHookLayer: Int { max(captureLayers.max() ?? -1, edits.lastIndex(where: { !$0.isEmpty }) ?? -1) }

    /// Makes room on the host for the captured rows of a step of `rows` stacked tokens.
    func beginStep(rows: Int) {
        pending.removeAll(keepingCapacity: true)
        stagingUsed = 0
        let need = rows * captureLayers.count * hidden
        if need > stagingCapacity {
            staging.deallocate()
            stagingCapacity = max(need, stagingCapacity * 2)
            staging = .allocate(capacity: stagingCapacity)
        }
    }

    /// Records the edits, then the capture read-back, for `rows` rows of x belonging to sequence
    /// `seq`, whose absolute positions start at `firstPosition`.
    func record(layer: Int, x: BufferSlice, seq: Int, rows: Int, firstPosition: Int, promptLength: Int,
                on recorder: StepRecorder) {
        let h = hidden
        for e in edits[layer] where e.sequence == seq {
            // Response-only edits start at the first row at or after the prompt's end.
            let first = e.responseOnly ? min(max(promptLength - firstPosition, 0), rows) : 0
            guard first < rows else { continue }
            if e.ablate {
                recorder.projectOut(e.buffer!.at(), from: x + first * h, rows: rows - first, width: h)
            } else {
                recorder.addScaled(e.buffer!.at(), coef: e.coef, into: x + first * h, rows: rows - first, width: h)
            }
        }
        guard captureLayers.contains(layer) else { return }
        // Selected rows are contiguous: every selector is an interval of positions.
        var lo = -1, hi = -1
        for r in 0..<rows where capturePositions.selects(position: firstPosition + r, promptLength: promptLength) {
            if lo < 0 { lo = r }
            hi = r + 1
        }
        guard lo >= 0 else { return }
        let count = hi - lo
        precondition(stagingUsed + count * h <= stagingCapacity, "HookPlan: beginStep reserved too few rows")
        recorder.read(x + lo * h, count: count * h, into: staging + stagingUsed)
        pending.append(PendingCapture(layer: layer, sequence: seq, count: count, firstPosition: firstPosition + lo, offset: stagingUsed))
        stagingUsed += count * h
    }

    /// After the step's submit: appends the rows read back to the captures, or hands them to the callback.
    func finishStep() {
        let h = hidden
        for p in pending {
            let start = UnsafePointer(staging + p.offset)
            let (seq, layer, count) = (p.sequence, p.layer, p.count)
            if let callback {
                let positions = Array(p.firstPosition ..< p.firstPosition + count)
                callback(layer, seq, UnsafeBufferPointer(start: start, count: count * h), count, positions[...])
                continue
            }
            // Mutate in place: a local copy would duplicate everything captured so far.
            if captured[seq] == nil { captured[seq] = CapturedActivations(hidden: h) }
            if capturePositions == .meanResponse {
                if captured[seq]!.layers[layer] == nil { captured[seq]!.layers[layer] = [Float](repeating: 0, count: h) }
                captured[seq]!.layers[layer]!.withUnsafeMutableBufferPointer { acc in
                    for r in 0..<count { axpy(1, start + r * h, acc.baseAddress!, count: h) }
                }
            } else {
                captured[seq]!.layers[layer, default: []].append(contentsOf: UnsafeBufferPointer(start: start, count: count * h))
            }
            // Positions are recorded once per step, at the lowest captured layer.
            if layer == captureLayers.min()! {
                captured[seq]!.positions.append(contentsOf: p.firstPosition ..< p.firstPosition + count)
            }
        }
        pending.removeAll(keepingCapacity: true)
        stagingUsed = 0
    }

    /// Final capture results of sequences 0..<n in order (means divided, row counts set).
    func finish() -> [CapturedActivations] {
        sequenceIDs.sorted().map { Self.finalized(captured[$0] ?? CapturedActivations(hidden: hidden), positions: capturePositions) }
    }

    static func finalized(_ c: CapturedActivations, positions: CapturePositions) -> CapturedActivations {
        var out = c
        let n = out.positions.count
        if positions == .meanResponse {
            if n > 0 {
                for l in out.layers.keys { out.layers[l] = out.layers[l]!.map { $0 / Float(n) } }
                out.rowCount = 1
            } else {
                out.layers = [:]
                out.rowCount = 0
            }
        } else {
            out.rowCount = n
        }
        return out
    }
}

public struct ModelError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
