import Synchronization

/// Large values a short-lived command keeps until it exits instead of freeing them.
///
/// A config of 100,000 consumers is about a million small heap objects: the YAML tree, the source map and each
/// state. Freeing them object by object took 0.35 to 0.45 s of a 2.2-s resync, for memory the kernel takes back
/// at exit for nothing. budgetctl turns retention on before it reads anything, and exits soon after; the daemons
/// and the tests never do, so for them `keep` is a no-op and values are freed as usual.
package enum ExitRetention {
    private static let kept = Mutex<[any Sendable]?>(nil)

    /// From now on, `keep` holds what it is given until the process exits.
    package static func enable() {
        kept.withLock { if $0 == nil { $0 = [] } }
    }

    /// Holds `value` until exit when retention is on; otherwise does nothing (the caller's copy is freed as usual).
    package static func keep(_ value: some Sendable) {
        kept.withLock { $0?.append(value) }
    }
}
