import BudgetConfig
import BudgetLedger
import BudgetStore
import Foundation
import GRDB
import Testing

@Suite("The store's format across versions")
struct StoreMigrationTests {
    /// The tables as releases before v3 wrote them (written out here, apart from the store's own migrations, so
    /// the test keeps what was on disk whatever the migrations become), marked with `migrations` as applied.
    static func oldSchema(migrations: [String], configVersion: Int) -> String {
        """
        CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
        INSERT INTO grdb_migrations VALUES \(migrations.map { "('\($0)')" }.joined(separator: ", "));
        CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta (name, value) VALUES ('config_version', \(configVersion));
        CREATE TABLE entities (
            kind TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL UNIQUE, body BLOB NOT NULL,
            tags TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
            PRIMARY KEY (kind, key));
        CREATE TABLE usage (
            counter TEXT NOT NULL, kind TEXT NOT NULL, bucket INTEGER NOT NULL, units REAL NOT NULL,
            expires_at INTEGER NOT NULL, PRIMARY KEY (counter, bucket));
        CREATE INDEX usage_expiry ON usage (expires_at);
        """
    }

    @Test("a store written with v1 bodies (Foundation's Codable form) opens, migrated, with the same config")
    func v1Bodies() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: directory) }
        let state = try fixtureState()
        #expect(state.count > 10)

        // The schema and rows as the v1 store wrote them, by GRDB directly.
        let path = directory.appendingPathComponent(BudgetStore.fileName).path
        let queue = try DatabaseQueue(path: path)
        let encoder = JSONEncoder()
        try queue.write { db in
            try db.execute(sql: Self.oldSchema(migrations: ["v1"], configVersion: 7))
            for entity in state.sortedEntities {
                try db.execute(
                    sql: "INSERT INTO entities VALUES (?, ?, ?, ?, '', 0, 0)",
                    arguments: [
                        entity.id.kind.rawValue, entity.id.key, UUID().uuidString, try encoder.encode(entity),
                    ])
            }
        }
        try queue.close()

        let store = try BudgetStore.open(stateDirectory: directory.path)
        let loaded = try store.loadConfig()
        #expect(loaded.version == 7)
        #expect(loaded.state == state)
        let bodies = try DatabaseQueue(path: path).read { db in try Data.fetchAll(db, sql: "SELECT body FROM entities")
        }
        #expect(bodies.allSatisfy { String(decoding: $0, as: UTF8.self).hasPrefix("{\"kind\":") })
    }

    @Test("a v2 store's usage opens in columns, a name with '|' included (v2 dropped it at every start)")
    func v2UsageToColumns() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/" + BudgetStore.fileName
            let queue = try DatabaseQueue(path: path)
            // The rows as the v2 store (the release before this one) wrote them.
            try queue.write { db in
                try db.execute(sql: Self.oldSchema(migrations: ["v1", "v2-entity-fields"], configVersion: 3))
                for (counter, units) in [
                    ("ai-rate-limiting-advanced for consumer-group basic|bedrock|consumer:bob|86400", 10.0),
                    ("ai-rate-limiting-advanced for consumer-group basic|bedrock|consumer:acme|prod|86400", 20.0),
                    ("ai-rate-limiting-advanced for consumer-group a|b|bedrock|consumer:x|y|60", 30.0),
                ] {
                    try db.execute(
                        sql: "INSERT INTO usage VALUES (?, 'sliding', 100, ?, 4000000000)", arguments: [counter, units])
                }
            }
            try queue.close()

            let store = try BudgetStore.open(stateDirectory: directory)
            #expect(try store.loadConfig().version == 3)
            let usage = Dictionary(
                uniqueKeysWithValues: try store.loadUsage(now: 1_000).map { ($0.key.subject, $0) })
            #expect(usage["consumer:bob"]?.units == 10)
            #expect(usage["consumer:acme|prod"]?.units == 20)
            #expect(usage["consumer:acme|prod"]?.key.plugin == "ai-rate-limiting-advanced for consumer-group basic")
            #expect(usage["consumer:x|y"]?.key.plugin == "ai-rate-limiting-advanced for consumer-group a|b")
            #expect(usage["consumer:x|y"]?.key.windowSize == 60)
        }
    }
}
