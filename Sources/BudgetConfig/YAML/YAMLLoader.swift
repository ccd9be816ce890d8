import Foundation
import Yams

/// Turns the bytes of one input into a located `ConfigNode` tree, within `ConfigLimits`.
///
/// Order of work: size check, UTF-8 check (with the place of the first bad byte), decK templating,
/// YAML parsing with Yams, then conversion to `ConfigNode` with aliases expanded and counted.
struct YAMLLoader {
    var limits: ConfigLimits
    var template: EnvTemplate

    struct Loaded {
        var root: ConfigNode?
        var substitutedValues: [String]
    }

    func load(_ bytes: [UInt8], file: String, diagnostics: inout DiagnosticBag) -> Loaded {
        let start = SourceLocation(file: file, line: 1, column: 1)
        guard bytes.count <= limits.maxFileBytes else {
            diagnostics.error(
                "file is \(bytes.count) bytes, over the limit of \(limits.maxFileBytes) bytes",
                at: start, path: YAMLPath())
            return Loaded(root: nil, substitutedValues: [])
        }
        var body = bytes[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        if let bad = firstInvalidUTF8(body, file: file) {
            diagnostics.error(
                "invalid UTF-8 (byte 0x\(String(bad.byte, radix: 16, uppercase: true))); "
                    + "config files must be UTF-8 text", at: bad.location, path: YAMLPath())
            return Loaded(root: nil, substitutedValues: [])
        }
        let text = String(decoding: body, as: UTF8.self)
        let rendered = template.render(text, file: file)
        diagnostics.append(contentsOf: rendered.diagnostics)
        if rendered.diagnostics.hasErrors { return Loaded(root: nil, substitutedValues: rendered.substitutedValues) }

        let document: Node
        do {
            // No resolver rules: ConfigNode keeps scalars as text and the decoder types them, so Yams' regular
            // expressions (run on every mapping key when it checks for duplicates) would only cost time.
            let parser = try Parser(yaml: rendered.text, resolver: .basic)
            guard let root = try parser.singleRoot() else {
                diagnostics.error(
                    "the file holds no YAML document; a decK file is a mapping that starts "
                        + "with _format_version: \"3.0\"", at: start, path: YAMLPath())
                return Loaded(root: nil, substitutedValues: rendered.substitutedValues)
            }
            document = root
        } catch let error as YamlError {
            diagnostics.append(Self.diagnostic(for: error, file: file, text: rendered.text))
            return Loaded(root: nil, substitutedValues: rendered.substitutedValues)
        } catch {
            diagnostics.error("cannot parse YAML: \(error)", at: start, path: YAMLPath())
            return Loaded(root: nil, substitutedValues: rendered.substitutedValues)
        }

        var converter = Converter(file: file, limits: limits)
        do {
            // Count first, allocating nothing, so an alias bomb is refused before it takes memory.
            try converter.count(document, depth: 0)
            converter.visited = 0
            let root = try converter.convert(document, depth: 0)
            return Loaded(root: root, substitutedValues: rendered.substitutedValues)
        } catch let problem as Converter.Problem {
            diagnostics.error(problem.message, at: problem.location, path: YAMLPath())
            return Loaded(root: nil, substitutedValues: rendered.substitutedValues)
        } catch {
            diagnostics.error("cannot read YAML: \(error)", at: start, path: YAMLPath())
            return Loaded(root: nil, substitutedValues: rendered.substitutedValues)
        }
    }

    /// A located diagnostic for a Yams (libyaml) error, with a hint for the mistakes people make.
    static func diagnostic(for error: YamlError, file: String, text: String) -> Diagnostic {
        func located(_ problem: String, _ context: YamlError.Context?, _ mark: Mark) -> Diagnostic {
            var message = "invalid YAML: \(problem)"
            if let context, !context.text.isEmpty { message += " (\(context.text))" }
            if character(in: text, line: mark.line, column: mark.column) == "\t" {
                message += "; tabs cannot indent YAML, use spaces"
            }
            return Diagnostic(
                .error, at: SourceLocation(file: file, line: mark.line, column: mark.column),
                path: YAMLPath(), message)
        }
        switch error {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            return located(problem, context, mark)
        case .duplicatedKeysInMapping(let duplicates, let context):
            return Diagnostic(
                .error, at: SourceLocation(file: file, line: context.mark.line, column: context.mark.column),
                path: YAMLPath(),
                "duplicate key \(duplicates.map { "\"\($0)\"" }.joined(separator: ", ")) in one mapping")
        case .reader(let problem, let offset, _, _):
            let location =
                offset.map { sourceLocation(ofUTF8Offset: $0, in: text, file: file) }
                ?? SourceLocation(file: file, line: 1, column: 1)
            return Diagnostic(.error, at: location, path: YAMLPath(), "invalid YAML input: \(problem)")
        default:
            return Diagnostic(
                .error, at: SourceLocation(file: file, line: 1, column: 1), path: YAMLPath(),
                "invalid YAML: \(error)")
        }
    }
}

/// Converts Yams nodes into `ConfigNode`s, counting every node visited so that aliases
/// (which Yams shares rather than copies) cannot expand into billions of nodes.
private struct Converter {
    struct Problem: Error {
        var message: String
        var location: SourceLocation
    }

    let file: String
    let limits: ConfigLimits
    var visited = 0

    init(file: String, limits: ConfigLimits) {
        self.file = file
        self.limits = limits
    }

    func location(_ mark: Mark?) -> SourceLocation {
        SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    mutating func count(_ node: Node, depth: Int) throws {
        visited += 1
        if visited > limits.maxNodes || depth > limits.maxDepth {
            _ = try convert(node, depth: depth)  // reports the located problem
        }
        switch node {
        case .scalar, .alias:
            return
        case .sequence(let sequence):
            for item in sequence { try count(item, depth: depth + 1) }
        case .mapping(let mapping):
            for (_, value) in mapping {
                visited += 1
                try count(value, depth: depth + 1)
            }
        }
    }

    mutating func convert(_ node: Node, depth: Int) throws -> ConfigNode {
        visited += 1
        let here = location(node.mark)
        if visited > limits.maxNodes {
            throw Problem(
                message: "document expands to more than \(limits.maxNodes) YAML nodes "
                    + "(aliases are counted each time they are used); refusing to read it", location: here)
        }
        if depth > limits.maxDepth {
            throw Problem(message: "nesting is deeper than \(limits.maxDepth) levels", location: here)
        }
        switch node {
        case .scalar(let scalar):
            let explicitString = scalar.tag.description == Tag.Name.str.rawValue
            let plain =
                scalar.style == .plain && !explicitString
                && (scalar.tag.description.isEmpty || scalar.tag.description == "?"
                    || scalar.tag.description.hasPrefix("tag:yaml.org,2002:"))
            return ConfigNode(.scalar(ConfigScalar(scalar.string, isPlain: plain)), at: here)
        case .sequence(let sequence):
            var items: [ConfigNode] = []
            items.reserveCapacity(sequence.count)
            for item in sequence { items.append(try convert(item, depth: depth + 1)) }
            return ConfigNode(.sequence(items), at: here)
        case .mapping(let mapping):
            var pairs: [ConfigNode.Pair] = []
            pairs.reserveCapacity(mapping.count)
            for (key, value) in mapping {
                visited += 1
                guard case .scalar(let keyScalar) = key else {
                    throw Problem(
                        message:
                            "mapping keys must be plain strings, not \(key.mapping != nil ? "a mapping" : "a list")",
                        location: location(key.mark))
                }
                let converted = try convert(value, depth: depth + 1)
                pairs.append(ConfigNode.Pair(key: keyScalar.string, keyLocation: location(key.mark), value: converted))
            }
            return ConfigNode(.mapping(pairs), at: here)
        case .alias:
            throw Problem(message: "unresolved YAML alias", location: here)
        }
    }
}

/// The first byte that is not valid UTF-8, with its line and column.
func firstInvalidUTF8(_ bytes: ArraySlice<UInt8>, file: String) -> (byte: UInt8, location: SourceLocation)? {
    var line = 1
    var column = 1
    var index = bytes.startIndex
    while index < bytes.endIndex {
        let lead = bytes[index]
        let length: Int
        switch lead {
        case 0x00...0x7F: length = 1
        case 0xC2...0xDF: length = 2
        case 0xE0...0xEF: length = 3
        case 0xF0...0xF4: length = 4
        default: return (lead, SourceLocation(file: file, line: line, column: column))
        }
        guard index + length <= bytes.endIndex else {
            return (lead, SourceLocation(file: file, line: line, column: column))
        }
        for offset in 1..<length {
            let byte = bytes[index + offset]
            var valid = byte & 0xC0 == 0x80
            // Overlong forms, surrogates and values past U+10FFFF.
            if offset == 1 {
                if lead == 0xE0 && byte < 0xA0 { valid = false }
                if lead == 0xED && byte > 0x9F { valid = false }
                if lead == 0xF0 && byte < 0x90 { valid = false }
                if lead == 0xF4 && byte > 0x8F { valid = false }
            }
            if !valid { return (byte, SourceLocation(file: file, line: line, column: column)) }
        }
        if lead == 0x0A {
            line += 1
            column = 1
        } else {
            column += 1
        }
        index += length
    }
    return nil
}

private func character(in text: String, line: Int, column: Int) -> Character? {
    var currentLine = 1
    var currentColumn = 1
    for scalar in text.unicodeScalars {
        if currentLine == line && currentColumn == column { return Character(scalar) }
        if scalar == "\n" {
            if currentLine == line { return nil }
            currentLine += 1
            currentColumn = 1
        } else {
            currentColumn += 1
        }
        if currentLine > line { return nil }
    }
    return nil
}

private func sourceLocation(ofUTF8Offset offset: Int, in text: String, file: String) -> SourceLocation {
    var line = 1
    var column = 1
    var consumed = 0
    for scalar in text.unicodeScalars {
        if consumed >= offset { break }
        consumed += String(scalar).utf8.count
        if scalar == "\n" {
            line += 1
            column = 1
        } else {
            column += 1
        }
    }
    return SourceLocation(file: file, line: line, column: column)
}
