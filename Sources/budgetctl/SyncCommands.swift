import ArgumentParser
import BudgetAdmin
import BudgetConfig
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
        _ = try await SyncRun(files: files, flagTags: tags.selectTags, connection: connection, json: jsonOutput).run(
            apply: true)
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
        let changed = try await SyncRun(
            files: files, flagTags: tags.selectTags, connection: connection, json: jsonOutput
        )
        .run(apply: false)
        if changed && nonZeroExitCode { throw ExitCode(2) }
    }
}

/// The shared body of sync and diff.
struct SyncRun {
    var files: [String]
    var flagTags: [String]
    var connection: ConnectionOptions
    var json: Bool

    /// Returns whether there were changes.
    func run(apply: Bool) async throws -> Bool {
        // The stored config is fetched while the files are read: with 100,000 consumers each takes a second or
        // more. Problems in the files are still reported first, and a failed connection only after them.
        let fetch = connection.fetchCurrent()
        let desired: SyncInput.Desired
        do {
            let loaded = ConfigLoader.load(try InputFiles.read(files), environment: InputFiles.environment)
            for warning in loaded.diagnostics.warnings { Console.error(warning.description) }
            switch SyncInput.desired(from: loaded, flagTags: flagTags) {
            case .success(let value): desired = value
            case .failure(let problems):
                for line in problems.lines { Console.error(line) }
                Console.error("Error: nothing was changed")
                throw ExitCode.failure
            }
        } catch {
            await ConnectionOptions.discard(fetch)
            throw error
        }
        let (session, current) = try await ConnectionOptions.fetched(fetch)
        defer { Task { await session.close() } }
        return try await withControlPlane {
            let plan: Plan
            do {
                plan = try Planner.plan(current: current.state, desired: desired.state, selectTags: desired.selectTags)
            } catch {
                Console.error("Error: \(error)")
                Console.error("Error: nothing was changed")
                throw ExitCode.failure
            }
            if json {
                Console.out(PlanRenderer.json(plan))
            } else {
                for line in PlanRenderer.text(plan).dropLast(4) { Console.out(line) }
            }
            if apply && !plan.isEmpty {
                try await applyPlan(plan, baseVersion: current.version, session: session)
            }
            if !json {
                for line in PlanRenderer.summary(created: plan.created, updated: plan.updated, deleted: plan.deleted) {
                    Console.out(line)
                }
            }
            return !plan.isEmpty
        }
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
        let session = try await connection.connect()
        defer { Task { await session.close() } }
        try await withControlPlane {
            let current = try await session.current()
            let plan: Plan
            do {
                plan = try Planner.reset(current: current.state, selectTags: tags.selectTags)
            } catch {
                Console.error("Error: \(error)")
                throw ExitCode.failure
            }
            if jsonOutput {
                Console.out(PlanRenderer.json(plan))
            } else {
                PlanRenderer.text(plan).dropLast(4).forEach(Console.out)
            }
            if !plan.isEmpty { try await applyPlan(plan, baseVersion: current.version, session: session) }
            if !jsonOutput {
                PlanRenderer.summary(created: 0, updated: 0, deleted: plan.deleted).forEach(Console.out)
            }
        }
    }
}
