import Foundation

/// A budget-controld started by a test on its own temporary state directory and sockets, stopped by
/// PID when the test is done (also when it failed).
final class ControlDaemon: @unchecked Sendable {
    let directory: URL
    let process: Process
    var adminSocket: String { directory.appendingPathComponent("admin.sock").path }
    var controlSocket: String { directory.appendingPathComponent("control.sock").path }
    var stateDirectory: String { directory.appendingPathComponent("state").path }
    private let log: Pipe

    /// Starts the daemon and waits until both sockets exist. `launcher`, if given, is a command line that
    /// ends by exec-ing the daemon's (as `setpriv ... --`), so the process is still the daemon.
    init(directory existing: URL? = nil, extraArguments: [String] = [], launcher: [String] = []) throws {
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
        log = Pipe()
        process.standardError = log
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: adminSocket)
                && FileManager.default.fileExists(atPath: controlSocket)
            {
                return
            }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        stop()
        throw DaemonError(message: "budget-controld did not start: \(logText())")
    }

    func logText() -> String {
        String(decoding: log.fileHandleForReading.availableData, as: UTF8.self)
    }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGKILL, as a crash.
    func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// budgetctl against this daemon.
    func budgetctl(_ arguments: [String], environment: [String: String] = fixtureEnvironment, input: Data? = nil) throws
        -> ProcessResult
    {
        try runBudgetctl(
            arguments, environment: environment.merging(["BUDGETCTL_SOCKET": adminSocket]) { $1 }, input: input)
    }

    deinit {
        stop()
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

/// A temporary file holding `text`.
func temporaryFile(_ text: String, name: String = "config.yaml") throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
        "budgetctl-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let file = directory.appendingPathComponent(name)
    try text.write(to: file, atomically: true, encoding: .utf8)
    return file.path
}
