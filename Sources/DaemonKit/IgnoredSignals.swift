import Foundation

/// Signals a daemon must not die of; SIGTERM and SIGINT belong to its `ServiceGroup`.
public enum IgnoredSignals {
    /// Ignores SIGPIPE: a peer that closes while a reply is written is an error on that write, not the
    /// end of the daemon.
    public static func sigpipe() { signal(SIGPIPE, SIG_IGN) }
}
