import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Binds and listens on a Unix stream socket, apart from serving it, so that an inherited socket
/// (systemd) and a bound one are served the same way.
public enum UnixListener {
    /// A listening socket's descriptor, with the path it is bound to.
    public struct Bound: Sendable {
        public var descriptor: Int32
        public var path: String
        /// Handed over by systemd: the socket unit owns the path, so the daemon must not remove it.
        public var isInherited: Bool

        public init(descriptor: Int32, path: String, isInherited: Bool) {
            self.descriptor = descriptor
            self.path = path
            self.isInherited = isInherited
        }
    }

    /// Creates `path` (replacing a stale socket left by a crash, never a live one or another file),
    /// sets its mode and group, and listens.
    public static func bind(path: String, mode: UInt32, group: UInt32? = nil, backlog: Int32 = 256)
        throws(ListenerError) -> Bound
    {
        var address = try unixAddress(path)
        try removeStaleSocket(at: path, address: address)
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw ListenerError("\(path): socket(): \(String(cString: strerror(errno)))") }
        let previousMask = umask(0o177)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        let bindErrno = errno
        umask(previousMask)
        guard bound == 0 else {
            close(descriptor)
            throw ListenerError("\(path): cannot bind: \(String(cString: strerror(bindErrno)))")
        }
        if let group, chown(path, uid_t.max, gid_t(group)) != 0 {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            unlink(path)
            throw ListenerError("\(path): cannot set group \(group): \(reason)")
        }
        guard chmod(path, mode_t(mode)) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            unlink(path)
            throw ListenerError("\(path): cannot set mode: \(reason)")
        }
        guard listen(descriptor, backlog) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            unlink(path)
            throw ListenerError("\(path): cannot listen: \(reason)")
        }
        return Bound(descriptor: descriptor, path: path, isInherited: false)
    }

    /// The `sockaddr_un` of `path`; paths too long for it are refused.
    private static func unixAddress(_ path: String) throws(ListenerError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else {
            throw ListenerError("\(path): socket paths are limited to \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: pathBytes)
            buffer[pathBytes.count] = 0
        }
        return address
    }

    private static func removeStaleSocket(at path: String, address: sockaddr_un) throws(ListenerError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ListenerError("\(path) exists and is not a socket; refusing to replace it")
        }
        // A socket someone still listens on is live: do not steal it.
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(probe) }
        var address = address
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 {
            throw ListenerError("\(path) is in use by another process (is budget-controld already running?)")
        }
        unlink(path)
    }

    /// The numeric id of group `name` (or a number as text).
    public static func groupID(_ name: String) -> UInt32? {
        if let number = UInt32(name) { return number }
        guard let entry = getgrnam(name) else { return nil }
        return UInt32(entry.pointee.gr_gid)
    }
}

/// Why a Unix socket could not be bound: the path and what the system said.
public struct ListenerError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
