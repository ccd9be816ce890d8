import ArgumentParser
import BudgetAdmin
import BudgetLedger
import BudgetWire
import Foundation

/// `budgetctl usage [CONSUMER]` and `budgetctl usage reset CONSUMER`.
struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show token usage against each consumer's budget, or reset it.",
        subcommands: [Show.self, ResetUsage.self],
        defaultSubcommand: Show.self)

    /// `budgetctl usage [show] [CONSUMER]`: the usage table.
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "A table: consumer, group, provider, window, used, limit, remaining, resets at.")

        @Argument(help: ArgumentHelp("Only this consumer.", valueName: "consumer"))
        var consumer: String?

        @Option(help: ArgumentHelp("Only members of this consumer group.", valueName: "group"))
        var group: String?

        @Flag(help: "Print JSON.")
        var json = false

        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            let rows = try await connection.withSession { session in
                try await session.usage(consumer: consumer, group: group)
            }
            if json {
                Console.out(String(decoding: WireJSON.encode(rows), as: UTF8.self))
                return
            }
            if rows.isEmpty {
                Console.out(consumer.map { "No budgets apply to consumer \($0)." } ?? "No budgets are configured.")
                return
            }
            Console.out(UsageTable.render(rows, now: Int64(Date().timeIntervalSince1970)))
        }
    }

    /// `budgetctl usage reset CONSUMER`: forget one consumer's counters.
    struct ResetUsage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset", abstract: "Forget a consumer's usage, giving back its whole budget.")

        @Argument(help: ArgumentHelp("The consumer.", valueName: "consumer"))
        var consumer: String

        @Flag(name: [.short, .long], help: "Do not ask for confirmation.")
        var force = false

        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            if !force {
                guard isatty(STDIN_FILENO) == 1 else {
                    Console.error("Error: refusing to reset usage without --force: standard input is not a terminal")
                    throw ExitCode.failure
                }
                Console.prompt("Reset the usage of consumer \(consumer)? [y/N] ")
                guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                    throw ExitCode.failure
                }
            }
            let removed = try await connection.withSession { session in
                try await session.resetUsage(consumer: consumer)
            }
            Console.out("Reset the usage of consumer \(consumer) (\(removed) counter\(removed == 1 ? "" : "s")).")
        }
    }
}

/// The usage table, with a bar of how much of each budget is spent.
enum UsageTable {
    /// The table's lines, columns padded to their widest cell; `now` (Unix seconds) dates the resets.
    static func render(_ rows: [UsageRow], now: Int64) -> String {
        let header = ["CONSUMER", "GROUP", "PROVIDER", "WINDOW", "USED", "LIMIT", "REMAINING", "RESETS", "SPENT"]
        var table = [header]
        for row in rows {
            let spent = row.limit > 0 ? min(1, (row.used + row.inFlight) / row.limit) : 0
            let filled = Int((spent * 20).rounded())
            let bar =
                "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: 20 - filled) + "] "
                + String(Int((spent * 100).rounded())) + "%"
            let resets = row.used == 0 ? "-" : "in " + duration(row.reset - now)
            table.append([
                row.consumer, row.group ?? "-", row.provider, window(row.windowSize), number(row.used, row.strategy),
                number(row.limit, row.strategy), number(row.remaining, row.strategy), resets, bar,
            ])
        }
        let widths = header.indices.map { column in table.map { $0[column].count }.max() ?? 0 }
        return table.map { cells in
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// Tokens with thousands separators, or dollars to four places for the cost strategy.
    static func number(_ value: Double, _ strategy: String) -> String {
        if strategy == "cost" { return String(format: "$%.4f", value) }
        let rounded = Int(value.rounded())
        let digits = String(rounded)
        var out = ""
        for (index, character) in digits.reversed().enumerated() {
            if index > 0 && index % 3 == 0 && character != "-" { out.append(",") }
            out.append(character)
        }
        return String(out.reversed())
    }

    /// A window's name (`day`, `hour`, …) when it has one, else its seconds.
    static func window(_ seconds: Int) -> String { WindowName.named(seconds) ?? "\(seconds)s" }

    /// A short duration: `3h05m`, `4m09s`, `12s`.
    static func duration(_ seconds: Int64) -> String {
        let seconds = max(0, seconds)
        if seconds >= 3600 { return "\(seconds / 3600)h\(String(format: "%02d", seconds % 3600 / 60))m" }
        if seconds >= 60 { return "\(seconds / 60)m\(String(format: "%02d", seconds % 60))s" }
        return "\(seconds)s"
    }
}
