import Foundation
import TestSupport

/// A budget-controld started by a test on its own temporary state directory and sockets, stopped by
/// PID when the test is done (also when it failed).
final class ControlDaemon: @unchecked Sendable {
    let directory: URL
    let process: Process
    var adminSocket: String { directory.appendingPathComponent("admin.sock").path }
    var controlSocket: String { directory.appendingPathComponent("control.sock").path }
    var stateDirectory: String { directory.appendingPathComponent("state").path }
    /// budget-controld's stderr, appended to across restarts: a file, so that a daemon that logs much never
    /// blocks on a pipe nobody reads, and reading it (on a failure) never waits for the daemon.
    var logFile: URL { directory.appendingPathComponent("controld.log") }

    /// Starts the daemon and waits, without holding a thread of the cooperative pool, until both sockets exist.
    /// `launcher`, if given, is a command line that ends by exec-ing the daemon's (as `setpriv ... --`), so the
    /// process is still the daemon.
    static func start(directory: URL? = nil, extraArguments: [String] = [], launcher: [String] = []) async throws
        -> ControlDaemon
    {
        let daemon = try ControlDaemon(directory: directory, extraArguments: extraArguments, launcher: launcher)
        let started = await waitUntilReady(daemon.process, within: .seconds(20)) {
            FileManager.default.fileExists(atPath: daemon.adminSocket)
                && FileManager.default.fileExists(atPath: daemon.controlSocket)
        }
        if started { return daemon }
        await terminate(daemon.process)
        throw DaemonError(message: "budget-controld did not start: \(daemon.logText())")
    }

    /// Launches the daemon; `start` waits for it.
    private init(directory existing: URL?, extraArguments: [String], launcher: [String]) throws {
        if let existing {
            directory = existing
        } else {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "controld-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(
                at: directory.appendingPathComponent("state"), withIntermediateDirectories: true)
        }
        // Sockets left by an earlier (crashed) run are stale: readiness is their reappearance.
        for name in ["admin.sock", "control.sock"] { unlink(directory.appendingPathComponent(name).path) }
        process = Process()
        let controld = budgetctlURL.deletingLastPathComponent().appendingPathComponent("budget-controld")
        let arguments =
            [
                "--state-dir", directory.appendingPathComponent("state").path,
                "--control-socket", directory.appendingPathComponent("control.sock").path,
                "--admin-socket", directory.appendingPathComponent("admin.sock").path,
            ] + extraArguments
        if launcher.isEmpty {
            process.executableURL = controld
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = launcher + [controld.path] + arguments
        }
        if !FileManager.default.fileExists(atPath: logFile.path) {
            _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        }
        let log = try FileHandle(forWritingTo: logFile)
        try log.seekToEnd()
        process.standardError = log
        process.standardOutput = FileHandle.nullDevice
        defer { try? log.close() }
        try process.run()
    }

    func logText() -> String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }

    /// SIGTERM and wait (`terminateNow`: synchronous, for `defer` and `deinit`); returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        terminateNow(process)
    }

    /// SIGKILL, as a crash.
    func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// budgetctl against this daemon.
    func budgetctl(_ arguments: [String], environment: [String: String] = fixtureEnvironment, input: Data? = nil)
        async throws -> ProcessResult
    {
        try await runBudgetctl(
            arguments, environment: environment.merging(["BUDGETCTL_SOCKET": adminSocket]) { $1 }, input: input)
    }

    deinit {
        stop()
    }

    /// A file holding `text` in the daemon's directory, removed with it.
    func file(_ text: String) throws -> String {
        let file = directory.appendingPathComponent("config-\(UUID().uuidString.prefix(8)).yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }

    /// Removes the whole directory (call at the end of a test that owns it).
    func removeDirectory() {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

struct DaemonError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
