/// A YAML node as the config reader sees it: a value with the place it came from.
///
/// The reader works on this tree, built straight from libyaml's events, so that every value carries its location
/// and the tree's size is known (aliases are expanded, and counted, when it is built).
package struct ConfigNode: Sendable, Hashable {
    /// A scalar, a mapping (its pairs in order) or a sequence.
    package enum Value: Sendable, Hashable {
        case scalar(ConfigScalar)
        case mapping([Pair])
        case sequence([ConfigNode])
    }

    /// One `key: value` entry of a mapping, the key kept as written with its own location.
    package struct Pair: Sendable, Hashable {
        package var key: String
        package var keyLocation: SourceLocation
        package var value: ConfigNode
    }

    package var value: Value
    package var location: SourceLocation

    package init(_ value: Value, at location: SourceLocation) {
        self.value = value
        self.location = location
    }

    /// What the node is, in words for error messages: "a mapping", "a list", "the number 5".
    package var kindDescription: String {
        switch value {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let scalar): return scalar.kindDescription
        }
    }

    /// Whether the node is a YAML null.
    package var isNull: Bool {
        if case .scalar(let scalar) = value { return scalar.isNull }
        return false
    }
}

/// A scalar with the facts needed to type it as YAML 1.1 (which decK's YAML library speaks) does:
/// a plain scalar may be a number, bool or null; a quoted or tagged-`!!str` one is always a string.
package struct ConfigScalar: Sendable, Hashable {
    package var text: String
    /// True for plain (unquoted, untagged) scalars, the only ones whose type is resolved from text.
    package var isPlain: Bool

    package init(_ text: String, isPlain: Bool) {
        self.text = text
        self.isPlain = isPlain
    }

    /// Whether the scalar is a YAML 1.1 null (`~`, `null`, or nothing).
    package var isNull: Bool {
        isPlain && ["", "~", "null", "Null", "NULL"].contains(text)
    }

    /// The value as a YAML 1.1 bool (`true`, `yes`, `on`, …) when the plain text is one.
    package var bool: Bool? {
        guard isPlain else { return nil }
        switch text {
        case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON": return true
        case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF": return false
        default: return nil
        }
    }

    /// The value as an integer when the plain text is a decimal integer that fits in 64 bits.
    package var integer: Int? {
        guard isPlain, isDecimalInteger(text) else { return nil }
        return Int(text.hasPrefix("+") ? String(text.dropFirst()) : text)
    }

    /// The value as a finite number (integers included); `.inf` and `.nan` are not numbers here.
    package var number: Double? {
        guard isPlain, isDecimalNumber(text) else { return nil }
        let value = Double(text)
        return value.flatMap { $0.isFinite ? $0 : nil }
    }

    /// True when the plain text looks like a number at all, even one too large to be finite.
    var looksNumeric: Bool { isPlain && isDecimalNumber(text) }

    var kindDescription: String {
        if isNull { return "null" }
        if bool != nil { return "the boolean \(text)" }
        if looksNumeric { return "the number \(text)" }
        return "a string"
    }
}

private func isDecimalInteger(_ text: String) -> Bool {
    var digits = Substring(text)
    if digits.first == "-" || digits.first == "+" { digits = digits.dropFirst() }
    return !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
}

private func isDecimalNumber(_ text: String) -> Bool {
    // [-+]? ( digits [. digits?] | . digits ) ([eE] [-+]? digits)?
    var rest = Substring(text)
    if rest.first == "-" || rest.first == "+" { rest = rest.dropFirst() }
    let mantissaEnd = rest.firstIndex { $0 == "e" || $0 == "E" } ?? rest.endIndex
    let mantissa = rest[..<mantissaEnd]
    let parts = mantissa.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
    guard !mantissa.isEmpty, parts.count <= 2 else { return false }
    let allDigits: (Substring) -> Bool = { $0.allSatisfy { $0.isASCII && $0.isNumber } }
    guard parts.allSatisfy(allDigits), parts.contains(where: { !$0.isEmpty }) else { return false }
    if mantissaEnd == rest.endIndex { return true }
    var exponent = rest[rest.index(after: mantissaEnd)...]
    if exponent.first == "-" || exponent.first == "+" { exponent = exponent.dropFirst() }
    return !exponent.isEmpty && allDigits(exponent)
}
