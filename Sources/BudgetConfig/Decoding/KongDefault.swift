/// The default of a field that Kong's schema has and this gateway accepts without using.
///
/// Such a field is named in one warning when a file sets it to anything else, so that a
/// `deck gateway dump` of a real Kong (which writes every field) loads quietly.
enum KongDefault: Sendable {
    /// Absent or null (and, for lists and mappings, empty) is the default.
    case null
    case bool(Bool)
    case int(Int)
    case string(String)
    case strings([String])
    /// Any value is accepted without a word.
    case any

    func matches(_ node: ConfigNode) -> Bool {
        if node.isNull { return true }
        switch (self, node.value) {
        case (.any, _):
            return true
        case (.null, .sequence(let items)):
            return items.isEmpty
        case (.null, .mapping(let pairs)):
            return pairs.allSatisfy { $0.value.isNull }
        case (.null, _):
            return false
        case (.bool(let expected), .scalar(let scalar)):
            return scalar.bool == expected
        case (.int(let expected), .scalar(let scalar)):
            return scalar.number == Double(expected)
        case (.string(let expected), .scalar(let scalar)):
            return scalar.text == expected
        case (.strings(let expected), .sequence(let items)):
            let texts = items.compactMap { item -> String? in
                if case .scalar(let scalar) = item.value { return scalar.text }
                return nil
            }
            return texts.count == items.count && Set(texts) == Set(expected)
        default:
            return false
        }
    }
}

/// Kong fields accepted without effect, keyed by name, for one kind of object.
typealias IgnoredFields = [String: KongDefault]
