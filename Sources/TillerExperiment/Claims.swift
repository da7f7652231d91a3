import Foundation
import TillerSteering

/// A claim of the form "group A beats group B", stated in the experiment file:
///
///     claims:
///       - name: la2 beats la1
///         a: [probe_preclean_la2]
///         b: [probe_preclean_la1]
///
/// Each side is a set of variants; per held-out question, a side's value is that of its best
/// variant (chosen on the selection split), and the claim is tested with a paired bootstrap.
public struct ClaimSpec: Codable, Sendable, Equatable {
    public var name: String
    public var a: [String]
    public var b: [String]
    public init(name: String, a: [String], b: [String]) {
        self.name = name
        self.a = a
        self.b = b
    }
    func validate() throws {
        guard !name.trimmingCharacters(in: .whitespaces).isEmpty else { throw ExperimentError("claims: a claim needs a name") }
        guard !a.isEmpty, !b.isEmpty else { throw ExperimentError("claims: \"\(name)\" needs variants on both sides (a and b)") }
        for v in a + b where (try? VariantSpec(name: v)) == nil {
            throw ExperimentError("claims: \"\(name)\": \"\(v)\" is not a variant name")
        }
        if !Set(a).isDisjoint(with: b) { throw ExperimentError("claims: \"\(name)\": a variant is on both sides") }
    }
}
