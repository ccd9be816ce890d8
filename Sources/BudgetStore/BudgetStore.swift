public import BudgetConfig
public import BudgetLedger
import CBudgetSystem
import EntityCodec
import Foundation
import GRDB
import GRDBSQLite

/// The control plane's durable state under its state directory: the config (entities with ids, tags,
/// created and updated times, and a version that only grows) and the usage counters, in SQLite through
/// GRDB in WAL mode. Files are created mode 0600.
///
/// What a method returned from has committed: a process killed right after keeps it (WAL). With
/// `synchronous: .full` it also survives power loss, at the price of an fsync per transaction.
public final class BudgetStore: Sendable {
    /// How much a committed transaction survives (SQLite's `synchronous` pragma).
    public enum Synchronous: String, Sendable, CaseIterable {
        /// Survives the process being killed; the default.
        case normal
        /// Also survives power loss.
        case full
    }

    /// The database file.
    public let path: String
    private let pool: DatabasePool

    /// The database file's name inside the state directory.
    public static let fileName = "budget.sqlite3"

    private init(path: String, pool: DatabasePool) {
        self.path = path
        self.pool = pool
    }

    /// Opens (creating if needed) the store in `stateDirectory`.
    public static func open(stateDirectory: String, synchronous: Synchronous = .normal) throws(StoreError)
        -> BudgetStore
    {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: stateDirectory, isDirectory: &isDirectory) else {
            throw StoreError(
                "state directory \(stateDirectory) does not exist; create it (mode 0700) or pass another --state-dir")
        }
        guard isDirectory.boolValue else { throw StoreError("state directory \(stateDirectory) is not a directory") }
        guard FileManager.default.isWritableFile(atPath: stateDirectory) else {
            throw StoreError("state directory \(stateDirectory) is not writable by this user")
        }
        let path = (stateDirectory as NSString).appendingPathComponent(fileName)
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
            else {
                throw StoreError("cannot create \(path)")
            }
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous == .full ? "FULL" : "NORMAL")")
        }
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try migrator.migrate(pool)
            try pool.read { db in _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM entities") }
        } catch {
            throw StoreError(
                "cannot open the store at \(path): \(error) (if the file is corrupt, move it aside and sync again)")
        }
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path + suffix)
        }
        return BudgetStore(path: path, pool: pool)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                    INSERT INTO meta (name, value) VALUES ('config_version', 0);
                    CREATE TABLE entities (
                        kind TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL UNIQUE, body BLOB NOT NULL,
                        tags TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                        PRIMARY KEY (kind, key));
                    CREATE TABLE usage (
                        counter TEXT NOT NULL, kind TEXT NOT NULL, bucket INTEGER NOT NULL, units REAL NOT NULL,
                        expires_at INTEGER NOT NULL, PRIMARY KEY (counter, bucket));
                    CREATE INDEX usage_expiry ON usage (expires_at);
                    """)
        }
        // v2: entity bodies in `EntityCodec` format 2 (`Entity.codecBytes`), no longer Foundation's synthesized
        // Codable form (format 1), which was slow for a large config. Rewritten in the migration's transaction.
        migrator.registerMigration("v2-entity-fields") { db in
            let rows = try Row.fetchAll(db, sql: "SELECT kind, key, body FROM entities")
            let decoder = JSONDecoder()
            for row in rows {
                let body: Data = row["body"]
                let entity = try decoder.decode(Entity.self, from: body)
                try db.execute(
                    sql: "UPDATE entities SET body = ? WHERE kind = ? AND key = ?",
                    arguments: [Data(entity.codecBytes), row["kind"] as String, row["key"] as String])
            }
        }
        // v3: a counter's key in columns (plugin, provider, subject, window size), no longer one `|`-joined
        // string, which a name containing `|` made unreadable (its usage was dropped at every start) and which a
        // reset could only match with LIKE (case-insensitive, and wider than one subject).
        migrator.registerMigration("v3-usage-columns") { db in
            try db.execute(
                sql: """
                    CREATE TABLE usage_v3 (
                        plugin TEXT NOT NULL, provider TEXT NOT NULL, subject TEXT NOT NULL,
                        window_size INTEGER NOT NULL, kind TEXT NOT NULL, bucket INTEGER NOT NULL,
                        units REAL NOT NULL, expires_at INTEGER NOT NULL,
                        PRIMARY KEY (plugin, provider, subject, window_size, bucket));
                    """)
            let insert = try db.makeStatement(
                sql: """
                    INSERT INTO usage_v3 VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (plugin, provider, subject, window_size, bucket)
                    DO UPDATE SET units = units + excluded.units
                    """)
            for row in try Row.fetchAll(db, sql: "SELECT counter, kind, bucket, units, expires_at FROM usage") {
                // A row whose key cannot be read even with the subject prefixes is kept out, as v2 did on load.
                guard let key = Self.legacyKey(row["counter"]) else { continue }
                try insert.execute(arguments: [
                    key.plugin, key.provider, key.subject, key.windowSize, row["kind"] as String,
                    row["bucket"] as Int64, row["units"] as Double, row["expires_at"] as Int64,
                ])
            }
            try db.execute(
                sql: """
                    DROP TABLE usage;
                    ALTER TABLE usage_v3 RENAME TO usage;
                    CREATE INDEX usage_expiry ON usage (expires_at);
                    CREATE INDEX usage_subject ON usage (subject);
                    """)
        }
        // v4: the window kind is part of a bucket's key (a `window_type` change must not add units to a bucket
        // of the other kind), and each data plane's last applied commit is kept (`commit_marks`), so a commit
        // sent again after a lost acknowledgement or from a spool is not charged twice, across restarts.
        migrator.registerMigration("v4-kind-key-commit-marks") { db in
            try db.execute(
                sql: """
                    CREATE TABLE usage_v4 (
                        plugin TEXT NOT NULL, provider TEXT NOT NULL, subject TEXT NOT NULL,
                        window_size INTEGER NOT NULL, kind TEXT NOT NULL, bucket INTEGER NOT NULL,
                        units REAL NOT NULL, expires_at INTEGER NOT NULL,
                        PRIMARY KEY (plugin, provider, subject, window_size, kind, bucket));
                    INSERT INTO usage_v4 SELECT plugin, provider, subject, window_size, kind, bucket, units, expires_at
                        FROM usage;
                    DROP TABLE usage;
                    ALTER TABLE usage_v4 RENAME TO usage;
                    CREATE INDEX usage_expiry ON usage (expires_at);
                    CREATE INDEX usage_subject ON usage (subject);
                    CREATE TABLE commit_marks (
                        source INTEGER PRIMARY KEY, sequence INTEGER NOT NULL, seen_at INTEGER NOT NULL);
                    """)
        }
        return migrator
    }

    /// A v2 counter string, `plugin|provider|subject|window`, read even when a name contains `|`: the window
    /// is after the last `|`, the provider (one of Kong's, never with `|`) is the part before a subject that
    /// starts as subjects do (`consumer:`, `consumer-group:`, `credential:`). Nil when no single reading fits.
    static func legacyKey(_ text: String) -> LimitKey? {
        if let key = LimitKey(parsing: text) { return key }
        guard let last = text.lastIndex(of: "|"), let size = Int(text[text.index(after: last)...]), size > 0
        else { return nil }
        let rest = String(text[..<last])
        let parts = rest.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        var readings: [LimitKey] = []
        for providerIndex in parts.indices.dropFirst().dropLast() {
            let subject = parts[(providerIndex + 1)...].joined(separator: "|")
            guard ["consumer:", "consumer-group:", "credential:"].contains(where: { subject.hasPrefix($0) }) else {
                continue
            }
            readings.append(
                LimitKey(
                    plugin: parts[..<providerIndex].joined(separator: "|"), provider: parts[providerIndex],
                    subject: subject, windowSize: size))
        }
        return readings.count == 1 ? readings[0] : nil
    }

    // MARK: - Config

    /// The stored config and its version.
    public func loadConfig() throws(StoreError) -> (version: UInt64, state: ConfigState) {
        do {
            return try pool.read { db in
                let version = try UInt64(
                    Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = 'config_version'") ?? 0)
                var state = ConfigState()
                let rows = try Row.fetchCursor(db, sql: "SELECT kind, key, body FROM entities")
                while let row = try rows.next() {
                    let body: Data = row["body"]
                    let entity = try Entity(codecBytes: Array(body))
                    guard entity.id.kind.rawValue == row["kind"] as String, entity.id.key == row["key"] as String else {
                        throw StoreError(
                            "the row of \(row["kind"] as String) \(row["key"] as String) holds \(entity.id)")
                    }
                    state.insert(entity)
                }
                return (version, state)
            }
        } catch {
            throw StoreError("cannot read the config from \(path): \(error)")
        }
    }

    /// Applies `changes` in one transaction if the stored version is still `baseVersion`; returns the
    /// new version. Nothing is applied on any error.
    public func apply(_ changes: [AppliedChange], baseVersion: UInt64, now: Int64) throws(StoreError) -> UInt64 {
        do {
            return try pool.write { db in
                let current = try UInt64(
                    Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = 'config_version'") ?? 0)
                guard current == baseVersion else { throw StoreConflict(current: current, base: baseVersion) }
                // A large apply touches every page of the table and its indexes; with SQLite's 2 MiB default
                // cache it spills and rewrites pages many times over. 64 MiB for this transaction, then back.
                try db.execute(sql: "PRAGMA cache_size = -65536")
                defer { try? db.execute(sql: "PRAGMA cache_size = -2000") }
                // Statements prepared once per transaction, not once per entity.
                let insert = try db.makeStatement(
                    sql:
                        "INSERT INTO entities (kind, key, id, body, tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                )
                let update = try db.makeStatement(
                    sql: "UPDATE entities SET body = ?, tags = ?, updated_at = ? WHERE kind = ? AND key = ?")
                let delete = try db.makeStatement(sql: "DELETE FROM entities WHERE kind = ? AND key = ?")
                var ids = EntityRowIDs()
                for change in changes {
                    let id = change.entity.id
                    switch change.action {
                    case .create:
                        try insert.execute(arguments: [
                            id.kind.rawValue, id.key, ids.next(), Data(change.entity.codecBytes),
                            change.entity.tags.joined(separator: ","), now, now,
                        ])
                    case .update:
                        try update.execute(arguments: [
                            Data(change.entity.codecBytes), change.entity.tags.joined(separator: ","), now,
                            id.kind.rawValue, id.key,
                        ])
                    case .delete:
                        try delete.execute(arguments: [id.kind.rawValue, id.key])
                    }
                }
                let next = current + 1
                try db.execute(sql: "UPDATE meta SET value = ? WHERE name = 'config_version'", arguments: [Int64(next)])
                return next
            }
        } catch let conflict as StoreConflict {
            throw StoreError(
                "the config changed since the plan was made (version \(conflict.current), plan made "
                    + "against \(conflict.base)); run the command again", isConflict: true)
        } catch {
            throw StoreError("cannot apply the changes: \(error)")
        }
    }

    // MARK: - Usage

    /// Counts a start of the control plane and returns its number, durably, so that every run numbers its
    /// reservations apart from the runs before it (`Ledger(boot:)`). The count starts at a random offset chosen
    /// when the store is created (kept as `boot_salt`), so a store moved aside and created anew (a corrupt
    /// file) does not number its runs as the old one did while data planes still hold its reservations.
    public func nextBoot() throws(StoreError) -> UInt64 {
        do {
            return try pool.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO meta (name, value) VALUES ('boots', 1)
                        ON CONFLICT (name) DO UPDATE SET value = value + 1
                        """)
                try db.execute(
                    sql: "INSERT OR IGNORE INTO meta (name, value) VALUES ('boot_salt', ?)",
                    arguments: [Int64.random(in: 0..<(1 << 40))])
                let boots = try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = 'boots'") ?? 1
                let salt = try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = 'boot_salt'") ?? 0
                return UInt64(boots + salt)
            }
        } catch {
            throw StoreError("cannot count this start in \(path): \(error)")
        }
    }

    /// This store's node id, for keys a fleet shares (holds in Redis): random, chosen when first asked and kept,
    /// so it is the same across restarts and differs between nodes. 16 hexadecimal digits.
    public func nodeID() throws(StoreError) -> String {
        do {
            let value = try pool.write { db in
                try db.execute(
                    sql: "INSERT OR IGNORE INTO meta (name, value) VALUES ('node_id', ?)",
                    arguments: [Int64.random(in: Int64.min...Int64.max)])
                return try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = 'node_id'") ?? 0
            }
            let hex = String(UInt64(bitPattern: value), radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        } catch {
            throw StoreError("cannot read this node's id in \(path): \(error)")
        }
    }

    /// One stored bucket of a counter: what `Ledger.commit` returned, kept as it is.
    public typealias UsageRecord = BucketUsage

    /// Buckets that still count at `now`.
    public func loadUsage(now: Int64) throws(StoreError) -> [UsageRecord] {
        do {
            return try pool.read { db in
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT plugin, provider, subject, window_size, kind, bucket, units, expires_at FROM usage
                        WHERE expires_at > ?
                        """,
                    arguments: [now]
                ).compactMap { row in
                    guard let kind = WindowKind(rawValue: row["kind"]) else { return nil }
                    let key = LimitKey(
                        plugin: row["plugin"], provider: row["provider"], subject: row["subject"],
                        windowSize: row["window_size"])
                    return UsageRecord(
                        key: key, kind: kind, bucket: row["bucket"], units: row["units"], expiresAt: row["expires_at"])
                }
            }
        } catch {
            throw StoreError("cannot read usage from \(path): \(error)")
        }
    }

    /// Adds charges, and the commit marks of the commits they came from, in one transaction (group commit);
    /// returns once they are committed.
    public func record(_ records: [UsageRecord], marks: [CommitMark] = []) async throws(StoreError) {
        guard !records.isEmpty || !marks.isEmpty else { return }
        do {
            try await pool.write { db in try Self.insert(records, marks: marks, into: db) }
        } catch {
            throw StoreError("cannot record usage in \(path): \(error)")
        }
    }

    /// `record(_:marks:)` on the calling thread, blocking it until the transaction is committed: the usage
    /// writer's group commit, which this way does not hop to GRDB's writer queue and back (two thread switches
    /// per batch, on a control plane that shares one core).
    public func recordNow(_ records: [UsageRecord], marks: [CommitMark] = []) throws(StoreError) {
        guard !records.isEmpty || !marks.isEmpty else { return }
        do {
            try pool.write { db in try Self.insert(records, marks: marks, into: db) }
        } catch {
            throw StoreError("cannot record usage in \(path): \(error)")
        }
    }

    private static func insert(_ records: [UsageRecord], marks: [CommitMark], into db: Database) throws {
        // The rows of a group commit are bound and stepped with SQLite's own calls on GRDB's cached statements:
        // `execute(arguments:)` boxes every value of every row in an array of existentials, which was about a
        // twentieth of budget-controld's CPU a reserve+commit pair.
        let upsert = RawStatement(
            try db.cachedStatement(
                sql: """
                    INSERT INTO usage (plugin, provider, subject, window_size, kind, bucket, units, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (plugin, provider, subject, window_size, kind, bucket)
                    DO UPDATE SET units = units + excluded.units
                    """), db)
        defer { upsert.finish() }
        for record in records {
            upsert.bind(1, record.key.plugin)
            upsert.bind(2, record.key.provider)
            upsert.bind(3, record.key.subject)
            upsert.bind(4, Int64(record.key.windowSize))
            upsert.bind(5, record.kind.rawValue)
            upsert.bind(6, record.bucket)
            upsert.bind(7, record.units)
            upsert.bind(8, record.expiresAt)
            try upsert.step()
        }
        let marking = RawStatement(
            try db.cachedStatement(
                sql: """
                    INSERT INTO commit_marks (source, sequence, seen_at) VALUES (?, ?, ?)
                    ON CONFLICT (source) DO UPDATE SET sequence = max(sequence, excluded.sequence),
                        seen_at = excluded.seen_at
                    """), db)
        defer { marking.finish() }
        for mark in marks {
            // SQLite integers are signed: the 64 bits are kept as they are.
            marking.bind(1, Int64(bitPattern: mark.source))
            marking.bind(2, Int64(bitPattern: mark.sequence))
            marking.bind(3, mark.seenAt)
            try marking.step()
        }
    }

    /// Deletes the counters whose subject is `subject`; returns how many buckets went.
    public func deleteUsage(subject: String) throws(StoreError) -> Int {
        do {
            return try pool.write { db in
                try db.execute(sql: "DELETE FROM usage WHERE subject = ?", arguments: [subject])
                return db.changesCount
            }
        } catch {
            throw StoreError("cannot reset usage in \(path): \(error)")
        }
    }

    /// The last commit applied from each data plane's commit stream.
    public func loadCommitMarks() throws(StoreError) -> [CommitMark] {
        do {
            return try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT source, sequence, seen_at FROM commit_marks").map { row in
                    CommitMark(
                        source: UInt64(bitPattern: row["source"]), sequence: UInt64(bitPattern: row["sequence"]),
                        seenAt: row["seen_at"])
                }
            }
        } catch {
            throw StoreError("cannot read commit marks from \(path): \(error)")
        }
    }

    /// Drops buckets that no longer count at `now`, and the commit marks of streams silent since
    /// `marksSeenBefore`.
    public func pruneUsage(now: Int64, marksSeenBefore: Int64? = nil) throws(StoreError) {
        do {
            try pool.write { db in
                try db.execute(sql: "DELETE FROM usage WHERE expires_at <= ?", arguments: [now])
                if let marksSeenBefore {
                    try db.execute(sql: "DELETE FROM commit_marks WHERE seen_at < ?", arguments: [marksSeenBefore])
                }
            }
        } catch {
            throw StoreError("cannot prune usage in \(path): \(error)")
        }
    }
}

private struct StoreConflict: Error {
    var current: UInt64
    var base: UInt64
}

/// A store problem, in words an operator can act on.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// The state moved since a plan was made.
    public var isConflict: Bool

    /// An error with `message`; `isConflict` for a stale base version.
    public init(_ message: String, isConflict: Bool = false) {
        self.message = message
        self.isConflict = isConflict
    }

    public var description: String { message }
}

/// Random (version 4) UUIDs for the `id` column, as Kong gives every entity. Foundation's `UUID()` opened
/// /dev/urandom for each one, a large share of a big sync (bench/README.md); this reads the kernel's
/// generator (getrandom) 4 KiB at a time.
struct EntityRowIDs {
    private var pool: [UInt8] = []
    private var used = 0
    private var fallback = SystemRandomNumberGenerator()
    private static let digits = Array("0123456789abcdef".utf8)

    private mutating func randomBytes() -> ArraySlice<UInt8> {
        if used + 16 > pool.count {
            pool = [UInt8](repeating: 0, count: 4096)
            let filled = pool.withUnsafeMutableBytes { cbudget_random_fill($0.baseAddress, $0.count) }
            if filled != 1 {
                // Should getrandom ever fail, the standard library's generator fills the buffer instead.
                for index in pool.indices { pool[index] = UInt8.random(in: 0...255, using: &fallback) }
            }
            used = 0
        }
        defer { used += 16 }
        return pool[used..<used + 16]
    }

    mutating func next() -> String {
        var bytes = Array(randomBytes())
        bytes[6] = bytes[6] & 0x0F | 0x40
        bytes[8] = bytes[8] & 0x3F | 0x80
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (index, byte) in bytes.enumerated() {
            if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
            text.append(Self.digits[Int(byte >> 4)])
            text.append(Self.digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// A GRDB cached statement driven with SQLite's C calls: bind, step, reset. It is left reset and unbound, as
/// GRDB expects to find it. GRDB's per-statement hooks (its database observation) do not see these writes;
/// nothing observes the usage and commit-mark tables. An error is thrown to GRDB's transaction, which rolls back.
private struct RawStatement {
    let handle: SQLiteStatement
    let connection: SQLiteConnection?
    /// For its SQL in an error: GRDB's `sql` trims the text with Foundation on every read, which was 8% of
    /// budget-controld's CPU when read per group commit.
    let statement: Statement

    init(_ statement: Statement, _ db: Database) {
        handle = statement.sqliteStatement
        connection = db.sqliteConnection
        self.statement = statement
    }

    /// SQLite copies the bytes (SQLITE_TRANSIENT): they need not outlive the call.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    func bind(_ index: Int32, _ value: Int64) {
        sqlite3_bind_int64(handle, index, value)
    }

    func bind(_ index: Int32, _ value: Double) {
        sqlite3_bind_double(handle, index, value)
    }

    func bind(_ index: Int32, _ value: String) {
        var text = value
        text.withUTF8 { bytes in
            // An empty string's buffer may have no address; a null pointer would bind NULL, not "".
            let address =
                bytes.baseAddress.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(("" as StaticString).utf8Start)
            _ = sqlite3_bind_text(
                handle, index, address.assumingMemoryBound(to: CChar.self), Int32(bytes.count), Self.transient)
        }
    }

    /// Runs the statement once with its bindings, then resets it for the next row.
    func step() throws {
        let code = sqlite3_step(handle)
        // The connection's message is read before the reset, which sets its own.
        let message = code == SQLITE_DONE ? nil : connection.map { String(cString: sqlite3_errmsg($0)) }
        sqlite3_reset(handle)
        guard code == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: statement.sql)
        }
    }

    /// Leaves the statement as GRDB's cache expects it: reset, with no bindings.
    func finish() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }
}
