import BudgetJSON

/// Writes `FieldValue` trees as JSON text for people (dumps, `--output json`), keys in their given order so
/// output is deterministic. Secrets are written as `[masked]` unless the caller reveals them. The compact
/// form that frames and the store carry is `EntityCodec.compactJSON`.
public struct JSONWriter: Sendable {
    /// Whether secrets are written or masked.
    public var secrets: YAMLEmitter.SecretStyle
    /// Indented over several lines, or on one line.
    public var pretty: Bool

    public init(secrets: YAMLEmitter.SecretStyle = .masked, pretty: Bool = true) {
        self.secrets = secrets
        self.pretty = pretty
    }

    /// The JSON text of `value`.
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
