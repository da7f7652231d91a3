import Foundation
import TillerFormats
import TillerTensor

// MARK: - Scratch

/// Activation buffers for one call (prefill or a generation loop), grown when a step needs more.
final class Workspace {
    let hidden, qDim, kvDim, intermediate, vocab, halfHead, ropeKinds: Int
    private(set) var tokenCapacity = 0
    private(set) var logitCapacity = 0
    var x, h, q, k, v, attn, gate, up: UnsafeMutablePointer<Float>
    var cos: [UnsafeMutablePointer<Float>] = []
    var sin: [UnsafeMutablePointer<Float>] = []
    var logitInput, logits: UnsafeMutablePointer<Float>
    var scores: UnsafeMutablePointer<Float>
    private var scoreCapacity = 0

    init(_ t: Transformer) {
        hidden = t.hidden; qDim = t.qDim; kvDim = t.kvDim; intermediate = t.intermediate; vocab = t.vocab
        halfHead = t.headDim / 2; ropeKinds = t.ropeTables.count
        x = .allocate(capacity: 1); h = .allocate(capacity: 1); q = .allocate(capacity: 1)
        k = .allocate(capacity: 1); v = .allocate(capacity: 1); attn = .allocate(capacity: 1)
        gate = .allocate(capacity: 1); up = .allocate(capacity: 1)
        logitInput = .allocate(capacity: 1); logits = .allocate(capacity: 1); scores = .allocate(capacity: 1)
        for _ in 0..<ropeKinds { cos.append(.allocate(capacity: 1)); sin.append(.allocate(capacity: 1)) }
    }

    deinit {
        for p in [x, h, q, k, v, attn, gate, up, logitInput, logits, scores] + cos + sin { p.deallocate() }
    }

    func reserveScores(_ n: Int) {
        guard n > scoreCapacity else { return }
        scores.deallocate()
        scoreCapacity = max(n, scoreCapacity * 2)
        scores = .allocate(capacity: scoreCapacity)
    }

    func reserve(tokens n: Int, logitRows r: Int) {
        if n > tokenCapacity {
            let c = max(n, tokenCapacity * 2)
            func re(_ p: inout UnsafeMutablePointer<Float>, _ width: Int) {
                p.deallocate()
                p = .allocate(capacity: c * width)
            }
            re(&x, hidden); re(&h, hidden); re(&q, qDim); re(&k, kvDim); re(&v, kvDim); re(&attn, qDim)
            re(&gate, intermediate); re(&up, intermediate)
            for i in 0..<ropeKinds { re(&cos[i], halfHead); re(&sin[i], halfHead) }
            tokenCapacity = c
        }
        if r > logitCapacity {
            logitInput.deallocate(); logits.deallocate()
            logitInput = .allocate(capacity: r * hidden)
            logits = .allocate(capacity: r * vocab)
            logitCapacity = r
        }
    }
}
