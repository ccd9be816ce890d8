import ArgumentParser
import BudgetAdmin
import BudgetConfig
import Foundation

/// `budgetctl validate FILE...`: the offline check, silent when the files are valid.
struct Validate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check decK files offline (prints nothing when valid).",
        discussion: """
            Reads and merges the files as sync would and checks syntax, field names and types, \
            ranges, uniqueness and every reference. Each problem is printed as \
            file:line:column: path: message; warnings (Kong fields without effect here) do not fail.

            ${{ env "DECK_NAME" }} is replaced from the environment; only DECK_ names are read and \
            an unset one is an error.

            Limits: \(ConfigInputs.limitsSummary)

            Exit status: 0 valid, 1 invalid or unreadable.
            """
    )

    @Argument(help: ArgumentHelp("decK files to read; - reads standard input.", valueName: "file"))
    var files: [String]

    func run() async throws {
        let sources = try await reportingFailure { try ConfigInputs.read(files) }
        let loaded = ConfigLoader.load(sources, environment: ProcessInfo.processInfo.environment)
        Console.report(loaded.diagnostics)
        ExitRetention.keep(loaded)
        if !loaded.isValid { throw ExitCode.failure }
    }
}
