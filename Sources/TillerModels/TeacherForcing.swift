import Foundation
import TillerTensor

// Teacher-forced scoring: the log-probability of given tokens after given prompts. Every
// judge-free evaluator (log-odds of reference answers, A/B letters, perplexity), the local judge
// (101 answer candidates) and the server's `echo` with `logprobs` go through one request type,
// `TeacherForcedRequest`, run by `LanguageModel.teacherForced`.
//
// ## The determinism rule
//
// A score must depend on what is scored, never on what was scored before it or beside it in the
// same sweep: sharded sweeps must give the scores of the whole sweep, and a cached score must
// equal a fresh one. fp32 products do not round the same way for every batch shape (a product
// of few rows reads the file's blocks, one of many rows an fp32 twin through sgemm, and sgemm's
// blocking follows the row count), so:
// - what a request computes, and in which batches, is a function of the request alone: no state
//   survives between requests, and no result of an earlier request is reused;
// - a prompt head (`PromptHead`) is computed alone, unsteered, so its bits are the same whichever
//   prompt asked for it first;
// - the reuse a request states (below) is part of its numbers: the same items with a different
//   reuse agree to fp32 rounding (about 1e-6 relative), not to the bit. A caller keeps one reuse
//   and one batching per measurement, so its numbers stay bit-identical from run to run;
// - the shared layer prefix and the prompt head are not part of them: `.none` and `.sharedPrompt` run their products
//   row-invariant (`Workspace(rowInvariant:)`: on the CPU, the packed kernel at every row count,
//   the LM head's few prompt-end rows of a step included), and every other op of a step is per
//   row, so a row's bits do not depend on which rows share its step. With `sharedLayers` and
//   `commonHead` on or off a request gives the same bits (where the CPU has packed copies; checked by
//   TeacherForcingTests and SharedLayersTests).
//
// ## Reuse
//
// - `.none`: every prompt + continuation runs whole, as its own sequence of one ragged batch.
// - `.sharedPrompt`: each group's prompt runs once (all prompts as one batch, steered by the
//   group's steering); its continuations continue its keys/values in place (`KVCache.child`),
//   all of them as a second batch.
//   With `commonHead` (the default), the tokens every prompt begins with (a chat template's
//   system turn and user header) run once per distinct steering of those rows, and each prompt
//   continues a copy of them (`CommonHeads`).
// - `.prefixTrie(head:)`: shared prompt, and continuations that share a prefix run it once (a
//   trie of one-token nodes, one batch per depth); the prompt may continue a copy of a head's
//   keys/values. Unsteered only.
// - `sharedLayers` (with `.none` or `.sharedPrompt`): a configuration that steers first at
//   `resid_post.L` computes blocks 0…L exactly as the unsteered model does. Sequences with the
//   same tokens run those blocks once, unsteered, keeping `resid_post` at every layer some
//   configuration starts at; each steered sequence then starts from its layer's rows, its
//   steering applied there first (at its steered positions), and runs blocks L+1…N−1 only. An
//   unsteered sequence takes its scores from the shared pass itself.

/// A teacher-forced scoring request: groups of continuations after a prompt, how the work is
/// shared, and what comes back.
public struct TeacherForcedRequest: Sendable {
    /// One prompt and the continuations scored after it.
    public struct Group: Sendable, Equatable {
        public var prompt: [Int]
        public var continuations: [[Int]]
        /// Steering of the prompt and of every continuation without its own.
        public var steering: SteeringSpec?
        /// Per continuation, its own steering (nil: the group's). With `.sharedPrompt` the prompt
        /// runs once with the group's steering, so a continuation's own steering must leave the
        /// prompt alone: only `.response` edits.
        public var continuationSteering: [SteeringSpec?]?
        /// Where the response begins, for `.response` steering (default: the prompt's end). The
        /// server's `echo` scores a prompt's own tokens with this at its end, so that they stay
        /// prompt.
        public var responseStart: Int?

        public init(prompt: [Int], continuations: [[Int]], steering: SteeringSpec? = nil,
                    continuationSteering: [SteeringSpec?]? = nil, responseStart: Int? = nil) {
            self.prompt = prompt
            self.continuations = continuations
            self.steering = steering
            self.continuationSteering = continuationSteering
            self.responseStart = responseStart
        }

        func steering(of i: Int) -> SteeringSpec? {
            if let c = continuationSteering, i < c.count { return c[i] }
            return steering
        }
        var promptLength: Int { responseStart ?? prompt.count }
    }

    public enum Reuse: Sendable {
        case none
        case sharedPrompt
        case prefixTrie(head: PromptHead?)
    }

    public enum Reduction: Sendable, Equatable {
        /// Per continuation, the log-probability of each of its tokens.
        case perToken
        /// Per continuation, one number: the sum over its tokens (0 for an empty one).
        case sum
    }

    public var groups: [Group]
    public var reuse: Reuse
    public var reduction: Reduction
    /// Blocks before a configuration's first steered layer computed once per distinct sequence.
    public var sharedLayers: Bool
    /// With `.sharedPrompt`: the prompts' common head computed once per steering of its rows.
    public var commonHead: Bool

    public init(groups: [Group], reuse: Reuse, reduction: Reduction = .perToken, sharedLayers: Bool = false, commonHead: Bool = true) {
        self.groups = groups
        self.reuse = reuse
        self.reduction = reduction
        self.sharedLayers = sharedLayers
        self.commonHead = commonHead
    }

    /// The first layer a spec steers at (nil: unsteered).
    public static func firstLayer(_ spec: SteeringSpec?) -> Int? { spec?.edits.map(\.layer).min() }
}

extension LanguageModel {
    /// Scores a request: per group, per continuation, the log-probability of each token (natural
    /// log, fp64 log-sum-exp over the fp32 logits row), or their sum (`.sum`: one element).
    public func teacherForced(_ request: TeacherForcedRequest) throws -> [[[Double]]] {
        var out = request.groups.map { g in g.continuations.map { [Double](repeating: 0, count: request.reduction == .sum ? 1 : $0.count) } }
        try execute(request) { targets, row in
            let lse = logSumExp(UnsafeBufferPointer(start: row, count: vocabSize))
            for t in targets {
                let lp = Double(row[request.groups[t.group].continuations[t.continuation][t.token]]) - lse
                if request.reduction == .sum { out[t.group][t.continuation][0] += lp } else { out[t.group][t.continuation][t.token] = lp }
            }
        }
        return out
    }

    /// The logits rows themselves: `body(group, continuation, token, row)` sees the row that
    /// predicts `continuations[continuation][token]` (valid during the call only), in token order
    /// per continuation.
    public func teacherForced(_ request: TeacherForcedRequest,
                              rows body: (_ group: Int, _ continuation: Int, _ token: Int, _ row: UnsafeBufferPointer<Float>) -> Void) throws {
        try execute(request) { targets, row in
            for t in targets { body(t.group, t.continuation, t.token, UnsafeBufferPointer(start: row, count: vocabSize)) }
        }
    }

    /// Which continuation token a logits row predicts.
    struct Target {
        let group: Int, continuation: Int, token: Int
    }

    func execute(_ r: TeacherForcedRequest, visit: ([Target], UnsafePointer<Float>) -> Void) throws {
        for (g, grp) in r.groups.enumerated() {
            try validate(grp.prompt, what: "group \(g) prompt")
            if let c = grp.continuationSteering, c.count != grp.continuations.count {
                throw ModelError("group \(g): \(c.count) continuation steering specs for \(grp.continuations.count) continuations")
            }
            for (i, c) in grp.continuations.enumerated() {
                if c.isEmpty {
                    if case .sharedPrompt = r.reuse { throw ModelError("group \(g) continuation \(i) is empty") }
                    continue
                }
                try validate(c, what: "group \(g) continuation \(i)")
            }
        }
        switch r.reuse {
        case .none:
            if r.sharedLayers { try wholeShared(r.groups, visit) } else { try whole(r.groups, visit) }
        case .sharedPrompt:
            for (g, grp) in r.groups.enumerated() {
                for i in grp.continuations.indices where grp.continuationSteering != nil {
                    for e in grp.steering(of: i)?.edits ?? [] where e.positions != .response && grp.steering(of: i) != grp.steering {
                        throw ModelError("group \(g) continuation \(i): its own steering acts at every position and would change the shared prompt; use .response edits or a group of its own")
                    }
                }
            }
            let heads = r.commonHead ? CommonHeads(r.groups) : nil
            if r.sharedLayers, let plan = SharedPromptLayers(r.groups) {
                try sharedPromptLayers(r.groups, plan, heads, visit)
            } else {
                try sharedPrompt(r.groups, heads, visit)
            }
        case .prefixTrie(let head):
            for (g, grp) in r.groups.enumerated() where grp.steering != nil || (grp.continuationSteering ?? []).contains(where: { $0 != nil }) {
                throw ModelError("group \(g): a prefix trie runs unsteered")
            }
            for (g, grp) in r.groups.enumerated() { try trie(grp, group: g, head: head, visit) }
        }
    }

    // MARK: Whole sequences

    private func whole(_ groups: [TeacherForcedRequest.Group], _ visit: ([Target], UnsafePointer<Float>) -> Void) throws {
        var seqs: [SequenceInput] = [], owner: [(g: Int, i: Int)] = [], specs: [SteeringSpec?] = []
        for (g, grp) in groups.enumerated() {
            for (i, c) in grp.continuations.enumerated() {
                let tokens = grp.prompt + c
                seqs.append(SequenceInput(cache: transformer.makeCache(capacity: tokens.count), tokens: tokens,
                                          promptLength: grp.promptLength, sequence: seqs.count))
                owner.append((g, i))
                specs.append(grp.steering(of: i))
            }
        }
        let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: seqs.count, steering: specs, capture: .none, callback: nil, backend: transformer.backend)
        run(seqs, plan: plan, wants: { s, p in self.predicts(groups, owner[s], p) != nil }, ws: Workspace(transformer, rowInvariant: true)) { s, p, row in
            visit([Target(group: owner[s].g, continuation: owner[s].i, token: predicts(groups, owner[s], p)!)], row)
        }
    }

    /// The continuation token that position p of prompt + continuation predicts.
    private func predicts(_ groups: [TeacherForcedRequest.Group], _ o: (g: Int, i: Int), _ p: Int) -> Int? {
        let n = groups[o.g].prompt.count, c = groups[o.g].continuations[o.i].count
        return p >= n - 1 && p < n + c - 1 ? p - (n - 1) : nil
    }

    /// `whole` with a shared layer prefix: each distinct sequence (tokens and response start) runs
    /// once unsteered, capturing resid_post at the layers its steered copies start at; each
    /// steered copy runs from there, one batch per start layer.
    private func wholeShared(_ groups: [TeacherForcedRequest.Group], _ visit: ([Target], UnsafePointer<Float>) -> Void) throws {
        struct Key: Hashable { let tokens: [Int]; let promptLength: Int }
        var keys: [Key] = [], index: [Key: Int] = [:]
        var baseline: [[Target]] = []          // per key, per member (unsteered)
        var anyOwner: [(g: Int, i: Int)] = []  // per key, one member (for positions)
        var steered: [(key: Int, g: Int, i: Int, spec: SteeringSpec, layer: Int)] = []
        var layersNeeded = Set<Int>()
        for (g, grp) in groups.enumerated() {
            for (i, c) in grp.continuations.enumerated() where !c.isEmpty {
                let key = Key(tokens: grp.prompt + c, promptLength: grp.promptLength)
                let k: Int
                if let found = index[key] { k = found } else {
                    k = keys.count; index[key] = k; keys.append(key); baseline.append([]); anyOwner.append((g, i))
                }
                let spec = grp.steering(of: i)
                if let spec, let L = TeacherForcedRequest.firstLayer(spec) {
                    steered.append((k, g, i, spec, L))
                    layersNeeded.insert(L)
                } else {
                    baseline[k].append(Target(group: g, continuation: i, token: 0))
                }
            }
        }
        let ws = Workspace(transformer, rowInvariant: true)
        // The unsteered pass: logits for the keys with unsteered members, resid_post where needed.
        let seqs = keys.enumerated().map { k, key in
            SequenceInput(cache: transformer.makeCache(capacity: key.tokens.count), tokens: key.tokens, promptLength: key.promptLength, sequence: k)
        }
        let capture = CaptureSpec(layers: layersNeeded.sorted(), positions: .all)
        let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: seqs.count, steering: [], capture: capture, callback: nil, backend: transformer.backend)
        let anyBaseline = baseline.contains { !$0.isEmpty }
        run(seqs, plan: plan, wants: { k, p in !baseline[k].isEmpty && self.predicts(groups, anyOwner[k], p) != nil }, ws: ws,
            stopAfter: anyBaseline ? nil : layersNeeded.max()) { k, p, row in
            let t = predicts(groups, anyOwner[k], p)!
            visit(baseline[k].map { Target(group: $0.group, continuation: $0.continuation, token: t) }, row)
        }
        var kept = plan.finish()
        // Each start layer's steered copies, as one run.
        for L in layersNeeded.sorted() {
            let cohort = steered.filter { $0.layer == L }
            let inputs = cohort.enumerated().map { n, m in
                SequenceInput(cache: transformer.makeCache(capacity: keys[m.key].tokens.count), tokens: keys[m.key].tokens,
                              promptLength: keys[m.key].promptLength, sequence: n, startRows: kept[m.key].layers[L]!)
            }
            let cplan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: inputs.count, steering: cohort.map(\.spec),
                                     capture: .none, callback: nil, backend: transformer.backend)
            run(inputs, plan: cplan, wants: { n, p in self.predicts(groups, (cohort[n].g, cohort[n].i), p) != nil }, ws: ws,
                startLayer: L) { n, p, row in
                visit([Target(group: cohort[n].g, continuation: cohort[n].i, token: predicts(groups, (cohort[n].g, cohort[n].i), p)!)], row)
            }
            // Rows no later layer needs are let go.
            for k in kept.indices { kept[k].layers[L] = nil }
        }
    }

    // MARK: Shared prompt

    private func sharedPrompt(_ groups: [TeacherForcedRequest.Group], _ heads: CommonHeads?,
                              _ visit: ([Target], UnsafePointer<Float>) -> Void) throws {
        let ws = Workspace(transformer, rowInvariant: true)
        // The prompts' common head once per distinct steering of its rows; each prompt continues a copy.
        var headCaches: [KVCache] = []
        if let heads {
            headCaches = heads.specs.map { _ in transformer.makeCache(capacity: heads.tokens.count) }
            let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: heads.specs.count, steering: heads.specs,
                                    capture: .none, callback: nil, backend: transformer.backend)
            run(heads.inputs(headCaches), plan: plan, wants: { _, _ in false }, ws: ws) { _, _, _ in }
        }
        var caches: [KVCache] = []
        var seqs: [SequenceInput] = []
        let copies = transformer.backend.makeRecorder()
        for (g, grp) in groups.enumerated() {
            let own = Array(grp.prompt[(heads?.tokens.count ?? 0)...])
            let cache = heads.map { headCaches[$0.of[g]].fork(extra: own.count, on: copies) } ?? transformer.makeCache(capacity: grp.prompt.count)
            caches.append(cache)
            seqs.append(SequenceInput(cache: cache, tokens: own, promptLength: grp.promptLength, sequence: g))
        }
        copies.submit()
        let promptPlan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: groups.count, steering: groups.map(\.steering),
                                      capture: .none, callback: nil, backend: transformer.backend)
        run(seqs, plan: promptPlan, wants: { s, p in p == seqs[s].tokens.count - 1 }, ws: ws) { s, _, row in
            visit(groups[s].continuations.indices.map { Target(group: s, continuation: $0, token: 0) }, row)
        }
        // Continuation tokens 0..<n-1 (each predicts the next) in children of the prompt caches.
        var children: [SequenceInput] = [], owner: [(g: Int, i: Int)] = [], specs: [SteeringSpec?] = []
        for (g, grp) in groups.enumerated() {
            for (i, c) in grp.continuations.enumerated() where c.count > 1 {
                children.append(SequenceInput(cache: caches[g].child(extra: c.count - 1), tokens: Array(c.dropLast()),
                                              promptLength: grp.promptLength, sequence: children.count))
                owner.append((g, i))
                specs.append(grp.steering(of: i))
            }
        }
        guard !children.isEmpty else { return }
        let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: children.count, steering: specs, capture: .none, callback: nil, backend: transformer.backend)
        run(children, plan: plan, wants: { _, _ in true }, ws: ws) { s, p, row in
            visit([Target(group: owner[s].g, continuation: owner[s].i, token: p + 1)], row)
        }
    }

    /// The tokens every prompt of a shared-prompt request begins with, when there are enough of
    /// them to be worth running once (a chat template's system turn and user header: 24 of the
    /// ~39 tokens of each SmolLM2 prompt in the demo's log-odds). Prompts with the same steering
    /// of those rows compute them identically, so each distinct steering runs the head once and
    /// every prompt continues a copy of its head's keys/values with its own tokens only. A row's
    /// bits are the same either way (per-row ops, row-invariant products, the same keys read).
    /// Unlike a `PromptHead` (a judge template's head, computed alone and unsteered, kept across
    /// requests), these live for one request and are steered like their prompts.
    struct CommonHeads {
        static let minLength = 4
        let tokens: [Int]
        /// The distinct steering of the head rows: a prompt's steering without its `.response`
        /// edits, which act only after the prompt (nil: unsteered).
        let specs: [SteeringSpec?]
        /// Per group, the index of its head.
        let of: [Int]

        init?(_ groups: [TeacherForcedRequest.Group]) {
            // Every prompt keeps at least its last token (its row predicts the continuations),
            // and the head is all prompt rows.
            guard groups.count > 1, var n = groups.map({ min($0.prompt.count - 1, $0.promptLength) }).min() else { return nil }
            let first = groups[0].prompt
            for g in groups.dropFirst() where n > 0 {
                var k = 0
                while k < n && g.prompt[k] == first[k] { k += 1 }
                n = k
            }
            guard n >= Self.minLength else { return nil }
            var specs: [SteeringSpec?] = [], of: [Int] = []
            for g in groups {
                let s = Self.headSteering(g.steering)
                if let i = specs.firstIndex(where: { $0 == s }) { of.append(i) } else { of.append(specs.count); specs.append(s) }
            }
            guard specs.count < groups.count else { return nil }
            tokens = Array(first[..<n])
            self.specs = specs
            self.of = of
        }

        static func headSteering(_ s: SteeringSpec?) -> SteeringSpec? {
            guard var s else { return nil }
            s.edits.removeAll { $0.positions == .response }
            return s.edits.isEmpty ? nil : s
        }

        /// One input per head (`sequence` = its index), all of its rows prompt rows.
        func inputs(_ caches: [KVCache], startRows: [Float]? = nil) -> [SequenceInput] {
            caches.indices.map { SequenceInput(cache: caches[$0], tokens: tokens, promptLength: tokens.count, sequence: $0, startRows: startRows) }
        }
    }

    /// Where each prompt and continuation of a shared-prompt request starts when blocks are shared
    /// (nil: the request cannot share them, because a continuation steers before its prompt does).
    struct SharedPromptLayers {
        /// Per group, the first layer its prompt steers at.
        var promptLayer: [Int?]
        /// Per group, per continuation: where it starts (nil: unsteered and after an unsteered prompt).
        var continuationLayer: [[Int?]]

        init?(_ groups: [TeacherForcedRequest.Group]) {
            promptLayer = groups.map { TeacherForcedRequest.firstLayer($0.steering) }
            var cl: [[Int?]] = []
            for (g, grp) in groups.enumerated() {
                var row: [Int?] = []
                for i in grp.continuations.indices {
                    let own = TeacherForcedRequest.firstLayer(grp.steering(of: i))
                    // After a prompt steered at Lg, a continuation's rows up to Lg are unsteered
                    // (the prompt's keys there are); below Lg its own steering has no shared rows.
                    if let lg = promptLayer[g] {
                        if let own, own < lg { return nil }
                        row.append(lg)
                    } else {
                        row.append(own)
                    }
                }
                cl.append(row)
            }
            continuationLayer = cl
        }
    }

    /// `sharedPrompt` with a shared layer prefix: each distinct prompt runs once unsteered (a
    /// complete cache, read in place by the continuations of unsteered groups); a steered group's
    /// prompt runs from its layer in a cache of its own whose layers up to there stay unwritten.
    /// Continuations likewise: each distinct (prompt, continuation) once unsteered in a child of
    /// the unsteered prompt, each steered one from its layer in a child of its group's prompt.
    private func sharedPromptLayers(_ groups: [TeacherForcedRequest.Group], _ layers: SharedPromptLayers, _ heads: CommonHeads?,
                                    _ visit: ([Target], UnsafePointer<Float>) -> Void) throws {
        let ws = Workspace(transformer, rowInvariant: true)
        struct PromptKey: Hashable { let tokens: [Int]; let promptLength: Int }
        var prompts: [PromptKey] = [], promptIndex: [PromptKey: Int] = [:], promptOf: [Int] = []
        for grp in groups {
            let key = PromptKey(tokens: grp.prompt, promptLength: grp.promptLength)
            if promptIndex[key] == nil { promptIndex[key] = prompts.count; prompts.append(key) }
            promptOf.append(promptIndex[key]!)
        }
        let promptLayers = Set(layers.promptLayer.compactMap { $0 })
        // The prompts' common head once unsteered (complete, keeping resid_post where steered
        // prompts start); every distinct prompt continues a copy of it.
        let skip = heads?.tokens.count ?? 0
        var unsteeredHead: KVCache? = nil
        var keptHead = CapturedActivations(hidden: hiddenSize)
        if let heads {
            let cache = transformer.makeCache(capacity: skip)
            let hplan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: 1, steering: [],
                                     capture: CaptureSpec(layers: promptLayers.sorted(), positions: .all), callback: nil, backend: transformer.backend)
            run(heads.inputs([cache]), plan: hplan, wants: { _, _ in false }, ws: ws) { _, _, _ in }
            unsteeredHead = cache
            keptHead = hplan.finish()[0]
        }
        // Unsteered prompts: logits for the first token of unsteered groups' continuations.
        var baseFirst = [[Target]](repeating: [], count: prompts.count)
        for (g, grp) in groups.enumerated() where layers.promptLayer[g] == nil {
            baseFirst[promptOf[g]] += grp.continuations.indices.map { Target(group: g, continuation: $0, token: 0) }
        }
        let own = prompts.map { Array($0.tokens[skip...]) }
        let copies = transformer.backend.makeRecorder()
        let sharedCaches = prompts.indices.map { unsteeredHead?.fork(extra: own[$0].count, on: copies) ?? transformer.makeCache(capacity: prompts[$0].tokens.count) }
        copies.submit()
        let pplan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: prompts.count, steering: [],
                                 capture: CaptureSpec(layers: promptLayers.sorted(), positions: .all), callback: nil, backend: transformer.backend)
        run(prompts.indices.map { SequenceInput(cache: sharedCaches[$0], tokens: own[$0], promptLength: prompts[$0].promptLength, sequence: $0) },
            plan: pplan, wants: { k, p in !baseFirst[k].isEmpty && p == own[k].count - 1 }, ws: ws) { k, _, row in
            visit(baseFirst[k], row)
        }
        var keptPrompts = pplan.finish()
        // Steered prompts, one run per start layer: first the steered heads their groups continue
        // (from the unsteered head's rows at that layer), then each prompt's own tokens.
        var groupCache: [KVCache] = groups.indices.map { sharedCaches[promptOf[$0]] }
        for L in promptLayers.sorted() {
            let cohort = groups.indices.filter { layers.promptLayer[$0] == L }
            var headCache: [Int: KVCache] = [:]
            if let heads {
                let steeredHeads = Array(Set(cohort.map { heads.of[$0] })).sorted().filter { heads.specs[$0] != nil }
                let caches = steeredHeads.map { _ in transformer.makeCache(capacity: skip) }
                if !steeredHeads.isEmpty {
                    let hplan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: steeredHeads.count, steering: steeredHeads.map { heads.specs[$0] },
                                             capture: .none, callback: nil, backend: transformer.backend)
                    run(heads.inputs(caches, startRows: keptHead.layers[L]!), plan: hplan, wants: { _, _ in false }, ws: ws, startLayer: L) { _, _, _ in }
                }
                for (h, c) in zip(steeredHeads, caches) { headCache[h] = c }
            }
            var inputs: [SequenceInput] = []
            let copies = transformer.backend.makeRecorder()
            for (n, g) in cohort.enumerated() {
                let k = promptOf[g]
                let cache = heads.map { (headCache[$0.of[g]] ?? unsteeredHead!).fork(extra: own[k].count, on: copies) }
                    ?? transformer.makeCache(capacity: groups[g].prompt.count)
                groupCache[g] = cache
                inputs.append(SequenceInput(cache: cache, tokens: own[k], promptLength: groups[g].promptLength, sequence: n,
                                            startRows: keptPrompts[k].layers[L]!))
            }
            copies.submit()
            let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: inputs.count, steering: cohort.map { groups[$0].steering },
                                    capture: .none, callback: nil, backend: transformer.backend)
            run(inputs, plan: plan, wants: { n, p in p == inputs[n].tokens.count - 1 }, ws: ws, startLayer: L) { n, _, row in
                let g = cohort[n]
                visit(groups[g].continuations.indices.map { Target(group: g, continuation: $0, token: 0) }, row)
            }
            for k in keptPrompts.indices { keptPrompts[k].layers[L] = nil }
            keptHead.layers[L] = nil
        }

        // Continuations (tokens 0..<n-1, each predicting the next).
        struct ContKey: Hashable { let prompt: Int; let tokens: [Int] }
        var conts: [ContKey] = [], contIndex: [ContKey: Int] = [:]
        var baseRows: [[(g: Int, i: Int)]] = []
        var steered: [(key: Int, g: Int, i: Int, layer: Int)] = []
        for (g, grp) in groups.enumerated() {
            for (i, c) in grp.continuations.enumerated() where c.count > 1 {
                let key = ContKey(prompt: promptOf[g], tokens: Array(c.dropLast()))
                if contIndex[key] == nil { contIndex[key] = conts.count; conts.append(key); baseRows.append([]) }
                let k = contIndex[key]!
                if let L = layers.continuationLayer[g][i] { steered.append((k, g, i, L)) } else { baseRows[k].append((g, i)) }
            }
        }
        guard !conts.isEmpty else { return }
        let contLayers = Set(steered.map(\.layer))
        let cplan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: conts.count, steering: [],
                                 capture: CaptureSpec(layers: contLayers.sorted(), positions: .all), callback: nil, backend: transformer.backend)
        let anyBaseline = baseRows.contains { !$0.isEmpty }
        run(conts.enumerated().map { k, key in
                SequenceInput(cache: sharedCaches[key.prompt].child(extra: key.tokens.count), tokens: key.tokens,
                              promptLength: prompts[key.prompt].promptLength, sequence: k)
            }, plan: cplan, wants: { k, _ in !baseRows[k].isEmpty }, ws: ws, stopAfter: anyBaseline ? nil : contLayers.max()) { k, p, row in
            visit(baseRows[k].map { Target(group: $0.g, continuation: $0.i, token: p + 1) }, row)
        }
        var keptConts = cplan.finish()
        for L in contLayers.sorted() {
            let cohort = steered.filter { $0.layer == L }
            let inputs = cohort.enumerated().map { n, m in
                SequenceInput(cache: groupCache[m.g].child(extra: conts[m.key].tokens.count), tokens: conts[m.key].tokens,
                              promptLength: groups[m.g].promptLength, sequence: n, startRows: keptConts[m.key].layers[L]!)
            }
            let plan = try HookPlan(layers: layerCount, hidden: hiddenSize, sequences: inputs.count,
                                    steering: cohort.map { groups[$0.g].steering(of: $0.i) }, capture: .none, callback: nil, backend: transformer.backend)
            run(inputs, plan: plan, wants: { _, _ in true }, ws: ws, startLayer: L) { n, p, row in
                visit([Target(group: cohort[n].g, continuation: cohort[n].i, token: p + 1)], row)
            }
            for k in keptConts.indices { keptConts[k].layers[L] = nil }
        }
    }

    // MARK: Prefix trie

    /// One group's candidates: the prompt once (continuing a copy of `head`'s keys/values when it
    /// starts with them), then the trie of continuation prefixes, one batch per depth.
    private func trie(_ grp: TeacherForcedRequest.Group, group g: Int, head: PromptHead?, _ visit: ([Target], UnsafePointer<Float>) -> Void) throws {
        let prompt = grp.prompt, continuations = grp.continuations
        let ws = Workspace(transformer)
        // With a head the prompt continues a copy of the head's keys/values: only its own tokens run.
        let reused = head.map { $0.tokens.count < prompt.count && prompt.starts(with: $0.tokens) && $0.model === self } ?? false
        let cache = reused ? head!.cache.fork(extra: prompt.count - head!.tokens.count) : transformer.makeCache(capacity: prompt.count)
        let own = reused ? Array(prompt[head!.tokens.count...]) : prompt
        let first = continuations.indices.filter { !continuations[$0].isEmpty }.map { Target(group: g, continuation: $0, token: 0) }
        run([SequenceInput(cache: cache, tokens: own, promptLength: prompt.count, sequence: 0)], plan: nil,
            wants: { _, p in p == own.count - 1 }, ws: ws) { _, _, row in visit(first, row) }
        // The continuations form a trie: a node is a token prefix whose next-token distribution some
        // continuation needs ("5" for "57⏎" and "5⏎"). Each node runs one token, depth by depth, in
        // a child of the prompt cache that holds copies of its ancestors' few rows; the nodes of
        // one depth run as one ragged batch. Shared prefixes ("5" of "50"…"59") run once.
        var depthCaches: [[Int]: KVCache] = [:]
        let longest = continuations.map(\.count).max() ?? 0
        for depth in 1..<max(longest, 1) {
            var nodes: [[Int]] = []
            var seen = Set<[Int]>()
            for c in continuations where c.count > depth {
                let node = Array(c[..<depth])
                if seen.insert(node).inserted { nodes.append(node) }
            }
            guard !nodes.isEmpty else { break }
            var seqs: [SequenceInput] = []
            for node in nodes {
                let nodeCache = depth == 1 ? cache.child(extra: 1)
                    : depthCaches[Array(node.dropLast())]!.sibling(keeping: depth - 1, extra: 1)
                depthCaches[node] = nodeCache
                seqs.append(SequenceInput(cache: nodeCache, tokens: [node[depth - 1]], promptLength: prompt.count, sequence: seqs.count))
            }
            var targets = [[Target]](repeating: [], count: nodes.count)
            var rowOf: [[Int]: Int] = [:]
            for (k, node) in nodes.enumerated() { rowOf[node] = k }
            for (i, c) in continuations.enumerated() where c.count > depth {
                targets[rowOf[Array(c[..<depth])]!].append(Target(group: g, continuation: i, token: depth))
            }
            run(seqs, plan: nil, wants: { _, _ in true }, ws: ws) { k, _, row in visit(targets[k], row) }
            // Ancestors of the next depth only.
            for key in depthCaches.keys where key.count < depth { depthCaches[key] = nil }
        }
    }
}
