import BudgetLedger
import BudgetStore
package import Logging
import ServiceLifecycle

/// Writes committed usage to the store in batches (group commit), and drops expired usage now and then.
/// On graceful shutdown it writes what is queued and returns: the bounded drain of budget-controld.
package struct UsageWriter: Service {
    let desk: BudgetDesk
    let logger: Logger
    /// Seconds between two prunes of expired counters and rows.
    var pruneInterval: Int64 = 300

    package init(desk: BudgetDesk, logger: Logger) {
        self.desk = desk
        self.logger = logger
    }

    package func run() async {
        let desk = self.desk
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await writeUntilFinished()
            } onGracefulShutdown: {
                desk.finishWriting()
            }
        } onCancel: {
            desk.finishWriting()
        }
    }

    private func writeUntilFinished() async {
        var lastPrune: Int64 = 0
        while let batch = await desk.nextBatch() {
            do {
                try await desk.store.record(batch.buckets)
                for waiter in batch.waiters { waiter.resume() }
            } catch {
                logger.error("cannot record usage", metadata: ["error": "\(error)"])
                for waiter in batch.waiters { waiter.resume(throwing: error) }
            }
            let now = BudgetDesk.now()
            if now - lastPrune > pruneInterval {
                lastPrune = now
                desk.withLedger { $0.compact(now: now) }
                try? desk.store.pruneUsage(now: now)
            }
        }
    }
}
