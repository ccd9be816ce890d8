public import BudgetLedger
import BudgetConfig

/// The hot-path messages, each a batch so that concurrent requests share one frame.
public enum BudgetMessages {
    /// Most items in one batch.
    public static let maxBatch = 4096
    /// Most windows in one reservation: as many as one provider entry of the config may have.
    public static let maxRules = ConfigLimits.maxWindowsPerProvider

    // MARK: reserve

    /// A batch of reserve requests.
    public static func encode(reserves: [ReserveRequest]) -> [UInt8] {
        var writer = WireWriter(capacity: reserves.reduce(2) { $0 + encodedSize($1) })
        writer.u16(UInt16(reserves.count))
        for request in reserves {
            writer.u16(UInt16(request.rules.count))
            for rule in request.rules {
                write(rule.key, into: &writer)
                writer.u8(rule.kind == .sliding ? 0 : 1)
                writer.f64(rule.limit)
            }
            writer.u8(request.enforcement == .soft ? 0 : 1)
            writer.f64(request.promptUnits)
            writer.f64(request.unitsPerCompletionToken)
            writer.u32(UInt32(clamping: request.maxTokens))
        }
        return writer.bytes
    }

    /// Reads a batch of reserve requests, refusing more than `maxBatch` requests or `maxRules` windows.
    public static func decodeReserves(_ bytes: [UInt8]) throws(WireDecodingError) -> [ReserveRequest] {
        var reader = WireReader(bytes)
        let count = Int(try reader.u16())
        guard count <= maxBatch else { throw WireDecodingError(message: "batch of \(count) exceeds \(maxBatch)") }
        var requests: [ReserveRequest] = []
        for _ in 0..<count {
            let ruleCount = Int(try reader.u16())
            guard ruleCount <= maxRules else {
                throw WireDecodingError(message: "\(ruleCount) windows exceed \(maxRules)")
            }
            var rules: [WindowRule] = []
            for _ in 0..<ruleCount {
                let key = try readKey(&reader)
                let kind: WindowKind = try reader.u8() == 0 ? .sliding : .fixed
                let limit = try reader.f64()
                guard limit > 0 else { throw WireDecodingError(message: "a limit must be positive") }
                rules.append(WindowRule(key: key, kind: kind, limit: limit))
            }
            let enforcement: Enforcement = try reader.u8() == 0 ? .soft : .hard
            let prompt = try reader.f64()
            let perToken = try reader.f64()
            let maxTokens = Int(try reader.u32())
            guard prompt >= 0, perToken >= 0 else { throw WireDecodingError(message: "units must not be negative") }
            requests.append(
                ReserveRequest(
                    rules: rules, enforcement: enforcement, promptUnits: prompt,
                    unitsPerCompletionToken: perToken, maxTokens: maxTokens))
        }
        try reader.finish()
        return requests
    }

    /// The outcomes of a reserve batch, in its order.
    public static func encode(outcomes: [ReserveOutcome]) -> [UInt8] {
        var writer = WireWriter()
        writer.u16(UInt16(outcomes.count))
        for outcome in outcomes {
            switch outcome {
            case .admitted(let id, let maxTokens, let windows):
                writer.u8(1)
                writer.u64(id)
                writer.u32(UInt32(clamping: maxTokens))
                write(windows, into: &writer)
            case .refused(let windows, let retryAfter, let exceeded):
                writer.u8(0)
                writer.u32(UInt32(clamping: retryAfter))
                write(windows, into: &writer)
                writer.u16(UInt16(exceeded.count))
                for key in exceeded { write(key, into: &writer) }
            case .unavailable(let reason):
                writer.u8(2)
                writer.string(String(reason.prefix(1024)))
            }
        }
        return writer.bytes
    }

    /// Reads the outcomes of a reserve batch.
    public static func decodeOutcomes(_ bytes: [UInt8]) throws(WireDecodingError) -> [ReserveOutcome] {
        var reader = WireReader(bytes)
        let count = Int(try reader.u16())
        var outcomes: [ReserveOutcome] = []
        for _ in 0..<count {
            let tag = try reader.u8()
            if tag == 2 {
                outcomes.append(.unavailable(reason: try reader.string()))
            } else if tag == 1 {
                let id = try reader.u64()
                let maxTokens = Int(try reader.u32())
                outcomes.append(.admitted(id: id, maxTokens: maxTokens, windows: try readWindows(&reader)))
            } else {
                let retryAfter = Int(try reader.u32())
                let windows = try readWindows(&reader)
                var exceeded: [LimitKey] = []
                for _ in 0..<Int(try reader.u16()) { exceeded.append(try readKey(&reader)) }
                outcomes.append(.refused(windows: windows, retryAfter: retryAfter, exceeded: exceeded))
            }
        }
        try reader.finish()
        return outcomes
    }

    // MARK: commit and release

    /// One commit: the reservation it replaces, the real usage per counter, and where it comes from (the
    /// data plane's commit stream and its number there, so a resend is recognised; `.none` for no identity).
    public struct Commit: Sendable, Hashable {
        public var reservation: UInt64
        public var charges: [Charge]
        public var origin: CommitOrigin

        public init(reservation: UInt64, charges: [Charge], origin: CommitOrigin = .none) {
            self.reservation = reservation
            self.charges = charges
            self.origin = origin
        }
    }

    /// A batch of commits.
    public static func encode(commits: [Commit]) -> [UInt8] {
        var writer = WireWriter(capacity: commits.reduce(2) { $0 + encodedSize($1) })
        writer.u16(UInt16(commits.count))
        for commit in commits {
            writer.u64(commit.origin.source)
            writer.u64(commit.origin.sequence)
            writer.u64(commit.reservation)
            writer.u16(UInt16(commit.charges.count))
            for charge in commit.charges {
                write(charge.key, into: &writer)
                writer.u8(charge.kind == .sliding ? 0 : 1)
                writer.f64(charge.units)
            }
        }
        return writer.bytes
    }

    /// Reads a batch of commits; a negative charge is an error.
    public static func decodeCommits(_ bytes: [UInt8]) throws(WireDecodingError) -> [Commit] {
        var reader = WireReader(bytes)
        let count = Int(try reader.u16())
        guard count <= maxBatch else { throw WireDecodingError(message: "batch of \(count) exceeds \(maxBatch)") }
        var commits: [Commit] = []
        for _ in 0..<count {
            let origin = CommitOrigin(source: try reader.u64(), sequence: try reader.u64())
            let id = try reader.u64()
            let chargeCount = Int(try reader.u16())
            guard chargeCount <= maxRules else {
                throw WireDecodingError(message: "\(chargeCount) charges exceed \(maxRules)")
            }
            var charges: [Charge] = []
            for _ in 0..<chargeCount {
                let key = try readKey(&reader)
                let kind: WindowKind = try reader.u8() == 0 ? .sliding : .fixed
                let units = try reader.f64()
                guard units >= 0 else { throw WireDecodingError(message: "a charge must not be negative") }
                charges.append(Charge(key: key, kind: kind, units: units))
            }
            commits.append(Commit(reservation: id, charges: charges, origin: origin))
        }
        try reader.finish()
        return commits
    }

    /// A batch of reservation ids to release.
    public static func encode(releases: [UInt64]) -> [UInt8] {
        var writer = WireWriter()
        writer.u16(UInt16(releases.count))
        for id in releases { writer.u64(id) }
        return writer.bytes
    }

    /// Reads a batch of reservation ids to release.
    public static func decodeReleases(_ bytes: [UInt8]) throws(WireDecodingError) -> [UInt64] {
        var reader = WireReader(bytes)
        let count = Int(try reader.u16())
        guard count <= maxBatch else { throw WireDecodingError(message: "batch of \(count) exceeds \(maxBatch)") }
        var ids: [UInt64] = []
        for _ in 0..<count { ids.append(try reader.u64()) }
        try reader.finish()
        return ids
    }

    // MARK: renew

    /// A batch of leases to renew; with `adopt`, holds of an earlier control-plane run are installed again
    /// (sent once after connecting, before any commit).
    public static func encode(renewals leases: [Lease], adopt: Bool) -> [UInt8] {
        var writer = WireWriter()
        writer.u8(adopt ? 1 : 0)
        writer.u16(UInt16(leases.count))
        for lease in leases {
            writer.u64(lease.id)
            writer.f64(lease.units)
            writer.u16(UInt16(lease.keys.count))
            for key in lease.keys { write(key, into: &writer) }
        }
        return writer.bytes
    }

    /// Reads a batch of leases to renew, refusing more than `maxBatch` leases or `maxRules` counters each.
    public static func decodeRenewals(_ bytes: [UInt8]) throws(WireDecodingError) -> (leases: [Lease], adopt: Bool) {
        var reader = WireReader(bytes)
        let adopt = try reader.u8() == 1
        let count = Int(try reader.u16())
        guard count <= maxBatch else { throw WireDecodingError(message: "batch of \(count) exceeds \(maxBatch)") }
        var leases: [Lease] = []
        for _ in 0..<count {
            let id = try reader.u64()
            let units = try reader.f64()
            guard units >= 0, units.isFinite else { throw WireDecodingError(message: "held units must be finite, >= 0") }
            let keyCount = Int(try reader.u16())
            guard keyCount <= maxRules else { throw WireDecodingError(message: "\(keyCount) counters exceed \(maxRules)") }
            var keys: [LimitKey] = []
            for _ in 0..<keyCount { keys.append(try readKey(&reader)) }
            leases.append(Lease(id: id, keys: keys, units: units))
        }
        try reader.finish()
        return (leases, adopt)
    }

    /// An acknowledgement of a batch of `count` commits or releases.
    public static func encodeAck(count: Int) -> [UInt8] {
        var writer = WireWriter()
        writer.u16(UInt16(count))
        return writer.bytes
    }

    /// Reads an acknowledgement: how many commits or releases it covers.
    public static func decodeAck(_ bytes: [UInt8]) throws(WireDecodingError) -> Int {
        var reader = WireReader(bytes)
        let count = Int(try reader.u16())
        try reader.finish()
        return count
    }

    // MARK: pieces

    // MARK: batch sizes

    /// The most payload bytes a data plane's frame may carry.
    public static let maxPayloadBytes = WireProtocol.maxDataPlaneRequestBytes - WireFrame.headerBytes

    /// How many of `items`, from the first, fit in one batch: at most `maxBatch`, and encoded (with the batch's
    /// 2-byte count) within `maxPayloadBytes`. 0 when the first item alone is too large to send.
    @inlinable
    public static func batchCount<Item>(_ items: some Collection<Item>, size: (Item) -> Int) -> Int {
        var bytes = 2
        var count = 0
        for item in items.prefix(maxBatch) {
            bytes += size(item)
            guard bytes <= maxPayloadBytes else { break }
            count += 1
        }
        return count
    }

    /// The bytes `encode(commits:)` writes for one commit.
    public static func encodedSize(_ commit: Commit) -> Int {
        commit.charges.reduce(8 + 8 + 8 + 2) { $0 + encodedSize($1.key) + 1 + 8 }
    }

    /// The bytes `encode(renewals:adopt:)` writes for one lease (the batch adds 3).
    public static func encodedSize(_ lease: Lease) -> Int {
        lease.keys.reduce(8 + 8 + 2) { $0 + encodedSize($1) }
    }

    /// The bytes `encode(reserves:)` writes for one request.
    public static func encodedSize(_ request: ReserveRequest) -> Int {
        request.rules.reduce(2) { $0 + encodedSize($1.key) + 1 + 8 } + 1 + 8 + 8 + 4
    }

    static func encodedSize(_ key: LimitKey) -> Int {
        // Summed field by field: an array of the three strings would be made (and retained) for every key.
        let cut = Int(UInt16.max)
        return 4 + 6 + min(key.plugin.utf8.count, cut) + min(key.provider.utf8.count, cut)
            + min(key.subject.utf8.count, cut)
    }

    static func write(_ key: LimitKey, into writer: inout WireWriter) {
        writer.string(key.plugin)
        writer.string(key.provider)
        writer.string(key.subject)
        writer.u32(UInt32(clamping: key.windowSize))
    }

    static func readKey(_ reader: inout WireReader) throws(WireDecodingError) -> LimitKey {
        let plugin = try reader.string()
        let provider = try reader.string()
        let subject = try reader.string()
        let size = Int(try reader.u32())
        guard size > 0 else { throw WireDecodingError(message: "a window size must be positive") }
        return LimitKey(plugin: plugin, provider: provider, subject: subject, windowSize: size)
    }

    static func write(_ windows: [WindowStatus], into writer: inout WireWriter) {
        writer.u16(UInt16(windows.count))
        for window in windows {
            write(window.key, into: &writer)
            writer.f64(window.limit)
            writer.f64(window.remaining)
            writer.i64(window.reset)
        }
    }

    static func readWindows(_ reader: inout WireReader) throws(WireDecodingError) -> [WindowStatus] {
        var windows: [WindowStatus] = []
        for _ in 0..<Int(try reader.u16()) {
            let key = try readKey(&reader)
            windows.append(
                WindowStatus(key: key, limit: try reader.f64(), remaining: try reader.f64(), reset: try reader.i64()))
        }
        return windows
    }
}
