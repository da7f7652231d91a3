import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Jinja filters and tests (`x | tojson`, `x is defined`) as chat templates use them, with Python's
// semantics where jinja2 follows them.

extension JinjaInterpreter {
    // MARK: filters

    func applyFilter(_ name: String, _ v: JValue, _ args: [JValue], _ kwargs: [(String, JValue)]) throws -> JValue {
        func arg(_ i: Int, _ key: String) -> JValue? {
            if let kw = kwargs.first(where: { $0.0 == key }) { return kw.1 }
            return i < args.count ? args[i] : nil
        }
        func attributeOf(_ item: JValue, _ path: String) throws -> JValue {
            var cur = item
            for part in path.split(separator: ".") {
                if let i = Int(part) { cur = try self.item(cur, .int(i)) } else { cur = try self.item(cur, .string(String(part))) }
            }
            return cur
        }
        func sortKey(_ x: JValue, caseSensitive: Bool) -> JValue {
            if !caseSensitive, case .string(let s) = x { return .string(s.lowercased()) }
            return x
        }
        switch name {
        case "trim":
            var chars: Set<Unicode.Scalar>? = nil
            if case .string(let c)? = arg(0, "chars") { chars = Set(c.unicodeScalars) }
            return .string(pythonStrip(v.str, chars: chars, left: true, right: true))
        case "upper": return .string(v.str.uppercased())
        case "lower": return .string(v.str.lowercased())
        case "title": return .string(pythonTitle(v.str))
        case "capitalize": return .string(pythonCapitalize(v.str))
        case "replace":
            guard let old = arg(0, "old"), let new = arg(1, "new") else { throw JinjaError("replace needs old and new") }
            var count = -1
            if case .int(let c)? = arg(2, "count") { count = c }
            return .string(pythonReplace(v.str, old.str, new.str, count: count))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .list(let a), .tuple(let a): return .int(a.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw JinjaError("object of type '\(v.typeName)' has no len()")
            }
        case "join":
            var items = try v.iterate()
            if case .string(let attr)? = arg(1, "attribute") { items = try items.map { try attributeOf($0, attr) } }
            return .string(items.map(\.str).joined(separator: arg(0, "d")?.str ?? ""))
        case "first": return try v.iterate().first ?? .undefined("first")
        case "last": return try v.iterate().last ?? .undefined("last")
        case "reverse":
            if case .string(let s) = v { return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed()))) }
            return .list(try v.iterate().reversed())
        case "list": return .list(try v.iterate())
        case "sort":
            let reverse = arg(0, "reverse")?.truthy ?? false
            let caseSensitive = arg(1, "case_sensitive")?.truthy ?? false
            let attr = arg(2, "attribute")?.str
            let items = try v.iterate()
            let keyed = try items.map { ($0, sortKey(attr == nil ? $0 : try attributeOf($0, attr!), caseSensitive: caseSensitive)) }
            var sorted = try mergeSort(keyed) { try jinjaLess($0.1, $1.1) }
            if reverse { sorted = try mergeSort(keyed) { try jinjaLess($1.1, $0.1) } }
            return .list(sorted.map(\.0))
        case "unique":
            let caseSensitive = arg(0, "case_sensitive")?.truthy ?? false
            var seen: [JValue] = []
            var out: [JValue] = []
            for item in try v.iterate() {
                let key = sortKey(item, caseSensitive: caseSensitive)
                if !seen.contains(where: { jinjaEqual($0, key) }) { seen.append(key); out.append(item) }
            }
            return .list(out)
        case "min", "max":
            let caseSensitive = arg(0, "case_sensitive")?.truthy ?? false
            let items = try v.iterate()
            guard var best = items.first else { return .undefined(name) }
            for item in items.dropFirst() {
                let better = name == "min"
                    ? try jinjaLess(sortKey(item, caseSensitive: caseSensitive), sortKey(best, caseSensitive: caseSensitive))
                    : try jinjaLess(sortKey(best, caseSensitive: caseSensitive), sortKey(item, caseSensitive: caseSensitive))
                if better { best = item }
            }
            return best
        case "sum":
            var total = arg(1, "start") ?? .int(0)
            for item in try v.iterate() {
                let x = try arg(0, "attribute").map { try attributeOf(item, $0.str) } ?? item
                total = try binary("+", total, x)
            }
            return total
        case "string": return .string(v.str)
        case "int":
            let dflt = arg(0, "default") ?? .int(0)
            switch v {
            case .int: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .float(let d): return .int(Int(d))
            case .string(let s):
                let t = s.trimmingCharacters(in: .whitespaces)
                if let i = Int(t) { return .int(i) }
                if let d = Double(t) { return .int(Int(d)) }
                return dflt
            default: return dflt
            }
        case "float":
            switch v {
            case .int(let i): return .float(Double(i))
            case .float: return v
            case .string(let s): return Double(s.trimmingCharacters(in: .whitespaces)).map { .float($0) } ?? (arg(0, "default") ?? .float(0))
            default: return arg(0, "default") ?? .float(0)
            }
        case "round":
            guard let x = v.number else { throw JinjaError("round of a non-number") }
            var precision = 0
            if case .int(let p)? = arg(0, "precision") { precision = p }
            let method = arg(1, "method")?.str ?? "common"
            let scale = pow(10.0, Double(precision))
            let rule: FloatingPointRoundingRule = method == "ceil" ? .up : method == "floor" ? .down : .toNearestOrAwayFromZero
            return .float((x * scale).rounded(rule) / scale)
        case "abs":
            switch v {
            case .int(let i): return .int(abs(i))
            case .float(let d): return .float(abs(d))
            default: throw JinjaError("bad operand type for abs(): '\(v.typeName)'")
            }
        case "default", "d":
            let dflt = arg(0, "default_value") ?? .string("")
            let boolean = arg(1, "boolean")?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return dflt }
            return v
        case "tojson":
            var indent: Int? = nil
            if case .int(let i)? = arg(0, "indent") { indent = i }
            var separators: (String, String)? = nil
            if case .tuple(let s)? = arg(2, "separators"), s.count == 2 { separators = (s[0].str, s[1].str) }
            if case .list(let s)? = arg(2, "separators"), s.count == 2 { separators = (s[0].str, s[1].str) }
            return .string(try pythonJSON(v, indent: indent, separators: separators))
        case "items":
            guard case .dict(let d) = v else {
                if v.isUndefined { return .list([]) }
                throw JinjaError("items filter on '\(v.typeName)'")
            }
            return .list(d.pairs.map { .tuple([.string($0.0), $0.1]) })
        case "dictsort":
            guard case .dict(let d) = v else { throw JinjaError("dictsort on '\(v.typeName)'") }
            let caseSensitive = arg(0, "case_sensitive")?.truthy ?? false
            let byValue = arg(1, "by")?.str == "value"
            let reverse = arg(2, "reverse")?.truthy ?? false
            var pairs = try mergeSort(d.pairs) { a, b in
                try jinjaLess(sortKey(byValue ? a.1 : .string(a.0), caseSensitive: caseSensitive),
                              sortKey(byValue ? b.1 : .string(b.0), caseSensitive: caseSensitive))
            }
            if reverse { pairs.reverse() }
            return .list(pairs.map { .tuple([.string($0.0), $0.1]) })
        case "selectattr", "rejectattr":
            guard let attr = args.first?.str else { throw JinjaError("\(name) needs an attribute name") }
            let testName = args.count > 1 ? args[1].str : nil
            let testArgs = Array(args.dropFirst(2))
            return .list(try v.iterate().filter { item in
                let x = try attributeOf(item, attr)
                let ok = try testName.map { try applyTest($0, x, testArgs) } ?? x.truthy
                return name == "selectattr" ? ok : !ok
            })
        case "select", "reject":
            let testName = args.first?.str
            let testArgs = Array(args.dropFirst())
            return .list(try v.iterate().filter { item in
                let ok = try testName.map { try applyTest($0, item, testArgs) } ?? item.truthy
                return name == "select" ? ok : !ok
            })
        case "map":
            if let attr = kwargs.first(where: { $0.0 == "attribute" })?.1.str {
                let dflt = kwargs.first(where: { $0.0 == "default" })?.1
                return .list(try v.iterate().map { item in
                    let x = try attributeOf(item, attr)
                    return x.isUndefined ? (dflt ?? x) : x
                })
            }
            guard let filterName = args.first?.str else { throw JinjaError("map needs a filter name or attribute=") }
            let rest = Array(args.dropFirst())
            return .list(try v.iterate().map { try applyFilter(filterName, $0, rest, []) })
        case "indent":
            var width = "    "
            if case .int(let w)? = arg(0, "width") { width = String(repeating: " ", count: w) }
            if case .string(let w)? = arg(0, "width") { width = w }
            let first = arg(1, "first")?.truthy ?? false
            let blank = arg(2, "blank")?.truthy ?? false
            var lines = (v.str + "\n").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            lines.removeLast()
            var out: String
            if blank {
                out = lines.joined(separator: "\n" + width)
            } else {
                out = lines.first ?? ""
                if lines.count > 1 { out += "\n" + lines.dropFirst().map { $0.isEmpty ? $0 : width + $0 }.joined(separator: "\n") }
            }
            if first { out = width + out }
            return .string(out)
        case "batch":
            guard case .int(let size)? = arg(0, "linecount"), size > 0 else { throw JinjaError("batch needs a positive size") }
            let fill = arg(1, "fill_with")
            var out: [JValue] = []
            var current: [JValue] = []
            for item in try v.iterate() {
                current.append(item)
                if current.count == size { out.append(.list(current)); current = [] }
            }
            if !current.isEmpty {
                if let fill { while current.count < size { current.append(fill) } }
                out.append(.list(current))
            }
            return .list(out)
        case "format":
            return .string(try pythonPercentFormat(v.str, args))
        case "safe": return v
        case "e", "escape", "forceescape":
            var s = ""
            for c in v.str {
                switch c {
                case "&": s += "&amp;"
                case "<": s += "&lt;"
                case ">": s += "&gt;"
                case "\"": s += "&#34;"
                case "'": s += "&#39;"
                default: s.append(c)
                }
            }
            return .string(s)
        case "wordcount":
            return .int(v.str.split(whereSeparator: { $0.isWhitespace }).count)
        case "attr":
            return try attribute(v, args.first?.str ?? "")
        default:
            throw JinjaError("No filter named '\(name)'.")
        }
    }

    // MARK: tests

    func applyTest(_ name: String, _ v: JValue, _ args: [JValue]) throws -> Bool {
        let other = args.first ?? .undefined("argument")
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true }; return false
        case "string": if case .string = v { return true }; return false
        case "number": switch v { case .int, .float: return true; default: return false }
        case "integer": if case .int = v { return true }; return false
        case "float": if case .float = v { return true }; return false
        case "boolean": return v.isBool
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "iterable": switch v { case .list, .tuple, .dict, .string: return true; default: return false }
        case "sequence": switch v { case .list, .tuple, .dict, .string: return true; default: return false }
        case "mapping": if case .dict = v { return true }; return false
        case "callable": if case .callable = v { return true }; return false
        case "odd": if case .int(let i) = v { return i % 2 != 0 }; throw JinjaError("odd test on '\(v.typeName)'")
        case "even": if case .int(let i) = v { return i % 2 == 0 }; throw JinjaError("even test on '\(v.typeName)'")
        case "divisibleby":
            guard case .int(let i) = v, case .int(let d) = other, d != 0 else { throw JinjaError("divisibleby needs integers") }
            return i % d == 0
        case "eq", "equalto", "==": return jinjaEqual(v, other)
        case "ne", "!=": return !jinjaEqual(v, other)
        case "lt", "lessthan", "<": return try jinjaLess(v, other)
        case "le", "<=": return try !jinjaLess(other, v)
        case "gt", "greaterthan", ">": return try jinjaLess(other, v)
        case "ge", ">=": return try !jinjaLess(v, other)
        case "in": return try contains(other, v)
        case "sameas":
            switch (v, other) {
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.namespace(let a), .namespace(let b)): return a === b
            default: return false
            }
        case "lower": return v.str == v.str.lowercased()
        case "upper": return v.str == v.str.uppercased()
        default: throw JinjaError("No test named '\(name)'.")
        }
    }
}
