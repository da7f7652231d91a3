// Lexing a Jinja template the way jinja2 does with the settings transformers uses for chat templates
// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False): the template is cut into text and
// tags, whitespace control (`-`, `+`) and block trimming are applied, and the inside of each tag is
// tokenized.

public struct JinjaError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

enum JToken: Equatable {
    case name(String)
    case string(String)
    case integer(Int)
    case float(Double)
    case op(String)
}

enum TemplatePart {
    case text(String)
    case output([JToken])
    case statement([JToken])
    case raw(String)
}

struct JinjaLexer {
    let source: [Character]
    var pos = 0

    init(_ template: String) {
        // jinja2 reads \r\n and \r as \n, and drops one trailing newline.
        var text = template.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        if text.hasSuffix("\n") { text.removeLast() }
        source = Array(text)
    }

    private func at(_ i: Int, _ s: String) -> Bool {
        var k = i
        for c in s {
            guard k < source.count, source[k] == c else { return false }
            k += 1
        }
        return true
    }

    mutating func parts() throws -> [TemplatePart] {
        var out: [TemplatePart] = []
        var lineStarting = true
        while pos < source.count {
            // The next tag opener.
            var open = pos
            var kind: Character = " "
            while open < source.count - 1 {
                if source[open] == "{", source[open + 1] == "{" || source[open + 1] == "%" || source[open + 1] == "#" {
                    kind = source[open + 1]
                    break
                }
                open += 1
            }
            if kind == " " {
                out.append(.text(String(source[pos...])))
                break
            }
            var text = String(source[pos..<open])
            var k = open + 2
            var sign: Character? = nil
            if k < source.count, source[k] == "-" || source[k] == "+" { sign = source[k]; k += 1 }
            if sign == "-" {
                while let last = text.last, last.isWhitespace { text.removeLast() }
            } else if sign != "+" && kind != "{" {
                // lstrip_blocks: spaces before a block or comment tag on its own line go.
                let lineStart = text.lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
                let tail = text[lineStart...]
                if (lineStart != text.startIndex || lineStarting) && !tail.isEmpty && tail.allSatisfy(\.isWhitespace) {
                    text = String(text[..<lineStart])
                }
            }
            if !text.isEmpty { out.append(.text(text)) }
            pos = k
            switch kind {
            case "#":
                lineStarting = try skipComment()
            case "{":
                let tokens = try tokenizeTag(end: "}")
                out.append(.output(tokens))
                lineStarting = consumeEnd(end: "}}", trimNewline: false)
            default:
                let tokens = try tokenizeTag(end: "%")
                lineStarting = consumeEnd(end: "%}", trimNewline: true)
                if tokens == [.name("raw")] {
                    let (raw, ls) = try readRaw()
                    out.append(.raw(raw))
                    lineStarting = ls
                } else {
                    out.append(.statement(tokens))
                }
            }
        }
        return out
    }

    /// After the tokens of a tag: `-}}` / `-%}` eat the following whitespace, `%}` one newline (trim_blocks).
    /// Returns whether the consumed text ended with a newline.
    private mutating func consumeEnd(end: String, trimNewline: Bool) -> Bool {
        var ate = false
        if pos < source.count && source[pos] == "-" {
            pos += 1 + end.count
            while pos < source.count && source[pos].isWhitespace { pos += 1; ate = true }
            return ate && source[pos - 1] == "\n"
        }
        if pos < source.count && source[pos] == "+" {
            pos += 1 + end.count
            return false
        }
        pos += end.count
        if trimNewline && pos < source.count && source[pos] == "\n" { pos += 1; return true }
        return false
    }

    private mutating func skipComment() throws -> Bool {
        while pos < source.count - 1 {
            if source[pos] == "#" && source[pos + 1] == "}" {
                let stripBefore = pos > 0 && source[pos - 1] == "-"
                let keep = pos > 0 && source[pos - 1] == "+"
                pos += 2
                if stripBefore {
                    var ate = false
                    while pos < source.count && source[pos].isWhitespace { pos += 1; ate = true }
                    return ate && source[pos - 1] == "\n"
                }
                if !keep && pos < source.count && source[pos] == "\n" { pos += 1; return true }
                return false
            }
            pos += 1
        }
        throw JinjaError("Missing end of comment tag")
    }

    private mutating func readRaw() throws -> (String, Bool) {
        var i = pos
        while i < source.count - 1 {
            if source[i] == "{" && source[i + 1] == "%" {
                var k = i + 2
                var sign: Character? = nil
                if k < source.count, source[k] == "-" || source[k] == "+" { sign = source[k]; k += 1 }
                while k < source.count && source[k].isWhitespace { k += 1 }
                if at(k, "endraw") {
                    k += 6
                    while k < source.count && source[k].isWhitespace && source[k] != "\n" { k += 1 }
                    var content = String(source[pos..<i])
                    if sign == "-" { while let l = content.last, l.isWhitespace { content.removeLast() } }
                    pos = k
                    let ls = consumeEnd(end: "%}", trimNewline: true)
                    return (content, ls)
                }
            }
            i += 1
        }
        throw JinjaError("Missing end of raw directive")
    }

    /// Tokens up to the tag's end (`}}` or `%}`, optionally preceded by - or +), brackets balanced.
    private mutating func tokenizeTag(end: Character) throws -> [JToken] {
        var tokens: [JToken] = []
        var depth = 0
        while true {
            while pos < source.count && source[pos].isWhitespace { pos += 1 }
            guard pos < source.count else { throw JinjaError("unexpected end of template inside a tag") }
            let c = source[pos]
            if depth == 0 {
                if c == end && pos + 1 < source.count && source[pos + 1] == "}" { return tokens }
                if (c == "-" || c == "+") && pos + 2 < source.count && source[pos + 1] == end && source[pos + 2] == "}" { return tokens }
            }
            if c.isLetter || c == "_" {
                var s = ""
                while pos < source.count && (source[pos].isLetter || source[pos].isNumber || source[pos] == "_") { s.append(source[pos]); pos += 1 }
                tokens.append(.name(s))
            } else if c.isASCII && c.isNumber {
                var s = ""
                var isFloat = false
                while pos < source.count {
                    let d = source[pos]
                    if d.isASCII && d.isNumber || d == "_" { if d != "_" { s.append(d) }; pos += 1 }
                    else if d == "." && !isFloat && pos + 1 < source.count && source[pos + 1].isASCII && source[pos + 1].isNumber { isFloat = true; s.append(d); pos += 1 }
                    else if (d == "e" || d == "E") && pos + 1 < source.count && (source[pos + 1].isNumber || source[pos + 1] == "-" || source[pos + 1] == "+") {
                        isFloat = true; s.append(d); pos += 1
                        if source[pos] == "-" || source[pos] == "+" { s.append(source[pos]); pos += 1 }
                    } else { break }
                }
                if isFloat { tokens.append(.float(Double(s) ?? 0)) } else if let v = Int(s) { tokens.append(.integer(v)) } else {
                    throw JinjaError("bad number literal \(s)")
                }
            } else if c == "'" || c == "\"" {
                tokens.append(.string(try readString(quote: c)))
            } else {
                let three = pos + 2 < source.count ? String(source[pos...(pos + 2)]) : ""
                let two = pos + 1 < source.count ? String(source[pos...(pos + 1)]) : ""
                if ["//", "**", "==", "!=", "<=", ">="].contains(two) {
                    tokens.append(.op(two)); pos += 2
                } else if "+-*/%~<>=()[]{}.,:|?".contains(c) {
                    if "([{".contains(c) { depth += 1 }
                    if ")]}".contains(c) { depth -= 1 }
                    tokens.append(.op(String(c))); pos += 1
                } else {
                    _ = three
                    throw JinjaError("unexpected character \(String(c).debugDescription) in a tag")
                }
            }
        }
    }

    /// A string literal with Python escapes.
    private mutating func readString(quote: Character) throws -> String {
        pos += 1
        var s = ""
        while pos < source.count {
            let c = source[pos]
            if c == quote { pos += 1; return s }
            if c == "\\" && pos + 1 < source.count {
                let e = source[pos + 1]
                pos += 2
                switch e {
                case "n": s.append("\n")
                case "t": s.append("\t")
                case "r": s.append("\r")
                case "b": s.append("\u{08}")
                case "f": s.append("\u{0C}")
                case "v": s.append("\u{0B}")
                case "a": s.append("\u{07}")
                case "0": s.append("\u{00}")
                case "\\": s.append("\\")
                case "'": s.append("'")
                case "\"": s.append("\"")
                case "\n": break
                case "x", "u", "U":
                    let count = e == "x" ? 2 : e == "u" ? 4 : 8
                    guard pos + count <= source.count, let v = UInt32(String(source[pos..<(pos + count)]), radix: 16),
                          let scalar = Unicode.Scalar(v) else { throw JinjaError("bad \\\(e) escape in a string literal") }
                    s.unicodeScalars.append(scalar)
                    pos += count
                default:
                    s.append("\\"); s.append(e)
                }
                continue
            }
            s.append(c)
            pos += 1
        }
        throw JinjaError("unterminated string literal")
    }
}
