import BudgetWire
import Foundation

/// Usage the control plane has not acknowledged yet, kept in a file of the data plane's state directory so
/// that it survives a stop or a crash of budget-proxyd while the control plane is away. Written whole
/// (temporary file, fsync, rename) when the pending commits change, at most every `checkpointInterval`; read
/// at start and sent first. Each commit keeps its origin (commit stream and number), so one that did reach
/// the control plane before the file was last written is recognised there and not charged twice.
///
/// Format: the 8 bytes `BGSPOOL1`, then frames of `u32 length | encode(commits:) payload`.
struct CommitSpool: Sendable {
    let path: String
    /// How often the pending commits are written while they change.
    static let checkpointInterval: Duration = .seconds(2)
    private static let magic = Array("BGSPOOL1".utf8)

    init(directory: String) {
        path = (directory as NSString).appendingPathComponent("pending-usage.spool")
    }

    /// The commits in the spool (none when there is no file), and what is wrong with it, if anything: the
    /// commits of the frames before a damaged one are kept.
    func load() -> (commits: [BudgetMessages.Commit], problem: SpoolError?) {
        var commits: [BudgetMessages.Commit] = []
        do {
            try read(into: &commits)
            return (commits, nil)
        } catch {
            return (commits, error)
        }
    }

    private func read(into commits: inout [BudgetMessages.Commit]) throws(SpoolError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            if FileManager.default.fileExists(atPath: path) { throw SpoolError(path: path, problem: "cannot be read") }
            return
        }
        let bytes = [UInt8](data)
        guard bytes.count >= Self.magic.count, Array(bytes.prefix(Self.magic.count)) == Self.magic else {
            throw SpoolError(path: path, problem: "is not a usage spool (no BGSPOOL1 header)")
        }
        var offset = Self.magic.count
        while offset < bytes.count {
            guard bytes.count - offset >= 4 else {
                throw SpoolError(path: path, problem: "ends inside a frame header at byte \(offset)")
            }
            let length = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            offset += 4
            guard length <= bytes.count - offset else {
                throw SpoolError(path: path, problem: "frame at byte \(offset - 4) claims \(length) bytes past the end")
            }
            do {
                commits += try BudgetMessages.decodeCommits(Array(bytes[offset..<offset + length]))
            } catch {
                throw SpoolError(path: path, problem: "frame at byte \(offset - 4): \(error.message)")
            }
            offset += length
        }
    }

    /// Replaces the spool with `commits`, or removes it when there are none.
    /// - Throws: `SpoolError` when the file cannot be written.
    func store(_ commits: [BudgetMessages.Commit]) throws(SpoolError) {
        guard !commits.isEmpty else {
            if unlink(path) != 0 && errno != ENOENT {
                throw SpoolError(path: path, problem: "cannot be removed: \(String(cString: strerror(errno)))")
            }
            return
        }
        var bytes = Self.magic
        var rest = commits[...]
        while !rest.isEmpty {
            let count = max(1, BudgetMessages.batchCount(rest, size: BudgetMessages.encodedSize))
            let payload = BudgetMessages.encode(commits: Array(rest.prefix(count)))
            let length = UInt32(payload.count)
            bytes += [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
            bytes += payload
            rest = rest.dropFirst(count)
        }
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SpoolError(path: temporary, problem: "cannot be created: \(String(cString: strerror(errno)))")
        }
        var written = 0
        var failure: Int32 = 0
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            while written < buffer.count {
                let result = write(fd, base + written, buffer.count - written)
                if result < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                written += result
            }
        }
        if failure == 0 && fsync(fd) != 0 { failure = errno }
        close(fd)
        guard failure == 0, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(failure != 0 ? failure : errno))
            unlink(temporary)
            throw SpoolError(path: path, problem: "cannot be written: \(reason)")
        }
        let directory = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }
}

/// The spool file could not be read or written.
struct SpoolError: Error, CustomStringConvertible {
    var path: String
    var problem: String
    var description: String { "usage spool \(path) \(problem)" }
}
