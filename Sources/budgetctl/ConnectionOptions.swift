import ArgumentParser
import BudgetAdmin
import BudgetWire
import DaemonKit
import Foundation

/// `--socket` and `--timeout`, shared by every verb that talks to budget-controld.
struct ConnectionOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "budget-controld's admin socket (default: $BUDGETCTL_SOCKET, else /run/budget/admin.sock).",
            valueName: "path"))
    var socket: String?

    @Option(
        help: ArgumentHelp(
            "Seconds any call to the control plane may take, 1 to 3600 (default: 30, and 600 for the call that "
                + "applies changes).", valueName: "seconds"))
    var timeout: Int?

    func validate() throws {
        if let timeout, !(1...3600).contains(timeout) { throw ValidationError("--timeout: 1 to 3600 seconds") }
    }

    /// The control plane these flags name, and this budgetctl's name for it.
    var endpoint: AdminEndpoint {
        AdminEndpoint(
            socket: AdminEndpoint.socketPath(flag: socket, environment: ProcessInfo.processInfo.environment),
            client: "budgetctl/\(GatewayVersion.current)", timeoutSeconds: timeout)
    }

    /// Runs `body` with a session that is closed when it ends; a failure is printed and exits 1.
    func withSession<Result>(_ body: (AdminSession) async throws -> Result) async throws -> Result {
        try await reportingFailure { try await AdminSession.withSession(endpoint, body) }
    }
}

/// `--select-tag`, also spelled `--tag` as decK users type it.
struct SelectTagOptions: ParsableArguments {
    @Option(
        name: [.customLong("select-tag"), .customLong("tag")],
        help: ArgumentHelp("Only entities with this tag (repeatable; all must match).", valueName: "tag"))
    var selectTags: [String] = []
}

/// Runs `body`; a failure of the library or of the control plane is printed on standard error and exits 1.
func reportingFailure<Result>(_ body: () async throws -> Result) async throws -> Result {
    do {
        return try await body()
    } catch let error as AdminError {
        error.lines.forEach(Console.error)
        throw ExitCode.failure
    } catch let error as WireClientError {
        Console.error("Error: \(error)")
        throw ExitCode.failure
    }
}
