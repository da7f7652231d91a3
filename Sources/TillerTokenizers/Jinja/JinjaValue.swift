import Foundation
import TillerFormats

// Values inside the Jinja interpreter, with Python's semantics for truthiness, equality, ordering and
// printing (jinja2 prints values with Python's str()).

final class Namespace {
    var attributes: [String: JValue]
    init(_ attributes: [String: JValue]) { self.attributes = attributes }
}

struct JDict {
    private(set) var keys: [String] = []
    private var storage: [RawKey: JValue] = [:]

    init() {}
    init(_ pairs: [(String, JValue)]) { for (k, v) in pairs { self[k] = v } }

    subscript(key: String) -> JValue? {
        get { storage[RawKey(key)] }
        set {
            let k = RawKey(key)
            if storage[k] == nil, newValue != nil { keys.append(key) }
            if newValue == nil { keys.removeAll { sameText($0, key) } }
            storage[k] = newValue
        }
    }
    var count: Int { keys.count }
    var pairs: [(String, JValue)] { keys.map { ($0, storage[RawKey($0)]!) } }
}

typealias JCallable = (_ args: [JValue], _ kwargs: [(String, JValue)]) throws -> JValue

indirect enum JValue {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case list([JValue])
    case tuple([JValue])
    case dict(JDict)
    case namespace(Namespace)
    case callable(String, JCallable)

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let v): return v != 0
        case .float(let v): return v != 0
        case .string(let s): return !s.isEmpty
        case .list(let a), .tuple(let a): return !a.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .callable: return true
        }
    }

    /// Python's str().
    var str: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python's repr(), which str() of a container uses for its items.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let v): return String(v)
        case .float(let v): return pythonFloat(v)
        case .string(let s): return pythonStringRepr(s)
        case .list(let a): return "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case .tuple(let a): return a.count == 1 ? "(" + a[0].repr + ",)" : "(" + a.map(\.repr).joined(separator: ", ") + ")"
        case .dict(let d): return "{" + d.pairs.map { pythonStringRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let n): return "<Namespace \(n.attributes.keys.sorted())>"
        case .callable(let name, _): return "<function \(name)>"
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .callable: return "function"
        }
    }

    var number: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .float(let v): return v
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Items when iterating (a dict iterates over its keys, a string over its characters).
    func iterate() throws -> [JValue] {
        switch self {
        case .undefined: return []
        case .list(let a), .tuple(let a): return a
        case .dict(let d): return d.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        default: throw JinjaError("'\(typeName)' object is not iterable")
        }
    }
}

func pythonFloat(_ v: Double) -> String {
    if v.isNaN { return "nan" }
    if v.isInfinite { return v > 0 ? "inf" : "-inf" }
    var s = "\(v)"
    if let e = s.firstIndex(of: "e") {
        // Python writes exponents with at least two digits and a sign: 1e-05, 1e+16.
        var mantissa = String(s[..<e])
        var exponent = String(s[s.index(after: e)...])
        if mantissa.hasSuffix(".0") { mantissa.removeLast(2) }
        var sign = "+"
        if exponent.hasPrefix("-") { sign = "-"; exponent.removeFirst() } else if exponent.hasPrefix("+") { exponent.removeFirst() }
        if exponent.count < 2 { exponent = "0" + exponent }
        s = mantissa + "e" + sign + exponent
    }
    return s
}

func pythonStringRepr(_ s: String) -> String {
    let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
    var out = String(quote)
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(scalar) == quote { out += "\\" + String(quote) }
            else if scalar.value < 0x20 || scalar.value == 0x7F { out += String(format: "\\x%02x", scalar.value) }
            else { out.unicodeScalars.append(scalar) }
        }
    }
    out.append(quote)
    return out
}

/// Python ==.
func jinjaEqual(_ a: JValue, _ b: JValue) -> Bool {
    switch (a, b) {
    case (.undefined, .undefined), (.none, .none): return true
    case (.string(let x), .string(let y)): return sameText(x, y)
    case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
        return x.count == y.count && zip(x, y).allSatisfy(jinjaEqual)
    case (.dict(let x), .dict(let y)):
        return x.count == y.count && x.pairs.allSatisfy { k, v in y[k].map { jinjaEqual(v, $0) } ?? false }
    case (.namespace(let x), .namespace(let y)): return x === y
    default:
        if let x = a.number, let y = b.number { return x == y }
        return false
    }
}

/// Python <, for the types that order.
func jinjaLess(_ a: JValue, _ b: JValue) throws -> Bool {
    switch (a, b) {
    case (.string(let x), .string(let y)):
        return x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars)
    case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
        for (p, q) in zip(x, y) where !jinjaEqual(p, q) { return try jinjaLess(p, q) }
        return x.count < y.count
    default:
        if let x = a.number, let y = b.number { return x < y }
        throw JinjaError("'<' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
    }
}

/// JSON as Python's json.dumps writes it (ensure_ascii off, as transformers' tojson filter sets).
func pythonJSON(_ v: JValue, indent: Int?, level: Int = 0, separators: (String, String)? = nil) throws -> String {
    let itemSeparator = separators?.0 ?? (indent == nil ? ", " : ",")
    let keySeparator = separators?.1 ?? ": "
    func newline(_ l: Int) -> String { indent.map { "\n" + String(repeating: " ", count: $0 * l) } ?? "" }
    switch v {
    case .none, .undefined: return "null"
    case .bool(let b): return b ? "true" : "false"
    case .int(let i): return String(i)
    case .float(let d):
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
        return pythonFloat(d)
    case .string(let s): return jsonString(s)
    case .list(let a), .tuple(let a):
        if a.isEmpty { return "[]" }
        let items = try a.map { try pythonJSON($0, indent: indent, level: level + 1, separators: separators) }
        return "[" + newline(level + 1) + items.joined(separator: itemSeparator + newline(level + 1)) + newline(level) + "]"
    case .dict(let d):
        if d.count == 0 { return "{}" }
        let items = try d.pairs.map { k, val in
            jsonString(k) + keySeparator + (try pythonJSON(val, indent: indent, level: level + 1, separators: separators))
        }
        return "{" + newline(level + 1) + items.joined(separator: itemSeparator + newline(level + 1)) + newline(level) + "}"
    case .namespace, .callable:
        throw JinjaError("Object of type \(v.typeName) is not JSON serializable")
    }
}

/// Converts Swift values (strings, numbers, booleans, arrays, dictionaries) into template values.
func jinjaValue(_ any: Any?) -> JValue {
    guard let any else { return .none }
    switch any {
    case let v as JValue: return v
    case is NSNull: return .none
    case let s as String: return .string(s)
    case let b as Bool where type(of: any) == Bool.self: return .bool(b)
    case let i as Int where type(of: any) == Int.self: return .int(i)
    case let d as Double where type(of: any) == Double.self: return .float(d)
    case let n as NSNumber:
        let d = n.doubleValue
        return d == d.rounded() && abs(d) < 1e15 ? .int(n.intValue) : .float(d)
    case let a as [Any]: return .list(a.map(jinjaValue))
    case let m as ChatMessage: return .dict(JDict([("role", .string(m.role)), ("content", .string(m.content))]))
    case let d as [String: Any]:
        // A Swift dictionary has no order; sorting keeps renders stable.
        return .dict(JDict(d.keys.sorted().map { ($0, jinjaValue(d[$0])) }))
    default: return .string("\(any)")
    }
}

/// A JSON document as template values, keeping the order of object keys (which tojson and loops show).
func parseJSONValue(_ text: String) throws -> JValue {
    var p = JSONValueParser(Array(text.unicodeScalars))
    let v = try p.value()
    p.skipSpace()
    guard p.i == p.s.count else { throw JinjaError("trailing characters after JSON value") }
    return v
}

private struct JSONValueParser {
    let s: [Unicode.Scalar]
    var i = 0
    init(_ s: [Unicode.Scalar]) { self.s = s }

    mutating func skipSpace() { while i < s.count, [" ", "\n", "\r", "\t"].contains(s[i]) { i += 1 } }

    mutating func literal(_ word: String, _ v: JValue) throws -> JValue {
        for c in word.unicodeScalars {
            guard i < s.count, s[i] == c else { throw JinjaError("bad JSON literal") }
            i += 1
        }
        return v
    }

    mutating func value() throws -> JValue {
        skipSpace()
        guard i < s.count else { throw JinjaError("unexpected end of JSON") }
        switch s[i] {
        case "{":
            i += 1
            var d = JDict()
            skipSpace()
            if i < s.count, s[i] == "}" { i += 1; return .dict(d) }
            while true {
                skipSpace()
                guard case .string(let k) = try value() else { throw JinjaError("JSON object key is not a string") }
                skipSpace()
                guard i < s.count, s[i] == ":" else { throw JinjaError("expected ':' in JSON object") }
                i += 1
                d[k] = try value()
                skipSpace()
                guard i < s.count else { throw JinjaError("unexpected end of JSON") }
                if s[i] == "," { i += 1; continue }
                if s[i] == "}" { i += 1; return .dict(d) }
                throw JinjaError("expected ',' or '}' in JSON object")
            }
        case "[":
            i += 1
            var a: [JValue] = []
            skipSpace()
            if i < s.count, s[i] == "]" { i += 1; return .list(a) }
            while true {
                a.append(try value())
                skipSpace()
                guard i < s.count else { throw JinjaError("unexpected end of JSON") }
                if s[i] == "," { i += 1; continue }
                if s[i] == "]" { i += 1; return .list(a) }
                throw JinjaError("expected ',' or ']' in JSON array")
            }
        case "\"":
            i += 1
            var out = String.UnicodeScalarView()
            while i < s.count, s[i] != "\"" {
                if s[i] == "\\" {
                    i += 1
                    guard i < s.count else { break }
                    switch s[i] {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "r": out.append("\r")
                    case "b": out.append("\u{08}")
                    case "f": out.append("\u{0C}")
                    case "u":
                        func hex4(_ at: Int) -> UInt32? {
                            guard at + 4 <= s.count else { return nil }
                            return UInt32(String(String.UnicodeScalarView(s[at..<(at + 4)])), radix: 16)
                        }
                        guard var v = hex4(i + 1) else { throw JinjaError("bad \\u escape in JSON") }
                        i += 4
                        if (0xD800..<0xDC00).contains(v), i + 2 < s.count, s[i + 1] == "\\", s[i + 2] == "u", let lo = hex4(i + 3) {
                            v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                            i += 6
                        }
                        out.append(Unicode.Scalar(v) ?? "\u{FFFD}")
                    default: out.append(s[i])
                    }
                    i += 1
                } else {
                    out.append(s[i])
                    i += 1
                }
            }
            i += 1
            return .string(String(out))
        case "t": return try literal("true", .bool(true))
        case "f": return try literal("false", .bool(false))
        case "n": return try literal("null", .none)
        default:
            let start = i
            var isFloat = false
            while i < s.count, "+-0123456789.eE".unicodeScalars.contains(s[i]) {
                if ".eE".unicodeScalars.contains(s[i]) { isFloat = true }
                i += 1
            }
            let text = String(String.UnicodeScalarView(s[start..<i]))
            if !isFloat, let v = Int(text) { return .int(v) }
            guard let d = Double(text) else { throw JinjaError("bad JSON number \(text)") }
            return .float(d)
        }
    }
}
