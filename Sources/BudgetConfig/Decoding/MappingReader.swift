/// Reads the fields of one YAML mapping with types, ranges and locations, and at the end reports
/// every field that was not read: an error for fields Kong does not have (typos), a single warning
/// for Kong fields that this gateway accepts without using.
final class MappingReader {
    let node: ConfigNode
    let path: YAMLPath
    let context: DecodeContext
    /// The kind of object, for messages and for the once-per-field warnings ("service", "ai-proxy config").
    let kind: String
    private let pairs: [ConfigNode.Pair]
    /// The keys asked for, present or not: few per mapping, so a list (a set hashed every key of 100,000 consumers).
    private var asked: [String] = []

    /// A reader for `node`, or nil (with an error) when `node` is not a mapping.
    init?(_ node: ConfigNode, path: YAMLPath, kind: String, context: DecodeContext) {
        guard case .mapping(let pairs) = node.value else {
            context.error("expected \(kind) (a mapping), found \(node.kindDescription)", at: node.location, path: path)
            return nil
        }
        self.node = node
        self.path = path
        self.kind = kind
        self.context = context
        self.pairs = pairs
    }

    var location: SourceLocation { node.location }

    /// The value under `key`, or nil when it is absent or null. Marks the key as read.
    func value(_ key: String) -> ConfigNode? {
        if !asked.contains(key) { asked.append(key) }
        guard let pair = pairs.first(where: { $0.key == key }), !pair.value.isNull else { return nil }
        return pair.value
    }

    func has(_ key: String) -> Bool { value(key) != nil }

    func pathOf(_ key: String) -> YAMLPath { path.appending(key) }

    private func typeError(_ key: String, _ node: ConfigNode, expected: String) {
        context.error("expected \(expected), found \(node.kindDescription)", at: node.location, path: pathOf(key))
    }

    func string(_ key: String, required: Bool = false, allowEmpty: Bool = false) -> String? {
        guard let node = value(key) else {
            if required { context.error("\(key) is required", at: location, path: path) }
            return nil
        }
        guard case .scalar(let scalar) = node.value else {
            typeError(key, node, expected: "a string")
            return nil
        }
        if !allowEmpty && scalar.text.isEmpty {
            context.error("must not be empty", at: node.location, path: pathOf(key))
            return nil
        }
        return scalar.text
    }

    func bool(_ key: String, default defaultValue: Bool) -> Bool {
        guard let node = value(key) else { return defaultValue }
        guard case .scalar(let scalar) = node.value, let result = scalar.bool else {
            typeError(key, node, expected: "true or false")
            return defaultValue
        }
        return result
    }

    /// An integer within `range`; nil (with an error) for anything else, fractions included.
    func integer(_ key: String, in range: ClosedRange<Int>, unit: String = "") -> Int? {
        guard let node = value(key) else { return nil }
        return Self.integer(node, path: pathOf(key), in: range, unit: unit, context: context)
    }

    static func integer(
        _ node: ConfigNode, path: YAMLPath, in range: ClosedRange<Int>, unit: String,
        context: DecodeContext
    ) -> Int? {
        let bounds = "an integer\(unit.isEmpty ? "" : " (\(unit))") from \(range.lowerBound) to \(range.upperBound)"
        guard case .scalar(let scalar) = node.value, scalar.looksNumeric else {
            context.error("expected \(bounds), found \(node.kindDescription)", at: node.location, path: path)
            return nil
        }
        // 86400.0 is an integer written as a float: accept it, as Kong's JSON numbers would.
        let parsed = scalar.integer ?? scalar.number.flatMap { $0.rounded() == $0 && abs($0) < 1e18 ? Int($0) : nil }
        guard let result = parsed else {
            context.error("expected \(bounds), found \(scalar.text)", at: node.location, path: path)
            return nil
        }
        guard range.contains(result) else {
            context.error("\(result) is out of range: expected \(bounds)", at: node.location, path: path)
            return nil
        }
        return result
    }

    /// A finite number within `range`.
    func number(_ key: String, in range: ClosedRange<Double>) -> Double? {
        guard let node = value(key) else { return nil }
        return Self.number(node, path: pathOf(key), in: range, context: context)
    }

    static func number(
        _ node: ConfigNode, path: YAMLPath, in range: ClosedRange<Double>,
        context: DecodeContext
    ) -> Double? {
        let bounds =
            range.lowerBound > 0 && range.lowerBound < 0.001
            ? "a number greater than 0 and at most \(formatNumber(range.upperBound))"
            : "a number from \(formatNumber(range.lowerBound)) to \(formatNumber(range.upperBound))"
        guard case .scalar(let scalar) = node.value, scalar.looksNumeric else {
            context.error("expected \(bounds), found \(node.kindDescription)", at: node.location, path: path)
            return nil
        }
        guard let result = scalar.number, range.contains(result) else {
            context.error("\(scalar.text) is out of range: expected \(bounds)", at: node.location, path: path)
            return nil
        }
        return result
    }

    /// One of the raw values of `E`; an error lists the allowed values.
    func choice<E: RawRepresentable & CaseIterable>(_ key: String, default defaultValue: E) -> E
    where E.RawValue == String {
        guard let node = value(key) else { return defaultValue }
        let allowed = E.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
        guard case .scalar(let scalar) = node.value, let result = E(rawValue: scalar.text) else {
            let found: String
            if case .scalar(let scalar) = node.value {
                found = "\"\(scalar.text)\""
            } else {
                found = node.kindDescription
            }
            context.error("expected one of \(allowed), found \(found)", at: node.location, path: pathOf(key))
            return defaultValue
        }
        return result
    }

    /// The items of a list with their paths; a missing or null list is empty.
    func list(_ key: String) -> [(node: ConfigNode, path: YAMLPath)] {
        guard let node = value(key) else { return [] }
        guard case .sequence(let items) = node.value else {
            typeError(key, node, expected: "a list")
            return []
        }
        return items.enumerated().map { ($0.element, pathOf(key).appending(index: $0.offset)) }
    }

    /// A list of non-empty strings.
    func strings(_ key: String) -> [String]? {
        guard has(key) else { return nil }
        var result: [String] = []
        for (item, itemPath) in list(key) {
            guard case .scalar(let scalar) = item.value, !scalar.isNull else {
                context.error("expected a string, found \(item.kindDescription)", at: item.location, path: itemPath)
                continue
            }
            guard !scalar.text.isEmpty else {
                context.error("must not be empty", at: item.location, path: itemPath)
                continue
            }
            result.append(scalar.text)
        }
        return result
    }

    /// A nested mapping's reader, or nil when absent, null or not a mapping (the latter with an error).
    func mapping(_ key: String, kind: String) -> MappingReader? {
        guard let node = value(key) else { return nil }
        return MappingReader(node, path: pathOf(key), kind: kind, context: context)
    }

    /// Reports what was not read: Kong fields without effect here (a warning each, once per run, when
    /// not at their default), and fields Kong does not have (an error each, with a suggestion).
    ///
    /// The two tables are only built when a field was not read.
    func finish(
        ignoring ignoredFields: @autoclosure () -> IgnoredFields = [:],
        unsupported unsupportedFields: @autoclosure () -> [String: String] = [:]
    ) {
        guard pairs.contains(where: { !asked.contains($0.key) }) else { return }
        let ignored = ignoredFields()
        let unsupported = unsupportedFields()
        for pair in pairs where !asked.contains(pair.key) {
            let fieldPath = pathOf(pair.key)
            if let reason = unsupported[pair.key] {
                if !KongDefault.null.matches(pair.value) {
                    context.error(reason, at: pair.keyLocation, path: fieldPath)
                }
            } else if let kongDefault = ignored[pair.key] {
                if !kongDefault.matches(pair.value) {
                    context.warnOnce(
                        kind: kind, field: pair.key,
                        "\(kind) field \(pair.key) has no effect in this gateway and is ignored",
                        at: pair.keyLocation, path: fieldPath)
                }
            } else {
                var message = "unknown field \"\(pair.key)\" in \(kind)"
                let candidates = Set(asked).union(ignored.keys).union(unsupported.keys)
                if let suggestion = closestName(to: pair.key, among: candidates) {
                    message += "; did you mean \"\(suggestion)\"?"
                }
                context.error(message, at: pair.keyLocation, path: fieldPath)
            }
        }
    }
}

/// The candidate within a small edit distance of `name`, for "did you mean" hints.
func closestName(to name: String, among candidates: some Sequence<String>) -> String? {
    let threshold = max(2, name.count / 3)
    var best: (name: String, distance: Int)?
    for candidate in candidates {
        let distance = editDistance(name, candidate)
        if distance > threshold { continue }
        if let current = best, (current.distance, current.name) <= (distance, candidate) { continue }
        best = (candidate, distance)
    }
    return best?.name
}

func editDistance(_ lhs: String, _ rhs: String) -> Int {
    let a = Array(lhs.lowercased().unicodeScalars)
    let b = Array(rhs.lowercased().unicodeScalars)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

func formatNumber(_ value: Double) -> String { numberText(value) }
