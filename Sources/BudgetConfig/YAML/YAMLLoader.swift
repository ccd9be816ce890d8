/// Turns the bytes of one input into a located `ConfigNode` tree, within `ConfigLimits`.
///
/// Order of work: size check, UTF-8 check (with the place of the first bad byte), decK templating,
/// then `YAMLComposer`: libyaml's events built into a `ConfigNode` tree, aliases expanded and counted.
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

        do throws(YAMLComposer.Problem) {
            let composer = YAMLComposer(limits: limits, file: file)
            guard let root = try composer.compose(rendered.text) else {
                diagnostics.error(
                    "the file holds no YAML document; a decK file is a mapping that starts "
                        + "with _format_version: \"3.0\"", at: start, path: YAMLPath())
                return Loaded(root: nil, substitutedValues: rendered.substitutedValues)
            }
            return Loaded(root: root, substitutedValues: rendered.substitutedValues)
        } catch {
            diagnostics.append(Self.diagnostic(for: error, file: file, text: rendered.text))
            return Loaded(root: nil, substitutedValues: rendered.substitutedValues)
        }
    }

    /// A located diagnostic for a problem the composer (or libyaml under it) found, with a hint for tabs, the
    /// mistake people make most.
    static func diagnostic(for problem: YAMLComposer.Problem, file: String, text: String) -> Diagnostic {
        switch problem.place {
        case .mark(let line, let column):
            var message = problem.message
            if message.hasPrefix("invalid YAML:"), character(in: text, line: line, column: column) == "\t" {
                message += "; tabs cannot indent YAML, use spaces"
            }
            return Diagnostic(
                .error, at: SourceLocation(file: file, line: line, column: column), path: YAMLPath(), message)
        case .byteOffset(let offset):
            return Diagnostic(
                .error, at: sourceLocation(ofUTF8Offset: offset, in: text, file: file), path: YAMLPath(),
                problem.message)
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
