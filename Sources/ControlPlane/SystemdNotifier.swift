import Logging
import ServiceLifecycle
import Systemd

/// Tells systemd and the log that the daemon is ready, and says "stopping" when graceful shutdown begins.
/// Last in the service group, so the first to hear of shutdown.
struct SystemdNotifier: Service {
    let status: String
    let readyMetadata: Logger.Metadata
    let logger: Logger

    func run() async {
        Systemd.ready(status: status)
        logger.notice("ready", metadata: readyMetadata)
        // Throws only when the group is cancelled, which is a stop too.
        try? await gracefulShutdown()
        logger.notice("stopping")
        Systemd.stopping()
    }
}
