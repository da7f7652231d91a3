import Foundation
import TillerFormats
import TillerTensor

// MARK: - Scratch

/// Activation buffers for one call (prefill or a generation loop) on the model's backend, grown
/// when a step needs more, and the recorder its steps are recorded on. `logits` holds the
/// requested logits rows on the host after each step (read back once, or read in place on the CPU).
final class Workspace {
    let backend: Backend
    let recorder: StepRecorder
    let hidden, qDim, kvDim, intermediate, vocab, halfHead, ropeKinds: Int
    private(set) var tokenCapacity = 0
    private(set) var logitCapacity = 0
    var x, h, q, k, v, attn, gate, up: BackendBuffer
    var cos: [BackendBuffer] = []
    var sin: [BackendBuffer] = []
    var logitInput, logitRows: BackendBuffer
    /// The requested logits rows on the host, [rows, vocab], valid after the step that read them:
    /// the backend's own rows where its memory is host memory, else `logitsCopy`.
    var logits: UnsafeMutablePointer<Float> { logitsView ?? logitsCopy }
    /// Set by each step that computes logits: the recorder's host address of its logits rows, if any.
    var logitsView: UnsafeMutablePointer<Float>?
    private(set) var logitsCopy: UnsafeMutablePointer<Float>

    /// `rowInvariant`: each row's products come out the same bits whatever the number of rows
    /// stacked beside it in a step (on the CPU with packed copies: the packed kernel at every row
    /// count; see `CPUKernelChoice.kernel`); `Backend.makeRecorder(rowInvariant:)`.
    init(_ t: Transformer, rowInvariant: Bool = false) {
        backend = t.backend
        recorder = t.backend.makeRecorder(rowInvariant: rowInvariant)
        hidden = t.hidden; qDim = t.qDim; kvDim = t.kvDim; intermediate = t.intermediate; vocab = t.vocab
        halfHead = t.headDim / 2; ropeKinds = t.ropeInvFreq.count
        let b = t.backend
        x = b.buffer(count: 1); h = b.buffer(count: 1); q = b.buffer(count: 1)
        k = b.buffer(count: 1); v = b.buffer(count: 1); attn = b.buffer(count: 1)
        gate = b.buffer(count: 1); up = b.buffer(count: 1)
        logitInput = b.buffer(count: 1); logitRows = b.buffer(count: 1)
        logitsCopy = .allocate(capacity: 1)
        for _ in 0..<ropeKinds { cos.append(b.buffer(count: 1)); sin.append(b.buffer(count: 1)) }
    }

    deinit { logitsCopy.deallocate() }

    func reserve(tokens n: Int, logitRows r: Int) {
        if n > tokenCapacity {
            let c = max(n, tokenCapacity * 2)
            func re(_ b: inout BackendBuffer, _ width: Int) { b = backend.buffer(count: c * width) }
            re(&x, hidden); re(&h, hidden); re(&q, qDim); re(&k, kvDim); re(&v, kvDim); re(&attn, qDim)
            re(&gate, intermediate); re(&up, intermediate)
            for i in 0..<ropeKinds { re(&cos[i], halfHead); re(&sin[i], halfHead) }
            tokenCapacity = c
        }
        if r > logitCapacity {
            logitInput = backend.buffer(count: r * hidden)
            logitRows = backend.buffer(count: r * vocab)
            logitsCopy.deallocate()
            logitsCopy = .allocate(capacity: r * vocab)
            logitCapacity = r
        }
    }
}
