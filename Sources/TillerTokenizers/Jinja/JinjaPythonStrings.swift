import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Python string and sequence behaviour that chat templates rely on (strip with a character set,
// stable sorts, strftime_now), shared by the interpreter and its filters.

extension JValue {
    var isBool: Bool { if case .bool = self { return true } else { return false } }
}

extension Array where Element == JValue {
    func dropLastIfEmpty() -> [JValue] {
        if case .string("")? = last { return Array(dropLast()) }
        return self
    }
}

/// A stable sort that lets the comparison throw (Python's sort is stable).
func mergeSort<T>(_ items: [T], _ less: (T, T) throws -> Bool) throws -> [T] {
    if items.count < 2 { return items }
    let mid = items.count / 2
    let a = try mergeSort(Array(items[..<mid]), less)
    let b = try mergeSort(Array(items[mid...]), less)
    var out: [T] = []
    out.reserveCapacity(items.count)
    var i = 0, j = 0
    while i < a.count && j < b.count {
        if try less(b[j], a[i]) { out.append(b[j]); j += 1 } else { out.append(a[i]); i += 1 }
    }
    out += a[i...]
    out += b[j...]
    return out
}

func pythonStrip(_ s: String, chars: Set<Unicode.Scalar>?, left: Bool, right: Bool) -> String {
    var scalars = Substring(s).unicodeScalars[...]
    func strip(_ c: Unicode.Scalar) -> Bool { chars.map { $0.contains(c) } ?? c.properties.isWhitespace }
    if left { while let f = scalars.first, strip(f) { scalars.removeFirst() } }
    if right { while let l = scalars.last, strip(l) { scalars.removeLast() } }
    return String(String.UnicodeScalarView(scalars))
}

func pythonTitle(_ s: String) -> String {
    var out = ""
    var previousCased = false
    for c in s {
        out += previousCased ? c.lowercased() : c.uppercased()
        previousCased = c.isLetter
    }
    return out
}

func pythonCapitalize(_ s: String) -> String {
    guard let f = s.first else { return s }
    return f.uppercased() + s.dropFirst().lowercased()
}

func pythonReplace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
    if old.isEmpty { return s }
    var result = ""
    var rest = Substring(s)
    var done = 0
    while count < 0 || done < count, let r = scalarRange(of: old, in: rest) {
        result += rest[..<r.lowerBound] + new
        rest = rest[r.upperBound...]
        done += 1
    }
    return result + rest
}

func pythonSplit(_ s: String, sep: String?, maxSplit: Int, fromRight: Bool) -> [String] {
    guard let sep else {
        var words = s.split(whereSeparator: { $0.isWhitespace }).map(String.init)
        if maxSplit >= 0 && words.count > maxSplit + 1 {
            // Rare in templates: fall back to joining the tail with single spaces.
            if fromRight {
                let head = words[..<(words.count - maxSplit)].joined(separator: " ")
                words = [head] + words[(words.count - maxSplit)...]
            } else {
                let tail = words[maxSplit...].joined(separator: " ")
                words = Array(words[..<maxSplit]) + [tail]
            }
        }
        return words
    }
    var parts = s.components(separatedBy: sep)
    if maxSplit >= 0 && parts.count > maxSplit + 1 {
        if fromRight {
            let head = parts[..<(parts.count - maxSplit)].joined(separator: sep)
            parts = [head] + parts[(parts.count - maxSplit)...]
        } else {
            let tail = parts[maxSplit...].joined(separator: sep)
            parts = Array(parts[..<maxSplit]) + [tail]
        }
    }
    return parts
}

/// Python's `fmt % args` for %s %r %d %i %f %x %%.
func pythonPercentFormat(_ fmt: String, _ args: [JValue]) throws -> String {
    var out = ""
    var it = args.makeIterator()
    var chars = Array(fmt)[...]
    while let c = chars.popFirst() {
        guard c == "%" else { out.append(c); continue }
        var spec = ""
        while let d = chars.first, "0123456789.-+ #".contains(d) { spec.append(d); chars.removeFirst() }
        guard let conv = chars.popFirst() else { throw JinjaError("incomplete format") }
        if conv == "%" { out += "%"; continue }
        guard let a = it.next() else { throw JinjaError("not enough arguments for format string") }
        switch conv {
        case "s": out += a.str
        case "r": out += a.repr
        case "d", "i":
            guard let x = a.number else { throw JinjaError("%d format: a number is required, not \(a.typeName)") }
            out += String(format: "%" + spec + "ld", Int(x))
        case "f", "e", "g":
            guard let x = a.number else { throw JinjaError("%\(conv) format: a number is required") }
            out += String(format: "%" + spec + String(conv), x)
        case "x":
            guard case .int(let x) = a else { throw JinjaError("%x format: an integer is required") }
            out += String(x, radix: 16)
        default: throw JinjaError("unsupported format character '\(conv)'")
        }
    }
    return out
}

/// Python's str.format with {} / {0} / {name} fields (no format specs).
func pythonBraceFormat(_ fmt: String, _ args: [JValue], _ kwargs: [(String, JValue)]) throws -> String {
    var out = ""
    var auto = 0
    var chars = Array(fmt)[...]
    while let c = chars.popFirst() {
        if c == "{" {
            if chars.first == "{" { chars.removeFirst(); out += "{"; continue }
            var field = ""
            while let d = chars.popFirst(), d != "}" { field.append(d) }
            if field.isEmpty { guard auto < args.count else { throw JinjaError("format: not enough arguments") }; out += args[auto].str; auto += 1 }
            else if let i = Int(field) { guard i < args.count else { throw JinjaError("format: index out of range") }; out += args[i].str }
            else { out += kwargs.first(where: { $0.0 == field })?.1.str ?? "" }
        } else if c == "}" && chars.first == "}" {
            chars.removeFirst(); out += "}"
        } else {
            out.append(c)
        }
    }
    return out
}

/// The local time formatted by C's strftime, as Python's datetime.now().strftime.
func strftimeNow(_ format: String) -> String {
    var t = time(nil)
    var tmValue = tm()
    localtime_r(&t, &tmValue)
    var buffer = [Int8](repeating: 0, count: 256)
    let n = strftime(&buffer, buffer.count, format, &tmValue)
    return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Where `needle` first occurs in `haystack`, compared code point by code point (as Python does).
func scalarRange<S: StringProtocol>(of needle: String, in haystack: S) -> Range<S.Index>? {
    let n = Array(needle.unicodeScalars)
    guard let first = n.first else { return nil }
    let scalars = haystack.unicodeScalars
    var i = scalars.startIndex
    while i != scalars.endIndex {
        if scalars[i] == first {
            var j = i
            var k = 0
            while k < n.count && j != scalars.endIndex && scalars[j] == n[k] { j = scalars.index(after: j); k += 1 }
            if k == n.count { return i..<j }
        }
        i = scalars.index(after: i)
    }
    return nil
}
