/// Writes `FieldValue` trees as block YAML, deterministically: same tree, same bytes.
///
/// Hand-written rather than Yams' emitter so that quoting, list style and key order are fixed by
/// this code alone: strings are quoted (JSON-style, valid YAML) whenever a plain scalar could be read
/// back as something else, and lists of scalars are written inline.
public struct YAMLEmitter: Sendable {
    /// How secret values are written.
    public enum SecretStyle: Sendable {
        /// Secrets written as `[masked]`: for anything a person reads.
        case masked
        /// Secrets written as they are: only for transfer to a trusted reader.
        case revealed
        /// Secrets written as `${{ env "DECK_…" }}` expressions named after their field, so that a dump
        /// syncs back unchanged with the same DECK_ variables set, and never holds a secret itself.
        case environmentPlaceholders
    }

    /// The DECK_ variable a secret field is written as by `.environmentPlaceholders`.
    public static func placeholderVariable(forField name: String) -> String {
        switch name {
        case "password": return "DECK_REDIS_PASSWORD"
        default: return "DECK_" + name.uppercased()
        }
    }

    /// How secret values are written.
    public var secrets: SecretStyle

    public init(secrets: SecretStyle) { self.secrets = secrets }

    /// The YAML text of a top-level map, ending in a newline.
    public func document(_ fields: [FieldValue.Field]) -> String {
        var out = ""
        writeMapBody(fields, indent: 0, into: &out)
        return out
    }

    private func writeMapBody(_ fields: [FieldValue.Field], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for field in fields {
            out += pad + key(field.name) + ":"
            if case .secret = field.value, secrets == .environmentPlaceholders {
                out += " ${{ env \"\(Self.placeholderVariable(forField: field.name))\" }}\n"
                continue
            }
            writeValue(field.value, indent: indent, into: &out)
        }
    }

    /// Writes what follows `key:` (or `-`): an inline scalar or list, or a nested block.
    private func writeValue(_ value: FieldValue, indent: Int, into out: inout String) {
        switch value {
        case .map(let fields):
            if fields.isEmpty {
                out += " {}\n"
            } else {
                out += "\n"
                writeMapBody(fields, indent: indent + 2, into: &out)
            }
        case .list(let items):
            if items.allSatisfy(\.isScalar) {
                out += " [" + items.map(scalar).joined(separator: ", ") + "]\n"
            } else {
                out += "\n"
                writeListBody(items, indent: indent + 2, into: &out)
            }
        default:
            out += " " + scalar(value) + "\n"
        }
    }

    private func writeListBody(_ items: [FieldValue], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for item in items {
            switch item {
            case .map(let fields) where !fields.isEmpty:
                // "- first: x" then the other fields aligned under it.
                var body = ""
                writeMapBody(fields, indent: indent + 2, into: &body)
                out += pad + "- " + body.dropFirst(indent + 2)
            case .list:
                out += pad + "-"
                writeValue(item, indent: indent, into: &out)
            default:
                out += pad + "- " + scalar(item) + "\n"
            }
        }
    }

    private func key(_ name: String) -> String { isPlainSafe(name) ? name : quoted(name) }

    func scalar(_ value: FieldValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let flag): return flag ? "true" : "false"
        case .int(let number): return String(number)
        case .number(let number): return numberText(number)
        case .string(let text): return isPlainSafe(text) ? text : quoted(text)
        case .secret(let secret):
            return quoted(secrets == .revealed ? secret.revealed : Secret.maskedText)
        case .list(let items): return "[" + items.map(scalar).joined(separator: ", ") + "]"
        case .map(let fields):
            return "{" + fields.map { key($0.name) + ": " + scalar($0.value) }.joined(separator: ", ") + "}"
        }
    }
}

extension FieldValue {
    var isScalar: Bool {
        switch self {
        case .list, .map: return false
        default: return true
        }
    }
}

/// A number as YAML (and JSON) can read it back exactly: integers without a fraction.
package func numberText(_ number: Double) -> String {
    if number.rounded() == number && abs(number) < 9.0e15 { return String(Int(number)) }
    return "\(number)"
}

/// True when `text` can be written unquoted and read back as the same string.
func isPlainSafe(_ text: String) -> Bool {
    guard let first = text.unicodeScalars.first else { return false }
    let allowedFirst = CharacterSetASCII.letters.contains(first) || first == "/" || first == "_"
    guard allowedFirst else { return false }
    guard text.unicodeScalars.allSatisfy({ CharacterSetASCII.plain.contains($0) }) else { return false }
    let scalar = ConfigScalar(text, isPlain: true)
    return !scalar.isNull && scalar.bool == nil && !scalar.looksNumeric
}

/// A double-quoted YAML string; JSON's escapes are valid YAML escapes.
func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                || scalar.value == 0x2028 || scalar.value == 0x2029 || scalar.value == 0xFEFF
            {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

enum CharacterSetASCII {
    struct Set {
        let test: @Sendable (Unicode.Scalar) -> Bool
        func contains(_ scalar: Unicode.Scalar) -> Bool { test(scalar) }
    }

    static let letters = Set { ("a"..."z").contains($0) || ("A"..."Z").contains($0) }
    static let plain = Set {
        ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
            || $0 == "-" || $0 == "_" || $0 == "." || $0 == "/"
    }
}
