public import NIOCore
public import ServiceLifecycle
import Systemd

/// Feeds systemd's watchdog (`WatchdogSec=`) at half its interval, from an event loop the daemon serves on,
/// until graceful shutdown: a wedged loop stops the pings and systemd restarts the daemon. Without a
/// watchdog it returns at once.
public struct WatchdogService: Service {
    let eventLoop: any EventLoop

    public init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    public func run() async throws {
        guard let interval = Systemd.watchdogInterval else { return }
        let half = TimeAmount(max(interval / 2, .milliseconds(1)))
        Systemd.notify("WATCHDOG=1")
        let eventLoop = self.eventLoop
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown {
                let ping = eventLoop.scheduleTask(in: half) { Systemd.notify("WATCHDOG=1") }
                _ = try await withTaskCancellationHandler {
                    try await ping.futureResult.get()
                } onCancel: {
                    ping.cancel()
                }
            }
        }
    }
}
