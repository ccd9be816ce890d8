import ArgumentParser
import BudgetAdmin
import BudgetConfig
import BudgetWire
import Foundation

/// `--socket`, shared by every verb that talks to budget-controld.
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

    var path: String { AdminSession.socketPath(flag: socket, environment: ProcessInfo.processInfo.environment) }

    func validate() throws {
        if let timeout, !(1...3600).contains(timeout) { throw ValidationError("--timeout: 1 to 3600 seconds") }
    }

    /// The stored config and its version, as `AdminSession.current()` returns them.
    typealias Current = (version: UInt64, state: ConfigState)

    /// Connects and fetches the stored config in a task of its own, to overlap with other work.
    func fetchCurrent() -> Task<Result<(AdminSession, Current), WireClientError>, Never> {
        let path = self.path
        let timeout = self.timeout
        return Task {
            do throws(WireClientError) {
                let session = try await AdminSession.connect(
                    socket: path, client: "budgetctl/\(BudgetCtlVersion.current)", timeoutSeconds: timeout)
                do throws(WireClientError) {
                    return .success((session, try await session.current()))
                } catch {
                    await session.close()
                    return .failure(error)
                }
            } catch {
                return .failure(error)
            }
        }
    }

    /// What `fetchCurrent` got, or prints why it failed and exits 1.
    static func fetched(_ fetch: Task<Result<(AdminSession, Current), WireClientError>, Never>) async throws
        -> (AdminSession, Current)
    {
        switch await fetch.value {
        case .success(let value): return value
        case .failure(let error):
            Console.error("Error: \(error)")
            throw ExitCode.failure
        }
    }

    /// Closes what `fetchCurrent` opened, when it is not needed after all.
    static func discard(_ fetch: Task<Result<(AdminSession, Current), WireClientError>, Never>) async {
        fetch.cancel()
        if case .success(let (session, _)) = await fetch.value { await session.close() }
    }

    /// Connects, or prints why not and exits 1.
    func connect() async throws -> AdminSession {
        do {
            return try await AdminSession.connect(
                socket: path, client: "budgetctl/\(BudgetCtlVersion.current)",
                timeoutSeconds: timeout)
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

/// Applies `plan`, or says what happened and exits 1: a refusal changed nothing, but when the answer never
/// came (time-out, lost connection) the control plane may have applied the plan, and saying "nothing was
/// changed" could be false.
func applyPlan(_ plan: Plan, baseVersion: UInt64, session: AdminSession) async throws {
    do {
        _ = try await session.apply(plan, baseVersion: baseVersion)
    } catch {
        Console.error("Error: \(error)")
        if case .server = error {
            Console.error("Error: nothing was changed")
        } else {
            Console.error(
                "Error: the control plane may or may not have applied the changes; run budgetctl diff with the same "
                    + "files to see where the config stands")
        }
        throw ExitCode.failure
    }
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
