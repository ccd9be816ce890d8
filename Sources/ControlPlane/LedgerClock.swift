import NIOCore
import ServiceLifecycle

/// Tells the ledger every second that the control plane runs (`Ledger.heartbeat`), from the event loop the
/// data planes are served on. When the process was stopped (SIGSTOP, a debugger), starved, or the wall clock
/// jumped, the next beat finds the gap and the holds of requests in flight live that much longer: the
/// renewals the data planes sent meanwhile wait in the socket behind reservations, and those reservations
/// must not find the holds expired.
struct LedgerClock: Service {
    let eventLoop: any EventLoop
    let desk: BudgetDesk

    func run() async throws {
        let desk = self.desk
        desk.heartbeat()
        let beat = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            desk.heartbeat()
        }
        try? await gracefulShutdown()
        beat.cancel()
    }
}
