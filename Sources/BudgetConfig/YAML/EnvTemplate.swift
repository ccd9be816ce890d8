/// decK's `${{ env "DECK_NAME" }}` templating, applied to a file's text before it is parsed as YAML.
///
/// The rules are decK's (go-database-reconciler `pkg/file/template.go`):
/// - only variables whose names start with `DECK_` may be read;
/// - a variable that is not set is an error, not an empty string;
/// - expressions on comment lines (the first non-blank character is `#`) are left alone;
/// - the value is inserted as it is, so `${{ env "DECK_PORT" | toInt }}` yields a plain number.
///
/// The pipe functions `toBool`, `toInt` and `toFloat` are understood and check the value's form;
/// anything else inside `${{ }}` is an error naming what is supported. decK's `indent` is not
/// supported: multi-line values would move every later line and so every reported location.
package struct EnvTemplate: Sendable {
    /// The prefix a variable must have to be read, as decK enforces.
    package static let requiredPrefix = "DECK_"

    /// The environment expressions read from; only its `DECK_` variables are readable.
    package let environment: [String: String]

    package init(environment: [String: String]) {
        self.environment = environment
    }

    /// Whether `text` holds `${{` anywhere: a byte scan, since most files have none and some are 10 MB.
    static func hasExpression(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            guard bytes.count >= 3 else { return false }
            for index in 0..<(bytes.count - 2)
            where bytes[index] == UInt8(ascii: "$") && bytes[index + 1] == UInt8(ascii: "{")
                && bytes[index + 2] == UInt8(ascii: "{")
            {
                return true
            }
            return false
        }
    }

    /// The text with every expression replaced, or the located errors when any expression fails.
    ///
    /// `substitutedValues` lists what was inserted, so callers can mask it in anything they print.
    package func render(_ text: String, file: String) -> (
        text: String, substitutedValues: [String], diagnostics: DiagnosticBag
    ) {
        var diagnostics = DiagnosticBag()
        var values: [String] = []
        guard Self.hasExpression(text) else { return (text, [], diagnostics) }
        var output = ""
        output.reserveCapacity(text.utf8.count)
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            if lineNumber > 1 { output += "\n" }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.hasPrefix("#") || !line.contains("${{") {
                output += line
                continue
            }
            output += renderLine(line, file: file, line: lineNumber, values: &values, diagnostics: &diagnostics)
        }
        return (output, values, diagnostics)
    }

    private func renderLine(
        _ line: Substring, file: String, line lineNumber: Int,
        values: inout [String], diagnostics: inout DiagnosticBag
    ) -> String {
        var output = ""
        var rest = line
        while let open = rest.firstRange(of: "${{") {
            output += rest[..<open.lowerBound]
            let column = line[..<open.lowerBound].unicodeScalars.count + 1
            let location = SourceLocation(file: file, line: lineNumber, column: column)
            guard let close = rest[open.upperBound...].firstRange(of: "}}") else {
                diagnostics.error("template expression is not closed with \"}}\"", at: location, path: YAMLPath())
                return output + rest[open.lowerBound...]
            }
            let expression = rest[open.upperBound..<close.lowerBound]
            switch evaluate(expression) {
            case .success(let value):
                values.append(value)
                output += value
            case .failure(let problem):
                diagnostics.error(problem.message, at: location, path: YAMLPath())
                output += rest[open.lowerBound..<close.upperBound]
            }
            rest = rest[close.upperBound...]
        }
        return output + rest
    }

    struct Problem: Error { var message: String }

    private func evaluate(_ expression: Substring) -> Result<String, Problem> {
        let stages = expression.split(separator: "|", omittingEmptySubsequences: false)
            .map { $0.trimmingSpaces() }
        guard let first = stages.first else { return .failure(Problem(message: "empty template expression")) }
        let words = first.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count == 2, words[0] == "env" else {
            return .failure(
                Problem(
                    message: "unsupported template expression \"${{\(expression)}}\"; "
                        + "only ${{ env \"DECK_NAME\" }}, optionally piped to toBool, toInt or toFloat, is supported"))
        }
        let quoted = words[1]
        guard quoted.count >= 2, quoted.first == "\"", quoted.last == "\"" else {
            return .failure(Problem(message: "env takes a quoted variable name, as in ${{ env \"DECK_NAME\" }}"))
        }
        let name = String(quoted.dropFirst().dropLast())
        guard name.hasPrefix(Self.requiredPrefix) else {
            return .failure(
                Problem(
                    message: "environment variables in the state file must be prefixed with "
                        + "'\(Self.requiredPrefix)', found: '\(name)'"))
        }
        guard var value = environment[name] else {
            return .failure(Problem(message: "environment variable '\(name)' present in state file but not set"))
        }
        for stage in stages.dropFirst() {
            // Each conversion prints its result as Go's template would: true/false, 42, 0.5.
            switch stage {
            case "toBool":
                if ["true", "1", "t", "T", "TRUE", "True"].contains(value) {
                    value = "true"
                } else if ["false", "0", "f", "F", "FALSE", "False"].contains(value) {
                    value = "false"
                } else {
                    return .failure(
                        Problem(message: "environment variable '\(name)' is not a boolean, as toBool needs"))
                }
            case "toInt":
                guard let number = Int(value) else {
                    return .failure(
                        Problem(message: "environment variable '\(name)' is not an integer, as toInt needs"))
                }
                value = String(number)
            case "toFloat":
                guard let number = Double(value), number.isFinite else {
                    return .failure(
                        Problem(message: "environment variable '\(name)' is not a number, as toFloat needs"))
                }
                value = String(number)
            default:
                return .failure(
                    Problem(
                        message: "unsupported template function \"\(stage)\"; "
                            + "toBool, toInt and toFloat are supported"))
            }
        }
        if value.contains("\n") || value.contains("\r") {
            return .failure(
                Problem(
                    message: "environment variable '\(name)' holds a line break, "
                        + "which would change the file's structure; put single-line values in DECK_ variables"))
        }
        return .success(value)
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
