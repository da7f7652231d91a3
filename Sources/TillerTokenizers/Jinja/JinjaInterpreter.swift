import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A compiled Jinja template: the subset of jinja2 that chat templates use, rendered with the environment
/// transformers sets up (trim_blocks, lstrip_blocks, loop controls, `raise_exception`, `strftime_now`,
/// `namespace`, a `tojson` that does not escape HTML).
public struct JinjaTemplate: @unchecked Sendable {
    let nodes: [Node]

    public init(_ source: String) throws {
        var lexer = JinjaLexer(source)
        var parser = JinjaParser(try lexer.parts())
        nodes = try parser.parseTemplate()
    }

    /// Renders with variables given as Swift values (strings, numbers, booleans, arrays, dictionaries, ChatMessage).
    public func render(_ context: [String: Any]) throws -> String {
        try render(values: context.mapValues(jinjaValue))
    }

    /// Renders with variables given as a JSON object (its key order is kept).
    public func render(json: String) throws -> String {
        guard case .dict(let d) = try parseJSONValue(json) else { throw JinjaError("the context is not a JSON object") }
        return try render(values: Dictionary(uniqueKeysWithValues: d.pairs))
    }

    func render(values: [String: JValue]) throws -> String {
        let interpreter = JinjaInterpreter(globals: values)
        var out = ""
        _ = try interpreter.run(nodes, into: &out)
        return out
    }
}

enum JinjaFlow { case normal, breakLoop, continueLoop }

final class JinjaInterpreter {
    var scopes: [[String: JValue]]

    init(globals: [String: JValue]) {
        var builtins: [String: JValue] = [:]
        builtins["raise_exception"] = .callable("raise_exception") { args, _ in
            throw JinjaError(args.first?.str ?? "")
        }
        builtins["strftime_now"] = .callable("strftime_now") { args, _ in
            .string(strftimeNow(args.first?.str ?? ""))
        }
        builtins["namespace"] = .callable("namespace") { args, kwargs in
            var attrs: [String: JValue] = [:]
            if case .dict(let d)? = args.first { for (k, v) in d.pairs { attrs[k] = v } }
            for (k, v) in kwargs { attrs[k] = v }
            return .namespace(Namespace(attrs))
        }
        builtins["dict"] = .callable("dict") { args, kwargs in
            var d = JDict()
            if case .dict(let base)? = args.first { d = base }
            for (k, v) in kwargs { d[k] = v }
            return .dict(d)
        }
        builtins["range"] = .callable("range") { args, _ in
            let ints = try args.map { a -> Int in
                guard case .int(let v) = a else { throw JinjaError("range() takes integers") }
                return v
            }
            let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count > 2 ? ints[2] : 1)
            guard step != 0 else { throw JinjaError("range() arg 3 must not be zero") }
            return .list(Swift.stride(from: start, to: stop, by: step).map { .int($0) })
        }
        scopes = [builtins.merging(globals) { $1 }, [:]]
    }

    // MARK: statements

    func run(_ nodes: [Node], into out: inout String) throws -> JinjaFlow {
        for node in nodes {
            switch node {
            case .text(let s):
                out += s
            case .output(let e):
                out += try eval(e).str
            case .ifBlock(let branches, let elseBody):
                var taken = false
                for (condition, body) in branches where try eval(condition).truthy {
                    taken = true
                    let flow = try run(body, into: &out)
                    if flow != .normal { return flow }
                    break
                }
                if !taken, let elseBody {
                    let flow = try run(elseBody, into: &out)
                    if flow != .normal { return flow }
                }
            case .forLoop(let targets, let iterableExpr, let condition, let body, let elseBody):
                try runFor(targets, iterableExpr, condition, body, elseBody, into: &out)
            case .set(let targets, let attribute, let valueExpr):
                let value = try eval(valueExpr)
                if let attribute {
                    guard case .namespace(let ns) = lookup(targets[0]) else {
                        throw JinjaError("cannot assign attribute on non-namespace object")
                    }
                    ns.attributes[attribute] = value
                } else if targets.count == 1 {
                    scopes[scopes.count - 1][targets[0]] = value
                } else {
                    let items = try value.iterate()
                    guard items.count == targets.count else {
                        throw JinjaError("cannot unpack \(items.count) values into \(targets.count) names")
                    }
                    for (t, v) in zip(targets, items) { scopes[scopes.count - 1][t] = v }
                }
            case .setBlock(let name, let body):
                var captured = ""
                _ = try run(body, into: &captured)
                scopes[scopes.count - 1][name] = .string(captured)
            case .macro(let name, let params, let body):
                let defaults = try params.map { ($0.0, try $0.1.map(eval)) }
                scopes[scopes.count - 1][name] = .callable(name) { [unowned self] args, kwargs in
                    var frame: [String: JValue] = [:]
                    for (i, (param, dflt)) in defaults.enumerated() {
                        if i < args.count { frame[param] = args[i] }
                        else if let kw = kwargs.first(where: { $0.0 == param }) { frame[param] = kw.1 }
                        else { frame[param] = dflt ?? .undefined(param) }
                    }
                    let saved = self.scopes
                    self.scopes = [saved[0], saved[1], frame]
                    defer { self.scopes = saved }
                    var text = ""
                    _ = try self.run(body, into: &text)
                    return .string(text)
                }
            case .filterBlock(let name, let argExprs, let body):
                var captured = ""
                _ = try run(body, into: &captured)
                out += try applyFilter(name, .string(captured), try argExprs.map(eval), []).str
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            }
        }
        return .normal
    }

    func runFor(_ targets: [String], _ iterableExpr: Expr, _ condition: Expr?, _ body: [Node],
                        _ elseBody: [Node]?, into out: inout String) throws {
        var items = try eval(iterableExpr).iterate()
        if let condition {
            items = try items.filter { item in
                scopes.append(try bind(targets, item))
                defer { scopes.removeLast() }
                return try eval(condition).truthy
            }
        }
        if items.isEmpty {
            if let elseBody { _ = try run(elseBody, into: &out) }
            return
        }
        let n = items.count
        for (index, item) in items.enumerated() {
            var frame = try bind(targets, item)
            var loop = JDict()
            loop["index"] = .int(index + 1)
            loop["index0"] = .int(index)
            loop["revindex"] = .int(n - index)
            loop["revindex0"] = .int(n - index - 1)
            loop["first"] = .bool(index == 0)
            loop["last"] = .bool(index == n - 1)
            loop["length"] = .int(n)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = index > 0 ? items[index - 1] : .undefined("previtem")
            loop["nextitem"] = index + 1 < n ? items[index + 1] : .undefined("nextitem")
            loop["cycle"] = .callable("cycle") { args, _ in
                guard !args.isEmpty else { throw JinjaError("no items for cycling given") }
                return args[index % args.count]
            }
            frame["loop"] = .dict(loop)
            scopes.append(frame)
            let flow = try run(body, into: &out)
            scopes.removeLast()
            if flow == .breakLoop { break }
        }
    }

    func bind(_ targets: [String], _ item: JValue) throws -> [String: JValue] {
        if targets.count == 1 { return [targets[0]: item] }
        let parts = try item.iterate()
        guard parts.count == targets.count else {
            throw JinjaError("cannot unpack \(parts.count) values into \(targets.count) loop variables")
        }
        return Dictionary(uniqueKeysWithValues: zip(targets, parts))
    }

    func lookup(_ name: String) -> JValue {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined(name)
    }

    // MARK: expressions

    func eval(_ e: Expr) throws -> JValue {
        switch e {
        case .literal(let v): return v
        case .name(let n): return lookup(n)
        case .list(let items): return .list(try items.map(eval))
        case .tuple(let items): return .tuple(try items.map(eval))
        case .dict(let pairs):
            var d = JDict()
            for (k, v) in pairs { d[try eval(k).str] = try eval(v) }
            return .dict(d)
        case .attribute(let base, let name):
            return try attribute(try eval(base), name)
        case .subscript(let base, let index):
            return try item(try eval(base), try eval(index))
        case .slice(let base, let a, let b, let c):
            return try slice(try eval(base), try a.map(eval), try b.map(eval), try c.map(eval))
        case .call(let callee, let argExprs, let kwargExprs):
            let f = try eval(callee)
            let args = try argExprs.map(eval)
            let kwargs = try kwargExprs.map { ($0.0, try eval($0.1)) }
            guard case .callable(_, let fn) = f else {
                if case .undefined(let n) = f { throw JinjaError("'\(n)' is undefined") }
                throw JinjaError("'\(f.typeName)' object is not callable")
            }
            return try fn(args, kwargs)
        case .filter(let base, let name, let argExprs, let kwargExprs):
            return try applyFilter(name, try eval(base), try argExprs.map(eval), try kwargExprs.map { ($0.0, try eval($0.1)) })
        case .test(let base, let name, let argExprs, let negated):
            let result = try applyTest(name, try eval(base), try argExprs.map(eval))
            return .bool(negated ? !result : result)
        case .unary(let op, let operand):
            let v = try eval(operand)
            switch (op, v) {
            case ("-", .int(let i)): return .int(-i)
            case ("-", .float(let d)): return .float(-d)
            case ("+", .int), ("+", .float): return v
            default: throw JinjaError("bad operand type for unary \(op): '\(v.typeName)'")
            }
        case .binary(let op, let l, let r):
            return try binary(op, try eval(l), try eval(r))
        case .and(let l, let r):
            let a = try eval(l)
            return a.truthy ? try eval(r) : a
        case .or(let l, let r):
            let a = try eval(l)
            return a.truthy ? a : try eval(r)
        case .not(let x):
            return .bool(!(try eval(x).truthy))
        case .conditional(let value, let condition, let otherwise):
            if try eval(condition).truthy { return try eval(value) }
            return try otherwise.map(eval) ?? .undefined("conditional")
        }
    }

    func binary(_ op: String, _ a: JValue, _ b: JValue) throws -> JValue {
        func fail() -> JinjaError {
            if case .undefined(let n) = a { return JinjaError("'\(n)' is undefined") }
            if case .undefined(let n) = b { return JinjaError("'\(n)' is undefined") }
            return JinjaError("unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'")
        }
        switch op {
        case "==": return .bool(jinjaEqual(a, b))
        case "!=": return .bool(!jinjaEqual(a, b))
        case "<": return .bool(try jinjaLess(a, b))
        case ">": return .bool(try jinjaLess(b, a))
        case "<=": return .bool(try !jinjaLess(b, a))
        case ">=": return .bool(try !jinjaLess(a, b))
        case "in": return .bool(try contains(b, a))
        case "~": return .string(a.str + b.str)
        default: break
        }
        switch (op, a, b) {
        case ("+", .string(let x), .string(let y)): return .string(x + y)
        case ("+", .list(let x), .list(let y)): return .list(x + y)
        case ("+", .tuple(let x), .tuple(let y)): return .tuple(x + y)
        case ("*", .string(let s), .int(let n)), ("*", .int(let n), .string(let s)):
            return .string(String(repeating: s, count: max(0, n)))
        case ("*", .list(let x), .int(let n)): return .list(Array(repeating: x, count: max(0, n)).flatMap { $0 })
        case ("%", .string(let fmt), _):
            if case .tuple(let items) = b { return .string(try pythonPercentFormat(fmt, items)) }
            return .string(try pythonPercentFormat(fmt, [b]))
        default: break
        }
        let bothInt: (Int, Int)? = {
            switch (a, b) {
            case (.int(let x), .int(let y)): return (x, y)
            case (.bool(let x), .int(let y)): return (x ? 1 : 0, y)
            case (.int(let x), .bool(let y)): return (x, y ? 1 : 0)
            default: return nil
            }
        }()
        guard let x = a.number, let y = b.number, !(a.isBool && b.isBool && op == "/" && false) else { throw fail() }
        switch op {
        case "+": if let (p, q) = bothInt { return .int(p + q) }; return .float(x + y)
        case "-": if let (p, q) = bothInt { return .int(p - q) }; return .float(x - y)
        case "*": if let (p, q) = bothInt { return .int(p * q) }; return .float(x * y)
        case "/":
            guard y != 0 else { throw JinjaError("division by zero") }
            return .float(x / y)
        case "//":
            guard y != 0 else { throw JinjaError("integer division or modulo by zero") }
            if let (p, q) = bothInt { return .int(Int((Double(p) / Double(q)).rounded(.down))) }
            return .float((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw JinjaError("integer division or modulo by zero") }
            if let (p, q) = bothInt { let r = p % q; return .int(r != 0 && (r < 0) != (q < 0) ? r + q : r) }
            let r = x.truncatingRemainder(dividingBy: y)
            return .float(r != 0 && (r < 0) != (y < 0) ? r + y : r)
        case "**":
            if let (p, q) = bothInt, q >= 0 {
                var result = 1
                for _ in 0..<q { result *= p }
                return .int(result)
            }
            return .float(pow(x, y))
        default: throw fail()
        }
    }

    func contains(_ container: JValue, _ item: JValue) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let sub) = item else { throw JinjaError("'in <string>' requires string as left operand, not \(item.typeName)") }
            return sub.isEmpty || scalarRange(of: sub, in: s) != nil
        case .list(let a), .tuple(let a): return a.contains { jinjaEqual($0, item) }
        case .dict(let d):
            guard case .string(let k) = item else { return false }
            return d[k] != nil
        case .undefined: return false
        default: throw JinjaError("argument of type '\(container.typeName)' is not iterable")
        }
    }

    // MARK: attributes and items

    func attribute(_ base: JValue, _ name: String) throws -> JValue {
        switch base {
        case .undefined(let n): throw JinjaError("'\(n)' is undefined")
        case .namespace(let ns): return ns.attributes[name] ?? .undefined(name)
        case .dict(let d):
            if let m = dictMethod(d, name) { return m }
            return d[name] ?? .undefined(name)
        case .string(let s):
            return stringMethod(s, name) ?? .undefined(name)
        case .list, .tuple:
            return .undefined(name)
        default:
            return .undefined(name)
        }
    }

    func item(_ base: JValue, _ index: JValue) throws -> JValue {
        switch (base, index) {
        case (.undefined(let n), _): throw JinjaError("'\(n)' is undefined")
        case (.dict(let d), .string(let k)): return d[k] ?? .undefined(k)
        case (.dict(let d), _): return d[index.str] ?? .undefined(index.str)
        case (.list(let a), .int(let i)), (.tuple(let a), .int(let i)):
            let k = i < 0 ? a.count + i : i
            return k >= 0 && k < a.count ? a[k] : .undefined("[\(i)]")
        case (.string(let s), .int(let i)):
            let scalars = Array(s.unicodeScalars)
            let k = i < 0 ? scalars.count + i : i
            return k >= 0 && k < scalars.count ? .string(String(scalars[k])) : .undefined("[\(i)]")
        case (.namespace(let ns), .string(let k)): return ns.attributes[k] ?? .undefined(k)
        case (_, .string(let k)): return try attribute(base, k)
        default: return .undefined("[\(index.str)]")
        }
    }

    func slice(_ base: JValue, _ a: JValue?, _ b: JValue?, _ c: JValue?) throws -> JValue {
        func int(_ v: JValue?) throws -> Int? {
            switch v {
            case nil, .none?: return nil
            case .int(let i)?: return i
            default: throw JinjaError("slice indices must be integers or None")
            }
        }
        let step = try int(c) ?? 1
        guard step != 0 else { throw JinjaError("slice step cannot be zero") }
        func indices(_ count: Int) throws -> [Int] {
            func clamp(_ v: Int?, _ dflt: Int) -> Int {
                guard var v else { return dflt }
                if v < 0 { v += count }
                return step > 0 ? min(max(v, 0), count) : min(max(v, -1), count - 1)
            }
            let start = clamp(try int(a), step > 0 ? 0 : count - 1)
            let stop = clamp(try int(b), step > 0 ? count : -1)
            return Array(Swift.stride(from: start, to: stop, by: step))
        }
        switch base {
        case .list(let x): return .list(try indices(x.count).map { x[$0] })
        case .tuple(let x): return .tuple(try indices(x.count).map { x[$0] })
        case .string(let s):
            let scalars = Array(s.unicodeScalars)
            return .string(String(String.UnicodeScalarView(try indices(scalars.count).map { scalars[$0] })))
        case .undefined(let n): throw JinjaError("'\(n)' is undefined")
        default: throw JinjaError("'\(base.typeName)' object is not subscriptable")
        }
    }

    func dictMethod(_ d: JDict, _ name: String) -> JValue? {
        switch name {
        case "items": return .callable("items") { _, _ in .list(d.pairs.map { .tuple([.string($0.0), $0.1]) }) }
        case "keys": return .callable("keys") { _, _ in .list(d.keys.map { .string($0) }) }
        case "values": return .callable("values") { _, _ in .list(d.pairs.map { $0.1 }) }
        case "get": return .callable("get") { args, _ in
            guard let k = args.first else { throw JinjaError("get expected at least 1 argument") }
            return d[k.str] ?? (args.count > 1 ? args[1] : .none)
        }
        default: return nil
        }
    }

    func stringMethod(_ s: String, _ name: String) -> JValue? {
        func charsArg(_ args: [JValue]) -> Set<Unicode.Scalar>? {
            if case .string(let c)? = args.first { return Set(c.unicodeScalars) }
            return nil
        }
        switch name {
        case "strip", "lstrip", "rstrip":
            return .callable(name) { args, _ in
                .string(pythonStrip(s, chars: charsArg(args), left: name != "rstrip", right: name != "lstrip"))
            }
        case "upper": return .callable(name) { _, _ in .string(s.uppercased()) }
        case "lower": return .callable(name) { _, _ in .string(s.lowercased()) }
        case "title": return .callable(name) { _, _ in .string(pythonTitle(s)) }
        case "capitalize": return .callable(name) { _, _ in .string(pythonCapitalize(s)) }
        case "startswith", "endswith":
            return .callable(name) { args, _ in
                let candidates: [String]
                switch args.first {
                case .string(let p)?: candidates = [p]
                case .tuple(let items)?, .list(let items)?: candidates = items.map(\.str)
                default: throw JinjaError("\(name) first arg must be str or a tuple of str")
                }
                let scalars = Array(s.unicodeScalars)
                return .bool(candidates.contains { p in
                    let ps = Array(p.unicodeScalars)
                    return name == "startswith" ? scalars.starts(with: ps) : scalars.reversed().starts(with: ps.reversed())
                })
            }
        case "split", "rsplit":
            return .callable(name) { args, kwargs in
                var sep: String? = nil
                if case .string(let x)? = args.first { sep = x }
                if case .string(let x)? = kwargs.first(where: { $0.0 == "sep" })?.1 { sep = x }
                var maxSplit = -1
                if args.count > 1, case .int(let m) = args[1] { maxSplit = m }
                if case .int(let m)? = kwargs.first(where: { $0.0 == "maxsplit" })?.1 { maxSplit = m }
                return .list(pythonSplit(s, sep: sep, maxSplit: maxSplit, fromRight: name == "rsplit").map { .string($0) })
            }
        case "splitlines":
            return .callable(name) { _, _ in .list(s.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map { .string(String($0)) }.dropLastIfEmpty()) }
        case "replace":
            return .callable(name) { args, _ in
                guard args.count >= 2 else { throw JinjaError("replace expected 2 arguments") }
                let count: Int = { if args.count > 2, case .int(let c) = args[2] { return c }; return -1 }()
                return .string(pythonReplace(s, args[0].str, args[1].str, count: count))
            }
        case "join":
            return .callable(name) { args, _ in .string(try (args.first ?? .list([])).iterate().map(\.str).joined(separator: s)) }
        case "find", "rfind", "count":
            return .callable(name) { args, _ in
                let needle = Array((args.first ?? .string("")).str.unicodeScalars)
                let hay = Array(s.unicodeScalars)
                var positions: [Int] = []
                if needle.isEmpty { positions = Array(0...hay.count) } else if hay.count >= needle.count {
                    var i = 0
                    while i + needle.count <= hay.count {
                        if Array(hay[i..<(i + needle.count)]) == needle { positions.append(i); i += name == "count" ? needle.count : 1 } else { i += 1 }
                    }
                }
                if name == "count" { return .int(positions.count) }
                return .int((name == "find" ? positions.first : positions.last) ?? -1)
            }
        case "isdigit": return .callable(name) { _, _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType == .decimal }) }
        case "isspace": return .callable(name) { _, _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(\.properties.isWhitespace)) }
        case "isalpha": return .callable(name) { _, _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(\.properties.isAlphabetic)) }
        case "format":
            return .callable(name) { args, kwargs in .string(try pythonBraceFormat(s, args, kwargs)) }
        default: return nil
        }
    }
}
