import BudgetAdmin
import BudgetConfig
import Foundation

/// Where budgetctl writes: results to standard output, problems to standard error.
enum Console {
    /// Writes one line of results.
    static func out(_ line: String) {
        print(line)
    }

    /// Writes text as it is (no newline added).
    static func write(_ text: String) {
        try? FileHandle.standardOutput.write(contentsOf: Data(text.utf8))
    }

    /// A question on standard error, so standard output stays clean for pipes.
    static func prompt(_ text: String) {
        try? FileHandle.standardError.write(contentsOf: Data(text.utf8))
    }

    /// Writes one line of problems or warnings.
    static func error(_ line: String) {
        try? FileHandle.standardError.write(contentsOf: Data((line + "\n").utf8))
    }

    /// Where library runs write: these two streams.
    static let output = AdminOutput(out: { out($0) }, error: { error($0) })

    /// Prints every diagnostic to standard error, then a count line when there are errors.
    static func report(_ diagnostics: DiagnosticBag) {
        for line in diagnostics.rendered { error(line) }
        let errors = diagnostics.errors.count + diagnostics.suppressed
        if errors > 0 {
            let warnings = diagnostics.warnings.count
            error(
                "Error: \(errors) error\(errors == 1 ? "" : "s")"
                    + (warnings > 0 ? " and \(warnings) warning\(warnings == 1 ? "" : "s")" : "") + " found")
        }
    }
}
