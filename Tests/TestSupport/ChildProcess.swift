public import Foundation

/// What a process that ran to completion left: its exit status and its output.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs `executable` to completion with exactly `environment`, feeding `input` on stdin, off Swift's
/// cooperative pool (see `offPool`).
public func runProcess(
    _ executable: URL, _ arguments: [String], environment: [String: String], input: Data? = nil,
    directory: URL? = nil
) async throws -> ProcessResult {
    try await offPool {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        if let directory { process.currentDirectoryURL = directory }
        let stdout = Pipe()
        let stderr = Pipe()
        let stdin = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(input) }
        try stdin.fileHandleForWriting.close()
        // Both pipes are read to the end before the wait, so a large output cannot block the child.
        let group = DispatchGroup()
        nonisolated(unsafe) var errData = Data()
        DispatchQueue.global().async(group: group) { errData = stderr.fileHandleForReading.readDataToEndOfFile() }
        let outData = stdout.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return ProcessResult(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// SIGTERM, then SIGKILL after `grace`; blocks until the process has exited and returns its status. For `defer` and
/// `deinit`, which cannot await (a daemon exits within milliseconds of SIGTERM); `terminate` waits off the pool.
@discardableResult
public func terminateNow(_ process: Process, grace: Duration = .seconds(10)) -> Int32 {
    if process.isRunning {
        kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
    process.waitUntilExit()
    return process.terminationStatus
}

/// `terminateNow` on a thread of its own (see `offPool`).
@discardableResult
public func terminate(_ process: Process, grace: Duration = .seconds(10)) async -> Int32 {
    _ = try? await offPool { terminateNow(process, grace: grace) }
    return process.terminationStatus
}
