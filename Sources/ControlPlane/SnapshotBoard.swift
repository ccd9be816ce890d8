package import BudgetConfig
package import BudgetWire
import DaemonKit
import Synchronization

/// What data planes are sent of the config: a whole snapshot when they connect, then each change as a delta
/// (`snapshotDelta`: base version, new version, the applied changes), and the connections watching for them.
/// Behind a lock, so that a connection registers and unregisters on its own event loop without a hop to an
/// actor.
///
/// A change is pushed as soon as it is published; the whole snapshot of the new version is encoded afterwards,
/// off the caller's path (`refreshSnapshot`), since encoding 100,000 consumers takes far longer than the push.
/// Until it is ready, a data plane that connects gets the previous snapshot followed by the deltas since it
/// (`watch` returns them in order), so it reaches the current version like those already connected.
/// Every watcher gets every push in version order, so each one is always at the version a delta starts from.
package final class SnapshotBoard: Sendable {
    private struct State {
        /// The newest snapshot encoded, and its version.
        var frame: WireFrame
        var frameVersion: UInt64
        /// The deltas from `frameVersion` to `version`, in order, with the version each makes.
        var deltas: [(version: UInt64, frame: WireFrame)] = []
        /// The config version data planes are brought to.
        var version: UInt64
        var watchers: [UInt64: @Sendable (WireFrame) -> Void] = [:]
        var nextID: UInt64 = 1
        /// The newest state whose snapshot is yet to be encoded, and whether an encoding task is running.
        var unencoded: (state: ConfigState, version: UInt64)?
        var encoding = false
    }

    private let state: Mutex<State>

    /// A board holding the snapshot of `state` at `version`.
    package init(version: UInt64, state: ConfigState) {
        self.state = Mutex(
            State(frame: Self.frame(version: version, state: state), frameVersion: version, version: version))
    }

    /// The snapshot frame of `state` at `version`, as pushed (request id 0).
    package static func frame(version: UInt64, state: ConfigState) -> WireFrame {
        WireFrame(.snapshot, requestID: 0, payload: WireJSON.encode(ConfigSnapshot(version: version, state: state)))
    }

    /// The delta frame of `changes` from `base` to `version`, as pushed (request id 0).
    package static func deltaFrame(base: UInt64, version: UInt64, changes: [AppliedChange]) -> WireFrame {
        WireFrame(
            .snapshotDelta, requestID: 0,
            payload: WireJSON.encode(ConfigDelta(baseVersion: base, version: version, changes: changes)))
    }

    /// The config version data planes are brought to.
    package var version: UInt64 { state.withLock { $0.version } }

    /// The version of the newest whole snapshot encoded (at most `version`; below it while one is encoded).
    package var snapshotVersion: UInt64 { state.withLock { $0.frameVersion } }

    /// Data planes watching now.
    package var watcherCount: Int { state.withLock { $0.watchers.count } }

    /// Registers `send` for pushes; returns its id and what to send it first: the newest snapshot and the
    /// deltas since, which bring it to `version`. Taken in the same step, so that no push can fall between them.
    package func watch(_ send: @escaping @Sendable (WireFrame) -> Void) -> (
        id: UInt64, frames: [WireFrame], version: UInt64
    ) {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.watchers[id] = send
            return (id, [state.frame] + state.deltas.map(\.frame), state.version)
        }
    }

    /// Stops pushing to watcher `id`.
    package func unwatch(_ id: UInt64) {
        _ = state.withLock { $0.watchers.removeValue(forKey: id) }
    }

    /// Publishes the change from `base` to `version` (`delta`, from `deltaFrame`) whose result is `result`: the
    /// delta goes to every watcher at once, and the snapshot of `result` is encoded in the background. Should the
    /// board not be at `base` (a publisher that skipped a version), the whole snapshot is encoded now and pushed
    /// instead. A version not above the board's is ignored.
    package func publish(delta: WireFrame, base: UInt64, version: UInt64, result: ConfigState) {
        // The watchers are taken in the step that adds the delta: one registering now gets either this delta
        // among its first frames or this push, never both or neither. Publishers are serialized (the admin desk
        // is an actor), so the pushes leave in version order.
        let chained = state.withLock { state -> (watchers: [@Sendable (WireFrame) -> Void], chained: Bool)? in
            guard version > state.version else { return nil }
            guard base == state.version else { return ([], false) }
            state.version = version
            state.deltas.append((version, delta))
            return (Array(state.watchers.values), true)
        }
        guard let chained else { return }
        guard chained.chained else {
            install(Self.frame(version: version, state: result), version: version)
            return
        }
        for send in chained.watchers { send(delta) }
        refreshSnapshot(of: result, version: version)
    }

    /// Makes `frame` the snapshot new data planes get and pushes it to the watching ones, unless a newer one
    /// is already there.
    package func install(_ frame: WireFrame, version: UInt64) {
        let watchers = state.withLock { state -> [@Sendable (WireFrame) -> Void] in
            guard version > state.version else { return [] }
            state.version = version
            state.frame = frame
            state.frameVersion = version
            state.deltas = []
            return Array(state.watchers.values)
        }
        for send in watchers { send(frame) }
    }

    /// Encodes the snapshot of `result` at `version` in a background task and makes it the one new data planes
    /// get. Changes that come while one is encoded are coalesced: only the newest state is encoded next.
    private func refreshSnapshot(of result: ConfigState, version: UInt64) {
        let start = state.withLock { state -> Bool in
            state.unencoded = (result, version)
            guard !state.encoding else { return false }
            state.encoding = true
            return true
        }
        guard start else { return }
        Task.detached(priority: .utility) { [self] in
            while let next = nextToEncode() {
                adopt(Self.frame(version: next.version, state: next.state), version: next.version)
            }
            // The previous snapshot and the deltas it replaced (a first sync's is as large as the snapshot).
            FreedMemory.release()
        }
    }

    private func nextToEncode() -> (state: ConfigState, version: UInt64)? {
        state.withLock { state in
            guard let next = state.unencoded else {
                state.encoding = false
                return nil
            }
            state.unencoded = nil
            return next
        }
    }

    /// Makes an encoded snapshot the one new data planes get, and drops the deltas it includes (nothing is
    /// pushed: the watchers have those deltas).
    private func adopt(_ frame: WireFrame, version: UInt64) {
        state.withLock { state in
            guard version > state.frameVersion, version <= state.version else { return }
            state.frame = frame
            state.frameVersion = version
            state.deltas.removeAll { $0.version <= version }
        }
    }
}
