import CBudgetSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The supplementary groups of a Unix socket's peer, from the kernel (`SO_PEERGROUPS`, Linux 4.13): the
/// groups the client had when it connected, read without `/proc` (which `ProtectProc=invisible` hides for
/// other users' processes).
enum PeerGroups {
    /// The kernel's own limit (NGROUPS_MAX); a larger count is not believed.
    static let maxCount = 65536

    /// Why the groups could not be read.
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The groups of the peer of this process's socket whose `SO_COOKIE` is `cookie` (how a SwiftNIO channel's
    /// descriptor is found: NIO does not expose it). Call it on the channel's event loop, so the descriptor
    /// cannot be closed meanwhile.
    static func ofSocket(cookie: UInt64) throws(Failure) -> [UInt32] {
        let descriptor = cbudget_socket_with_cookie(cookie)
        guard descriptor >= 0 else { throw Failure(description: "the connection's socket was not found") }
        return try of(descriptor: descriptor)
    }

    /// The groups of the peer of the connected Unix socket `descriptor`.
    static func of(descriptor: Int32) throws(Failure) -> [UInt32] {
        var capacity = 64
        // The groups were fixed at connect time, so one retry with the size the kernel asked for is enough;
        // the third round only guards the loop.
        for _ in 0..<3 {
            var needed = 0
            var groups = [gid_t](repeating: 0, count: capacity)
            let count = groups.withUnsafeMutableBufferPointer {
                cbudget_peer_groups(descriptor, $0.baseAddress, $0.count, &needed)
            }
            if count >= 0 {
                return groups.prefix(min(Int(count), capacity)).map { UInt32($0) }
            }
            let code = errno
            guard code == ERANGE else {
                throw Failure(description: "SO_PEERGROUPS: \(String(cString: strerror(code)))")
            }
            guard needed > capacity, needed <= maxCount else {
                throw Failure(
                    description: "SO_PEERGROUPS: the peer has \(needed) groups (at most \(maxCount) are read)")
            }
            capacity = needed
        }
        throw Failure(description: "SO_PEERGROUPS: the group count kept changing")
    }
}
