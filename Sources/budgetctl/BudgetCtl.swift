import ArgumentParser

/// `budgetctl`: the operator's command line, decK's workflow for the budget gateway.
@main
struct BudgetCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budgetctl",
        abstract: "Manage the token-budget gateway's declarative config, as decK manages Kong's.",
        discussion: """
            Config files are decK format 3.0 (_format_version: "3.0"), so an existing Kong file \
            for key-auth, ai-proxy and ai-rate-limiting-advanced is read unchanged. See budget.yaml(5).
            """,
        version: BudgetCtlVersion.current,
        subcommands: [Validate.self]
    )
}

enum BudgetCtlVersion {
    static let current = "0.1.0"
}
