import Synchronization

/// Continuations of tasks waiting for something, each resumable once: resumed with `true` when the thing
/// happens, with `false` when the waiting task is cancelled. The building block of `OnceEvent` and `Gauge`.
struct Waiters: ~Copyable {
    private var continuations: [UInt64: CheckedContinuation<Bool, Never>] = [:]
    private var nextID: UInt64 = 0

    /// Registers a waiter and returns its id.
    mutating func add(_ continuation: CheckedContinuation<Bool, Never>) -> UInt64 {
        nextID += 1
        continuations[nextID] = continuation
        return nextID
    }

    /// Removes one waiter (it was cancelled); nil if it was already resumed.
    mutating func remove(_ id: UInt64) -> CheckedContinuation<Bool, Never>? {
        continuations.removeValue(forKey: id)
    }

    /// Removes every waiter, for resuming outside the lock.
    mutating func takeAll() -> [CheckedContinuation<Bool, Never>] {
        defer { continuations = [:] }
        return Array(continuations.values)
    }
}

/// Something that happens once (the first config snapshot, say); tasks wait for it without polling.
public final class OnceEvent: Sendable {
    private let happened = Atomic(false)
    /// One until the event happens, then zero.
    private let pending = Gauge(1)

    public init() {}

    /// Marks the event as happened and wakes every waiter; later calls do nothing.
    public func signal() {
        if !happened.exchange(true, ordering: .acquiringAndReleasing) { pending.add(-1) }
    }

    /// Returns true when the event has happened, false if the calling task is cancelled first.
    public func wait() async -> Bool { await pending.waitUntilZero() }
}

/// A count many threads change (open connections, requests in flight), which a task can wait to see
/// reach zero, as a daemon's drain does on shutdown.
public final class Gauge: Sendable {
    private struct State: ~Copyable {
        var value = 0
        var waiters = Waiters()
    }

    private let state: Mutex<State>

    /// A gauge at `initial`.
    public init(_ initial: Int = 0) { state = Mutex(State(value: initial)) }

    /// The current count.
    public var value: Int { state.withLock { $0.value } }

    /// Adds `delta` (negative to take away); reaching zero wakes the tasks waiting for it.
    public func add(_ delta: Int) {
        let woken = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.value += delta
            return state.value == 0 ? state.waiters.takeAll() : []
        }
        for continuation in woken { continuation.resume(returning: true) }
    }

    /// Adds one unless the count is already at `limit`; returns whether it did.
    public func increment(below limit: Int) -> Bool {
        state.withLock { state in
            guard state.value < limit else { return false }
            state.value += 1
            return true
        }
    }

    /// Returns true once the count is zero, false if the calling task is cancelled first.
    public func waitUntilZero() async -> Bool {
        let id = Mutex<UInt64?>(nil)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let resumeNow = state.withLock { state -> Bool? in
                    if state.value == 0 { return true }
                    if Task.isCancelled { return false }
                    id.withLock { $0 = state.waiters.add(continuation) }
                    return nil
                }
                if let resumeNow { continuation.resume(returning: resumeNow) }
            }
        } onCancel: {
            let cancelled = state.withLock { state in id.withLock { $0 }.flatMap { state.waiters.remove($0) } }
            cancelled?.resume(returning: false)
        }
    }
}

/// Runs `operation` for at most `limit`: its result, or `nil` when the time ran out first (the operation
/// is then cancelled, and awaited).
public func withDeadline<T: Sendable>(
    _ limit: Duration, _ operation: @escaping @Sendable () async -> T
) async -> T? {
    await withTaskGroup(of: T?.self) { group in
        group.addTask { await operation() }
        group.addTask {
            try? await Task.sleep(for: limit)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}
