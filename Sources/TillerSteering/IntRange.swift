import Foundation

/// An inclusive integer range written "a-b", or "a-b:step" (every step-th value): how layer
/// sweeps ("6-18:3"), scan windows ("12-18") and top-k windows of variants ("1-3") are written.
public struct IntRange: Sendable, Equatable, CustomStringConvertible {
    public var lower: Int
    public var upper: Int
    public var step: Int

    public init(lower: Int, upper: Int, step: Int = 1) throws {
        guard step >= 1 else { throw RangeFormatError("the step must be at least 1") }
        guard lower <= upper else { throw RangeFormatError("the range is empty (\(lower) > \(upper))") }
        self.lower = lower
        self.upper = upper
        self.step = step
    }

    /// Parses "a-b" or "a-b:step" (spaces ignored; bounds ≥ 0). The error says what is wrong;
    /// callers prefix the option or key it came from.
    public init(parsing text: String, allowStep: Bool = true) throws {
        let parts = text.replacingOccurrences(of: " ", with: "").split(separator: ":", omittingEmptySubsequences: false)
        let bounds = parts.first?.split(separator: "-", omittingEmptySubsequences: false) ?? []
        guard parts.count <= (allowStep ? 2 : 1), bounds.count == 2, let a = Int(bounds[0]), let b = Int(bounds[1]), a >= 0 else {
            throw RangeFormatError(allowStep ? "not a range: write a-b (e.g. 6-18) or a-b:step (6-18:3, every 3rd)" : "not a range: write a-b (e.g. 12-18)")
        }
        var step = 1
        if parts.count == 2 {
            guard let s = Int(parts[1]) else { throw RangeFormatError("step \"\(parts[1])\" is not an integer") }
            step = s
        }
        try self.init(lower: a, upper: b, step: step)
    }

    public var values: [Int] { Array(stride(from: lower, through: upper, by: step)) }
    public var closed: ClosedRange<Int> { lower...upper }
    public var description: String { step == 1 ? "\(lower)-\(upper)" : "\(lower)-\(upper):\(step)" }
}

public struct RangeFormatError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
