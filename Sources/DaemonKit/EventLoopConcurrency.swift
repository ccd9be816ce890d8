import CBudgetSystem
import NIOCore
import NIOPosix

/// Swift Concurrency's global executor on SwiftNIO's singleton event loops, so that a task runs on the loop that
/// does its I/O rather than hopping between the concurrency pool's threads and the loops.
///
/// SwiftNIO's own `NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()`
/// does the same takeover but runs each job as the event loop's *serial* executor. A task then never looks as if
/// it were on the generic executor, so every call into or return from a `nonisolated async` function (which
/// runs on the generic executor) is a `swift_task_switch` that enqueues the task again: budget-proxyd ran 38
/// jobs per proxied request, 35 of them such switches. Here a job runs as the generic executor, which is what
/// the runtime's default global executor does on its threads, and those switches continue in place.
///
/// The hook is the runtime's `swift_task_enqueueGlobal_hook`, set once, before any task runs; `Task.sleep`
/// and other delayed jobs still go to the runtime's default executor.
public enum EventLoopConcurrency {
    /// Makes `MultiThreadedEventLoopGroup.singleton` the global executor (size it first with
    /// `NIOSingletons.groupLoopCountSuggestion`). Returns false when the runtime has no hook or another one is
    /// installed; tasks then run on the runtime's own pool.
    /// - warning: Call it once, from the main thread, before any task is created.
    public static func install() -> Bool {
        cbudget_install_global_enqueue { job in
            guard let job else { return }
            let pending = PendingJob(address: job)
            // `any()` keeps a job on the loop it was enqueued from, when that is one of the group's.
            MultiThreadedEventLoopGroup.singleton.any().execute {
                cbudget_run_job_as_generic(pending.address)
            }
        } == 1
    }
}

/// A job handed to an event loop, to run there once.
private struct PendingJob: @unchecked Sendable {
    let address: UnsafeMutableRawPointer
}
