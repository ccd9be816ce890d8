import BudgetConfig
import BudgetStore
import Foundation
import GRDB
import Testing

@Suite("The store's format across versions")
struct StoreMigrationTests {
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
            try db.execute(
                sql: """
                    CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                    INSERT INTO grdb_migrations VALUES ('v1');
                    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                    INSERT INTO meta (name, value) VALUES ('config_version', 7);
                    CREATE TABLE entities (
                        kind TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL UNIQUE, body BLOB NOT NULL,
                        tags TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                        PRIMARY KEY (kind, key));
                    CREATE TABLE usage (
                        counter TEXT NOT NULL, kind TEXT NOT NULL, bucket INTEGER NOT NULL, units REAL NOT NULL,
                        expires_at INTEGER NOT NULL, PRIMARY KEY (counter, bucket));
                    CREATE INDEX usage_expiry ON usage (expires_at);
                    """)
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
}
