import BudgetLedger
import BudgetWire
import Synchronization

/// The holds of this data plane's requests in flight, as leases: renewed before the control plane's
/// reservation lifetime runs out, and re-established after a reconnect (a restarted control plane has lost
/// them), so a request that outlives a lease or a control-plane restart keeps its budget held.
final class LeaseBook: Sendable {
    private let leases = Mutex<[UInt64: Lease]>([:])

    /// Records the hold of an admitted request.
    func hold(_ lease: Lease) {
        guard lease.id != 0 else { return }
        leases.withLock { $0[lease.id] = lease }
    }

    /// Forgets a hold: its request committed or released it.
    func settle(_ id: UInt64) {
        guard id != 0 else { return }
        leases.withLock { _ = $0.removeValue(forKey: id) }
    }

    /// Holds in flight.
    var count: Int { leases.withLock { $0.count } }

    /// The holds in flight, in frames' worth (`BudgetMessages.batchCount`, 3 bytes of batch header).
    func batches() -> [[Lease]] {
        let all = leases.withLock { Array($0.values) }
        var batches: [[Lease]] = []
        var rest = all[...]
        while !rest.isEmpty {
            // The renew batch's header is one byte more than batchCount assumes.
            let count = max(1, BudgetMessages.batchCount(rest) { BudgetMessages.encodedSize($0) + 1 })
            batches.append(Array(rest.prefix(count)))
            rest = rest.dropFirst(count)
        }
        return batches
    }
}
