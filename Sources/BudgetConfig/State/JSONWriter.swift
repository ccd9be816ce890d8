/// Writes `FieldValue` trees as JSON with keys in their given order, so output is deterministic.
/// Secrets are written as `[masked]` unless the caller reveals them.
public struct JSONWriter: Sendable {
    public var secrets: YAMLEmitter.SecretStyle
    public var pretty: Bool

    public init(secrets: YAMLEmitter.SecretStyle = .masked, pretty: Bool = true) {
        self.secrets = secrets
        self.pretty = pretty
    }

    public func text(_ value: FieldValue) -> String {
        var out = ""
        write(value, indent: 0, into: &out)
        return out
    }

    private func write(_ value: FieldValue, indent: Int, into out: inout String) {
        let newline = pretty ? "\n" : ""
        let pad = pretty ? String(repeating: "  ", count: indent + 1) : ""
        let closePad = pretty ? String(repeating: "  ", count: indent) : ""
        switch value {
        case .null: out += "null"
        case .bool(let flag): out += flag ? "true" : "false"
        case .int(let number): out += String(number)
        case .number(let number): out += numberText(number)
        case .string(let text): out += jsonString(text)
        case .secret(let secret): out += jsonString(secrets == .revealed ? secret.revealed : Secret.maskedText)
        case .list(let items):
            if items.isEmpty { out += "[]"; return }
            out += "[" + newline
            for (index, item) in items.enumerated() {
                out += pad
                write(item, indent: indent + 1, into: &out)
                out += (index < items.count - 1 ? "," : "") + newline
            }
            out += closePad + "]"
        case .map(let fields):
            if fields.isEmpty { out += "{}"; return }
            out += "{" + newline
            for (index, field) in fields.enumerated() {
                out += pad + jsonString(field.name) + (pretty ? ": " : ":")
                write(field.value, indent: indent + 1, into: &out)
                out += (index < fields.count - 1 ? "," : "") + newline
            }
            out += closePad + "}"
        }
    }
}

/// A JSON string literal with every character that JSON requires escaped.
public func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
