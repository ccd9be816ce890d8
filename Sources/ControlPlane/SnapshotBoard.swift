package import BudgetConfig
package import BudgetWire
import Synchronization

/// The config snapshot data planes get when they connect and whenever the config changes, and the
/// connections watching for it. Behind a lock, so that a connection registers and unregisters on its own
/// event loop without a hop to an actor.
package final class SnapshotBoard: Sendable {
    private struct State {
        var frame: WireFrame
        var version: UInt64
        var watchers: [UInt64: @Sendable (WireFrame) -> Void] = [:]
        var nextID: UInt64 = 1
    }

    private let state: Mutex<State>

    /// A board holding the snapshot of `state` at `version`.
    package init(version: UInt64, state: ConfigState) {
        self.state = Mutex(State(frame: Self.frame(version: version, state: state), version: version))
    }

    /// The snapshot frame of `state` at `version`, as pushed (request id 0).
    package static func frame(version: UInt64, state: ConfigState) -> WireFrame {
        WireFrame(.snapshot, requestID: 0, payload: WireJSON.encode(ConfigSnapshot(version: version, state: state)))
    }

    /// The config version of the current snapshot.
    package var version: UInt64 { state.withLock { $0.version } }

    /// Data planes watching now.
    package var watcherCount: Int { state.withLock { $0.watchers.count } }

    /// Registers `send` for pushes; returns its id and the current snapshot, taken in the same step so that
    /// no push can fall between them.
    package func watch(_ send: @escaping @Sendable (WireFrame) -> Void) -> (
        id: UInt64, snapshot: WireFrame, version: UInt64
    ) {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.watchers[id] = send
            return (id, state.frame, state.version)
        }
    }

    /// Stops pushing to watcher `id`.
    package func unwatch(_ id: UInt64) {
        _ = state.withLock { $0.watchers.removeValue(forKey: id) }
    }

    /// Makes `frame` the snapshot new data planes get and pushes it to the watching ones, unless a newer one
    /// is already there.
    package func install(_ frame: WireFrame, version: UInt64) {
        let watchers = state.withLock { state -> [@Sendable (WireFrame) -> Void] in
            guard version > state.version else { return [] }
            state.version = version
            state.frame = frame
            return Array(state.watchers.values)
        }
        for send in watchers { send(frame) }
    }
}
