import ArgumentParser
import BudgetAdmin
import Foundation

/// `budgetctl sync`: make the control plane match the files within the select-tag scope.
struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make budget-controld's config match the files (one transaction: all or nothing).",
        discussion: """
            Within the select-tag scope (the files' _info.select_tags or --select-tag), entities in the files \
            are created or updated and entities absent from them are deleted; others are untouched. Prints one \
            line per change and a Summary, as decK does. Keys and secrets are masked in the output.
            """)

    @Argument(help: ArgumentHelp("decK files; - reads standard input.", valueName: "file"))
    var files: [String]

    @OptionGroup var tags: SelectTagOptions
    @OptionGroup var connection: ConnectionOptions

    @Flag(help: "Print the changes as JSON, as decK's --json-output.")
    var jsonOutput = false

    func run() async throws {
        let run = SyncRun(
            files: files, flagTags: tags.selectTags, environment: ProcessInfo.processInfo.environment,
            json: jsonOutput, mode: .apply)
        _ = try await reportingFailure { try await run.run(connection.endpoint, output: Console.output) }
    }
}

/// `budgetctl diff`: what sync would do, without doing it.
struct Diff: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what sync would change, without changing anything.",
        discussion:
            "Exit status: 0 no changes (or changes without --non-zero-exit-code), 1 error, 2 changes with --non-zero-exit-code."
    )

    @Argument(help: ArgumentHelp("decK files; - reads standard input.", valueName: "file"))
    var files: [String]

    @OptionGroup var tags: SelectTagOptions
    @OptionGroup var connection: ConnectionOptions

    @Flag(help: "Print the changes as JSON, as decK's --json-output.")
    var jsonOutput = false

    @Flag(help: "Exit 2 when there are changes.")
    var nonZeroExitCode = false

    func run() async throws {
        let run = SyncRun(
            files: files, flagTags: tags.selectTags, environment: ProcessInfo.processInfo.environment,
            json: jsonOutput, mode: .preview)
        let changed = try await reportingFailure { try await run.run(connection.endpoint, output: Console.output) }
        if changed && nonZeroExitCode { throw ExitCode(2) }
    }
}

/// `budgetctl reset --select-tag T`: delete every entity carrying the tags.
struct Reset: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete the entities that carry the select tags (all of them without tags).",
        discussion: """
            Asks for confirmation unless --force; refuses (exit 1) when standard input is not a terminal. \
            Counters are kept: a consumer synced again finds its usage.
            """)

    @OptionGroup var tags: SelectTagOptions
    @OptionGroup var connection: ConnectionOptions

    @Flag(name: [.short, .long], help: "Do not ask for confirmation.")
    var force = false

    @Flag(help: "Print the changes as JSON.")
    var jsonOutput = false

    func run() async throws {
        let scope = tags.selectTags.isEmpty ? "all configuration" : "all configuration tagged \(tags.selectTags)"
        if !force {
            guard isatty(STDIN_FILENO) == 1 else {
                Console.error("Error: refusing to delete \(scope) without --force: standard input is not a terminal")
                throw ExitCode.failure
            }
            Console.prompt("This will delete \(scope) from budget-controld. Continue? [y/N] ")
            guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                Console.error("Nothing was changed.")
                throw ExitCode.failure
            }
        }
        let run = ResetRun(selectTags: tags.selectTags, json: jsonOutput)
        try await reportingFailure { try await run.run(connection.endpoint, output: Console.output) }
    }
}
