import ArgumentParser
import BudgetAdmin
import BudgetWire
import Foundation

/// `--socket`, shared by every verb that talks to budget-controld.
struct ConnectionOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "budget-controld's admin socket (default: $BUDGETCTL_SOCKET, else /run/budget/admin.sock).",
            valueName: "path"))
    var socket: String?

    var path: String { AdminSession.socketPath(flag: socket, environment: ProcessInfo.processInfo.environment) }

    /// Connects, or prints why not and exits 1.
    func connect() async throws -> AdminSession {
        do {
            return try await AdminSession.connect(socket: path, client: "budgetctl/\(BudgetCtlVersion.current)")
        } catch {
            Console.error("Error: \(error)")
            throw ExitCode.failure
        }
    }
}

/// `--select-tag`, also spelled `--tag` as decK users type it.
struct SelectTagOptions: ParsableArguments {
    @Option(
        name: [.customLong("select-tag"), .customLong("tag")],
        help: ArgumentHelp("Only entities with this tag (repeatable; all must match).", valueName: "tag"))
    var selectTags: [String] = []
}

/// Runs `body` and turns control-plane errors into a message and exit status 1.
func withControlPlane<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as WireClientError {
        Console.error("Error: \(error)")
        throw ExitCode.failure
    }
}
