// Parsing Jinja tags into an AST, following jinja2's grammar and operator precedence:
// conditional < or < and < not < comparisons/in < ~ < + - < * / // % < ** < unary - + < filters, tests,
// attribute access, subscripts and calls.

indirect enum Expr {
    case literal(JValue)
    case name(String)
    case list([Expr])
    case tuple([Expr])
    case dict([(Expr, Expr)])
    case attribute(Expr, String)
    case `subscript`(Expr, Expr)
    case slice(Expr, Expr?, Expr?, Expr?)
    case call(Expr, [Expr], [(String, Expr)])
    case filter(Expr, String, [Expr], [(String, Expr)])
    case test(Expr, String, [Expr], negated: Bool)
    case unary(String, Expr)
    case binary(String, Expr, Expr)
    case and(Expr, Expr)
    case or(Expr, Expr)
    case not(Expr)
    case conditional(Expr, Expr, Expr?)
}

indirect enum Node {
    case text(String)
    case output(Expr)
    case ifBlock([(Expr, [Node])], [Node]?)
    case forLoop(targets: [String], iterable: Expr, condition: Expr?, body: [Node], elseBody: [Node]?)
    case set(targets: [String], attribute: String?, value: Expr)
    case setBlock(name: String, body: [Node])
    case macro(name: String, params: [(String, Expr?)], body: [Node])
    case filterBlock(name: String, args: [Expr], body: [Node])
    case breakLoop
    case continueLoop
}

struct JinjaParser {
    private var parts: [TemplatePart]
    private var index = 0

    init(_ parts: [TemplatePart]) { self.parts = parts }

    mutating func parseTemplate() throws -> [Node] {
        let (nodes, end) = try parseBody(until: [])
        if let end { throw JinjaError("unexpected '\(end)' tag") }
        return nodes
    }

    /// Nodes up to one of the closing tags `until` (returned with its tokens left in `pendingTokens`).
    private var pendingTokens: [JToken] = []

    private mutating func parseBody(until: Set<String>) throws -> ([Node], String?) {
        var nodes: [Node] = []
        while index < parts.count {
            let part = parts[index]
            index += 1
            switch part {
            case .text(let s), .raw(let s):
                nodes.append(.text(s))
            case .output(let tokens):
                var p = ExprParser(tokens)
                let e = try p.parseExpression()
                try p.expectEnd()
                nodes.append(.output(e))
            case .statement(let tokens):
                guard case .name(let keyword)? = tokens.first else { throw JinjaError("a tag without a statement name") }
                if until.contains(keyword) {
                    pendingTokens = tokens
                    return (nodes, keyword)
                }
                nodes.append(try parseStatement(keyword, tokens))
            }
        }
        if !until.isEmpty { throw JinjaError("unexpected end of template: expected one of \(until.sorted())") }
        return (nodes, nil)
    }

    private mutating func parseStatement(_ keyword: String, _ tokens: [JToken]) throws -> Node {
        var p = ExprParser(Array(tokens.dropFirst()))
        switch keyword {
        case "if":
            var branches: [(Expr, [Node])] = []
            var condition = try p.parseExpression()
            try p.expectEnd()
            var elseBody: [Node]? = nil
            while true {
                let (body, end) = try parseBody(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                if end == "elif" {
                    var q = ExprParser(Array(pendingTokens.dropFirst()))
                    condition = try q.parseExpression()
                    try q.expectEnd()
                    continue
                }
                if end == "else" {
                    let (e, _) = try parseBody(until: ["endif"])
                    elseBody = e
                }
                break
            }
            return .ifBlock(branches, elseBody)
        case "for":
            var targets: [String] = []
            repeat {
                guard case .name(let n) = p.next() else { throw JinjaError("for: expected a loop variable") }
                targets.append(n)
            } while p.accept(.op(","))
            guard p.accept(.name("in")) else { throw JinjaError("for: expected 'in'") }
            let iterable = try p.parseExpression(allowConditional: false)
            var condition: Expr? = nil
            if p.accept(.name("if")) { condition = try p.parseExpression() }
            _ = p.accept(.name("recursive"))
            try p.expectEnd()
            let (body, end) = try parseBody(until: ["else", "endfor"])
            var elseBody: [Node]? = nil
            if end == "else" { elseBody = try parseBody(until: ["endfor"]).0 }
            return .forLoop(targets: targets, iterable: iterable, condition: condition, body: body, elseBody: elseBody)
        case "set":
            guard case .name(let first) = p.next() else { throw JinjaError("set: expected a name") }
            if p.atEnd {
                let (body, _) = try parseBody(until: ["endset"])
                return .setBlock(name: first, body: body)
            }
            if p.accept(.op(".")) {
                guard case .name(let attr) = p.next() else { throw JinjaError("set: expected an attribute name") }
                guard p.accept(.op("=")) else { throw JinjaError("set: expected '='") }
                let value = try p.parseExpression()
                try p.expectEnd()
                return .set(targets: [first], attribute: attr, value: value)
            }
            var targets = [first]
            while p.accept(.op(",")) {
                guard case .name(let n) = p.next() else { throw JinjaError("set: expected a name") }
                targets.append(n)
            }
            guard p.accept(.op("=")) else { throw JinjaError("set: expected '='") }
            let value = try p.parseTupleOrExpression()
            try p.expectEnd()
            return .set(targets: targets, attribute: nil, value: value)
        case "macro":
            guard case .name(let name) = p.next(), p.accept(.op("(")) else { throw JinjaError("macro: expected a name and (") }
            var params: [(String, Expr?)] = []
            while !p.accept(.op(")")) {
                guard case .name(let param) = p.next() else { throw JinjaError("macro: expected a parameter name") }
                var dflt: Expr? = nil
                if p.accept(.op("=")) { dflt = try p.parseExpression() }
                params.append((param, dflt))
                _ = p.accept(.op(","))
            }
            try p.expectEnd()
            let (body, _) = try parseBody(until: ["endmacro"])
            return .macro(name: name, params: params, body: body)
        case "filter":
            guard case .name(let name) = p.next() else { throw JinjaError("filter: expected a filter name") }
            var args: [Expr] = []
            if p.accept(.op("(")) {
                while !p.accept(.op(")")) { args.append(try p.parseExpression()); _ = p.accept(.op(",")) }
            }
            try p.expectEnd()
            let (body, _) = try parseBody(until: ["endfilter"])
            return .filterBlock(name: name, args: args, body: body)
        case "generation":
            // transformers' {% generation %} marks assistant text for masks; for rendering it is transparent.
            let (body, _) = try parseBody(until: ["endgeneration"])
            return .ifBlock([(.literal(.bool(true)), body)], nil)
        case "break": return .breakLoop
        case "continue": return .continueLoop
        default:
            throw JinjaError("unknown tag '\(keyword)'")
        }
    }
}

struct ExprParser {
    private let tokens: [JToken]
    private var i = 0

    init(_ tokens: [JToken]) { self.tokens = tokens }

    var atEnd: Bool { i >= tokens.count }
    func peek(_ k: Int = 0) -> JToken? { i + k < tokens.count ? tokens[i + k] : nil }
    mutating func next() -> JToken? { defer { i += 1 }; return peek() }
    mutating func accept(_ t: JToken) -> Bool {
        if peek() == t { i += 1; return true }
        return false
    }
    func expectEnd() throws {
        if let t = peek() { throw JinjaError("unexpected \(t) at the end of a tag") }
    }
    mutating func expect(_ t: JToken) throws {
        guard accept(t) else { throw JinjaError("expected \(t), found \(peek().map { "\($0)" } ?? "end of tag")") }
    }

    /// `a, b` without parentheses makes a tuple (as in `set x = a, b`).
    mutating func parseTupleOrExpression() throws -> Expr {
        let first = try parseExpression()
        guard peek() == .op(",") else { return first }
        var items = [first]
        while accept(.op(",")) {
            if atEnd { break }
            items.append(try parseExpression())
        }
        return .tuple(items)
    }

    mutating func parseExpression(allowConditional: Bool = true) throws -> Expr {
        let e = try parseOr()
        if allowConditional && accept(.name("if")) {
            let condition = try parseOr()
            var otherwise: Expr? = nil
            if accept(.name("else")) { otherwise = try parseExpression() }
            return .conditional(e, condition, otherwise)
        }
        return e
    }

    private mutating func parseOr() throws -> Expr {
        var e = try parseAnd()
        while accept(.name("or")) { e = .or(e, try parseAnd()) }
        return e
    }

    private mutating func parseAnd() throws -> Expr {
        var e = try parseNot()
        while accept(.name("and")) { e = .and(e, try parseNot()) }
        return e
    }

    private mutating func parseNot() throws -> Expr {
        if accept(.name("not")) { return .not(try parseNot()) }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> Expr {
        var e = try parseConcat()
        while true {
            if case .op(let o)? = peek(), ["==", "!=", "<", "<=", ">", ">="].contains(o) {
                i += 1
                e = .binary(o, e, try parseConcat())
            } else if accept(.name("in")) {
                e = .binary("in", e, try parseConcat())
            } else if peek() == .name("not") && peek(1) == .name("in") {
                i += 2
                e = .not(.binary("in", e, try parseConcat()))
            } else {
                return e
            }
        }
    }

    private mutating func parseConcat() throws -> Expr {
        var e = try parseMath1()
        while accept(.op("~")) { e = .binary("~", e, try parseMath1()) }
        return e
    }

    private mutating func parseMath1() throws -> Expr {
        var e = try parseMath2()
        while case .op(let o)? = peek(), o == "+" || o == "-" {
            i += 1
            e = .binary(o, e, try parseMath2())
        }
        return e
    }

    private mutating func parseMath2() throws -> Expr {
        var e = try parsePow()
        while case .op(let o)? = peek(), ["*", "/", "//", "%"].contains(o) {
            i += 1
            e = .binary(o, e, try parsePow())
        }
        return e
    }

    private mutating func parsePow() throws -> Expr {
        var e = try parseUnary(withFilter: true)
        while accept(.op("**")) { e = .binary("**", e, try parseUnary(withFilter: true)) }
        return e
    }

    private mutating func parseUnary(withFilter: Bool) throws -> Expr {
        var e: Expr
        if accept(.op("-")) {
            e = .unary("-", try parseUnary(withFilter: false))
        } else if accept(.op("+")) {
            e = .unary("+", try parseUnary(withFilter: false))
        } else {
            e = try parsePrimary()
        }
        e = try parsePostfix(e)
        if withFilter { e = try parseFilters(e) }
        return e
    }

    private mutating func parsePrimary() throws -> Expr {
        guard let t = next() else { throw JinjaError("unexpected end of expression") }
        switch t {
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .string(var s):
            while case .string(let more)? = peek() { s += more; i += 1 }
            return .literal(.string(s))
        case .integer(let v): return .literal(.int(v))
        case .float(let v): return .literal(.float(v))
        case .op("("):
            if accept(.op(")")) { return .tuple([]) }
            let first = try parseExpression()
            if accept(.op(")")) { return first }
            var items = [first]
            while accept(.op(",")) {
                if peek() == .op(")") { break }
                items.append(try parseExpression())
            }
            try expect(.op(")"))
            return .tuple(items)
        case .op("["):
            var items: [Expr] = []
            while !accept(.op("]")) {
                items.append(try parseExpression())
                if !accept(.op(",")) { try expect(.op("]")); break }
            }
            return .list(items)
        case .op("{"):
            var items: [(Expr, Expr)] = []
            while !accept(.op("}")) {
                let k = try parseExpression()
                try expect(.op(":"))
                items.append((k, try parseExpression()))
                if !accept(.op(",")) { try expect(.op("}")); break }
            }
            return .dict(items)
        default:
            throw JinjaError("unexpected \(t) in an expression")
        }
    }

    private mutating func parsePostfix(_ base: Expr) throws -> Expr {
        var e = base
        while true {
            if accept(.op(".")) {
                switch next() {
                case .name(let n)?: e = .attribute(e, n)
                case .integer(let v)?: e = .subscript(e, .literal(.int(v)))
                default: throw JinjaError("expected an attribute name after '.'")
                }
            } else if accept(.op("[")) {
                e = try parseSubscript(e)
            } else if peek() == .op("(") {
                i += 1
                let (args, kwargs) = try parseCallArgs()
                e = .call(e, args, kwargs)
            } else {
                return e
            }
        }
    }

    private mutating func parseSubscript(_ base: Expr) throws -> Expr {
        var parts: [Expr?] = [nil]
        var sawColon = false
        while !accept(.op("]")) {
            if accept(.op(":")) {
                sawColon = true
                parts.append(nil)
                continue
            }
            parts[parts.count - 1] = try parseExpression()
        }
        if !sawColon {
            guard let index = parts[0] else { throw JinjaError("empty subscript") }
            return .subscript(base, index)
        }
        while parts.count < 3 { parts.append(nil) }
        return .slice(base, parts[0], parts[1], parts[2])
    }

    private mutating func parseCallArgs() throws -> ([Expr], [(String, Expr)]) {
        var args: [Expr] = []
        var kwargs: [(String, Expr)] = []
        while !accept(.op(")")) {
            if case .name(let n)? = peek(), peek(1) == .op("=") {
                i += 2
                kwargs.append((n, try parseExpression()))
            } else {
                args.append(try parseExpression())
            }
            if !accept(.op(",")) { try expect(.op(")")); break }
        }
        return (args, kwargs)
    }

    private mutating func parseFilters(_ base: Expr) throws -> Expr {
        var e = base
        while true {
            if accept(.op("|")) {
                guard case .name(let name)? = next() else { throw JinjaError("expected a filter name after '|'") }
                var args: [Expr] = []
                var kwargs: [(String, Expr)] = []
                if accept(.op("(")) { (args, kwargs) = try parseCallArgs() }
                e = .filter(e, name, args, kwargs)
            } else if accept(.name("is")) {
                let negated = accept(.name("not"))
                guard case .name(let name)? = next() else { throw JinjaError("expected a test name after 'is'") }
                var args: [Expr] = []
                if accept(.op("(")) {
                    args = try parseCallArgs().0
                } else if let t = peek(), startsArgument(t) {
                    args = [try parsePostfix(try parsePrimary())]
                }
                e = .test(e, name, args, negated: negated)
            } else {
                return e
            }
        }
    }

    /// A bare test argument (`is divisibleby 3`, `is sameas false`), as jinja2 allows.
    private func startsArgument(_ t: JToken) -> Bool {
        switch t {
        case .name(let n): return !["else", "or", "and", "is", "if", "in", "not"].contains(n)
        case .string, .integer, .float: return true
        case .op(let o): return o == "[" || o == "{"
        }
    }
}
