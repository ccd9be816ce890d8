import ArgumentParser
import BudgetConfig
import DaemonKit

/// `budgetctl`: the operator's command line, decK's workflow for the budget gateway.
@main
struct BudgetCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budgetctl",
        abstract: "Manage the token-budget gateway's declarative config, as decK manages Kong's.",
        discussion: """
            Config files are decK format 3.0 (_format_version: "3.0"), so an existing Kong file \
            for key-auth, ai-proxy and ai-rate-limiting-advanced is read unchanged. See budget.yaml(5). \
            Every decK verb is also accepted after "gateway" (budgetctl gateway sync …).
            """,
        version: GatewayVersion.current,
        subcommands: [
            Validate.self, Sync.self, Diff.self, Dump.self, Reset.self, Ping.self, Status.self, Get.self, Tag.self,
            Usage.self, Gateway.self,
        ]
    )

    /// Keeps freed heap memory for reuse while a sync builds and drops large structures, keeps the largest until
    /// exit rather than freeing them one by one (`ExitRetention`), then parses and runs.
    static func main() async {
        FreedMemory.keepForBatchWork()
        ExitRetention.enable()
        await main(nil)
    }
}

/// `budgetctl gateway <verb>`: decK's spelling of the same verbs.
struct Gateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "decK's spelling: budgetctl gateway sync|diff|dump|validate|reset|ping.",
        subcommands: [Sync.self, Diff.self, Dump.self, Validate.self, Reset.self, Ping.self])
}
