import BudgetJSON

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

    /// Compact JSON as UTF-8 bytes, whatever `pretty` says: the form frames carry. Appends bytes rather than
    /// concatenating strings, which is what makes a 40 MB snapshot take a fraction of a second.
    public func compactBytes(_ value: FieldValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        writeCompact(value, into: &out)
        return out
    }

    private func writeCompact(_ value: FieldValue, into out: inout [UInt8]) {
        switch value {
        case .null: out += "null".utf8
        case .bool(let flag): out += (flag ? "true" : "false").utf8
        case .int(let number): out += String(number).utf8
        case .number(let number): out += numberText(number).utf8
        case .string(let text): JSONValue.writeString(text, into: &out)
        case .secret(let secret):
            JSONValue.writeString(secrets == .revealed ? secret.revealed : Secret.maskedText, into: &out)
        case .list(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                writeCompact(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .map(let fields):
            out.append(UInt8(ascii: "{"))
            for (index, field) in fields.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(field.name, into: &out)
                out.append(UInt8(ascii: ":"))
                writeCompact(field.value, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
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
        case .string(let text): out += JSONValue.quoted(text)
        case .secret(let secret): out += JSONValue.quoted(secrets == .revealed ? secret.revealed : Secret.maskedText)
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
                out += pad + JSONValue.quoted(field.name) + (pretty ? ": " : ":")
                write(field.value, indent: indent + 1, into: &out)
                out += (index < fields.count - 1 ? "," : "") + newline
            }
            out += closePad + "}"
        }
    }
}
