import Foundation

/// An integer many threads may change and read: open connections, requests in flight.
public final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    public init() {}

    public var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }

    public func add(_ delta: Int) {
        lock.lock()
        count += delta
        lock.unlock()
    }
}
