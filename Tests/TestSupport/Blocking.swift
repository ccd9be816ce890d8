public import Foundation

/// Runs `body`, which blocks (waits for a process, sleeps, reads a socket), on a thread of its own, and awaits it.
///
/// Swift Testing runs tests in parallel on Swift's cooperative pool, which has one thread per CPU. A test that
/// blocks on one of them holds it: two such tests on a 2-CPU machine stall every other test of the run, with the
/// in-process daemons and clients they drive. A stall of more than 10 s made a `WireClient`'s hello late, and
/// budget-controld rightly closed the connection (CI, 2026-12-07). So nothing a test blocks on runs there.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Polls `condition` every `interval` until it holds or `timeout` has passed, sleeping between polls without
/// holding a thread; returns whether it held.
public func poll(
    every interval: Duration = .milliseconds(20), for timeout: Duration, until condition: () throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: interval)
    }
}

/// Polls `ready` while `process` runs, for at most `timeout`, without holding a thread: whether the process came
/// up (`ready` held and it still runs). A process that exits ends the wait at once.
public func waitUntilReady(
    _ process: Process, within timeout: Duration, every interval: Duration = .milliseconds(20), _ ready: () -> Bool
) async -> Bool {
    await poll(every: interval, for: timeout) { ready() || !process.isRunning } && process.isRunning
}

/// A test's failure that is not an expectation: a daemon that did not start, a tool that failed.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
