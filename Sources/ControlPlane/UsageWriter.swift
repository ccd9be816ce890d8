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
        let started = ContinuousClock.now
        func monotonic() -> Int64 { (ContinuousClock.now - started).components.seconds }
        var pruning = PruneClock(interval: pruneInterval, wall: BudgetDesk.now(), monotonic: monotonic())
        while let batch = await desk.nextBatch() {
            await write(batch)
            let now = BudgetDesk.now()
            switch pruning.tick(wall: now, monotonic: monotonic()) {
            case .wait: break
            case .prune:
                desk.withLedger {
                    $0.compact(now: now)
                    $0.forgetMarks(seenBefore: now - BudgetDesk.commitMarkLifetime)
                }
                do {
                    try desk.store.pruneUsage(now: now, marksSeenBefore: now - BudgetDesk.commitMarkLifetime)
                } catch {
                    logger.error("cannot prune usage", metadata: ["error": "\(error)"])
                }
            case .clockJumped(let seconds):
                logger.warning(
                    "the clock jumped; expired usage is kept until it has run steadily for an hour",
                    metadata: ["jump_seconds": "\(seconds)"])
            }
        }
    }

    /// Writes a batch and acknowledges its commits. A failed write is tried again (100 ms, doubling to 5 s)
    /// until it succeeds or the writer is stopped: a commit is acknowledged only once its usage is durable,
    /// and the ledger has already applied it (a resend would be recognised and not charged again).
    private func write(_ batch: BudgetDesk.Batch) async {
        var backoff = Duration.milliseconds(100)
        var failures = 0
        let buckets = BucketUsage.merged(batch.buckets)
        while true {
            do {
                // On this task's thread: one batch at a time, and no hop to GRDB's queue and back.
                try desk.store.recordNow(buckets, marks: batch.marks)
                if failures > 0 { logger.notice("usage recorded again", metadata: ["attempts": "\(failures + 1)"]) }
                for waiter in batch.waiters { waiter(.success(())) }
                return
            } catch {
                failures += 1
                logger.error(
                    "cannot record usage; trying again", metadata: ["error": "\(error)", "retry_in": "\(backoff)"])
                if Task.isCancelled || desk.isFinishing {
                    for waiter in batch.waiters { waiter(.failure(error)) }
                    return
                }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }
}

