import CSystemd
import Foundation


/// What a daemon needs from systemd, through libsystemd: sockets handed over by a socket unit (by their
/// `FileDescriptorName=`), readiness and status notifications, and the watchdog. Outside systemd every
/// call is a harmless no-op and `listeners` is empty.
package enum Systemd {
    /// Sockets passed by systemd (`LISTEN_FDS`/`LISTEN_FDNAMES`), by name; a name may carry several.
    /// The environment variables are unset afterwards, so children do not inherit them.
    package static func listeners() -> [String: [Int32]] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [:] }
        var result: [String: [Int32]] = [:]
        for index in 0..<Int(count) {
            let descriptor = Int32(SD_LISTEN_FDS_START) + Int32(index)
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            result[name, default: []].append(descriptor)
            free(names?[index])
        }
        free(names)
        return result
    }

    /// Sends `state` to the service manager (`READY=1`, `STATUS=…`, `STOPPING=1`, `WATCHDOG=1`).
    @discardableResult
    package static func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// Tells systemd the service is ready, with a status line.
    package static func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    /// Updates the status line `systemctl status` shows.
    package static func status(_ text: String) { notify("STATUS=\(text)") }
    /// Tells systemd the service is shutting down.
    package static func stopping() { notify("STOPPING=1") }

    /// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
    package static var watchdogInterval: Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(microseconds))
    }
}
