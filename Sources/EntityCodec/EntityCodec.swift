package import BudgetConfig
import BudgetJSON

/// The one JSON form of entities that both the socket protocol (`BudgetWire`) and the store (`BudgetStore`)
/// use; neither names the other. A change to what `Entity.codecFields` writes is a new `formatVersion`,
/// which the wire protocol's version and a store migration must follow.
package enum EntityCodec {
    /// The format `Entity.codecFields` writes. 1 was Foundation's synthesized `Codable` form; 2 is the
    /// entity's decK fields, with `kind` first and secrets in the clear.
    package static let formatVersion = 2

    /// `value` as compact UTF-8 JSON with members in their given order and secrets revealed: the bytes
    /// frames carry and the store keeps. Appends bytes rather than concatenating strings, so large
    /// snapshots stay cheap.
    package static func compactJSON(_ value: FieldValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        write(value, into: &out)
        return out
    }

    private static func write(_ value: FieldValue, into out: inout [UInt8]) {
        switch value {
        case .null: out += "null".utf8
        case .bool(let flag): out += (flag ? "true" : "false").utf8
        case .int(let number): out += String(number).utf8
        case .number(let number): out += numberText(number).utf8
        case .string(let text): JSONValue.writeString(text, into: &out)
        case .secret(let secret): JSONValue.writeString(secret.revealed, into: &out)
        case .list(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .map(let fields):
            out.append(UInt8(ascii: "{"))
            for (index, field) in fields.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(field.name, into: &out)
                out.append(UInt8(ascii: ":"))
                write(field.value, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}
