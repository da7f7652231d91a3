// Character classes the pre-tokenizer regexes use, as Oniguruma (the regex engine inside HF `tokenizers`)
// defines them: \p{L} (Lu Ll Lt Lm Lo), \p{N} (Nd Nl No) and \s (the Unicode White_Space property).
// A table covers the BMP so the scanners' inner loops are one load; other planes ask the scalar's properties.

enum CharClass: UInt8 {
    case other = 0, letter = 1, number = 2, whitespace = 3
}

enum UnicodeClasses {
    static let bmp: [CharClass] = {
        var table = [CharClass](repeating: .other, count: 0x10000)
        for v in 0..<0x10000 {
            guard let scalar = Unicode.Scalar(UInt32(v)) else { continue }
            table[v] = classify(scalar)
        }
        return table
    }()

    /// The Unicode version of the Oniguruma inside `tokenizers` (0.2x): characters assigned later are
    /// unassigned there, so no regex class holds them.
    static let regexUnicodeVersion = (major: 16, minor: 0)

    static func classify(_ scalar: Unicode.Scalar) -> CharClass {
        let props = scalar.properties
        if let age = props.age,
           age.major > regexUnicodeVersion.major || (age.major == regexUnicodeVersion.major && age.minor > regexUnicodeVersion.minor) {
            return .other
        }
        if props.isWhitespace { return .whitespace }
        switch props.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return .other
        }
    }

    @inline(__always)
    static func of(_ v: UInt32) -> CharClass {
        if v < 0x10000 { return bmp[Int(v)] }
        guard let scalar = Unicode.Scalar(v) else { return .other }
        return classify(scalar)
    }
}
