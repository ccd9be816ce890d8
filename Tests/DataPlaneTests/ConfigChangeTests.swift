import Foundation
import TestSupport
import Testing

/// Config changes synced with budgetctl reach the proxy in process, from a real budget-controld, as deltas.
@Suite("config changes reach budget-proxyd", .serialized)
struct ConfigChangeTests {
    static let hello = #"{"messages":[{"role":"user","content":"Hello"}]}"#

    /// Syncs `config` with budgetctl.
    private func sync(_ config: String, _ gateway: GatewayUnderTest) async throws {
        let file = gateway.directory.appendingPathComponent("config-\(UUID().uuidString.prefix(6)).yaml")
        try config.write(to: file, atomically: true, encoding: .utf8)
        let result = try await runBinary("budgetctl", ["sync", file.path], admin: gateway.directory)
        guard result.status == 0 else { throw TestFailure("budgetctl sync failed: \(result.stderr)") }
    }

    /// The status for `key`, polled until it is `wanted` (for at most 10 s).
    private func status(of key: String, until wanted: Int, _ gateway: GatewayUnderTest) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(10)
        var status = try await gateway.chat(Self.hello, key: key).status
        while status != wanted && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            status = try await gateway.chat(Self.hello, key: key).status
        }
        return status
    }

    @Test("after a sync that rotates a key, the proxy serves the new key and refuses the old one")
    func rotatedKey() async throws {
        try await GatewayUnderTest.withGateway { gateway in
            #expect(try await gateway.chat(Self.hello, key: "dev-team-key").status == 200)
            let rotated = fixtureText().replacingOccurrences(of: "key: dev-team-key", with: "key: dev-team-key-2")
            try await sync(rotated, gateway)
            #expect(try await status(of: "dev-team-key-2", until: 200, gateway) == 200)
            #expect(try await gateway.chat(Self.hello, key: "dev-team-key").status == 401)
            #expect(try await gateway.chat(Self.hello, key: "analytics-key").status == 200)
            // And back, with a route change in the same sync (the routes are compiled again).
            let moved = fixtureText().replacingOccurrences(of: "/ai/budget", with: "/ai/moved")
            try await sync(moved, gateway)
            let deadline = ContinuousClock.now + .seconds(10)
            var reply = try await gateway.chat(Self.hello, key: "dev-team-key", path: "/ai/moved")
            while reply.status != 200 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
                reply = try await gateway.chat(Self.hello, key: "dev-team-key", path: "/ai/moved")
            }
            #expect(reply.status == 200, "\(reply.body)")
            #expect(try await gateway.chat(Self.hello, key: "dev-team-key-2", path: "/ai/moved").status == 401)
            #expect(try await gateway.chat(Self.hello, key: "dev-team-key", path: "/ai/budget").status == 404)
        }
    }

    @Test("a sync that changes most of the config reaches a connected proxy as a whole snapshot")
    func largeChangeAsSnapshot() async throws {
        try await GatewayUnderTest.withGateway { gateway in
            // Every consumer, credential and membership replaced: more than half of the entities change, so the
            // control plane pushes the snapshot rather than a delta as large.
            var renamed = fixtureText()
            for name in ["signify-dev-team", "signify-analytics", "signify-production"] {
                renamed = renamed.replacingOccurrences(of: "username: \(name)", with: "username: \(name)-2")
            }
            for key in ["dev-team-key", "analytics-key", "production-key"] {
                renamed = renamed.replacingOccurrences(of: "key: \(key)", with: "key: \(key)-2")
            }
            try await sync(renamed, gateway)
            #expect(try await status(of: "production-key-2", until: 200, gateway) == 200)
            #expect(try await gateway.chat(Self.hello, key: "production-key").status == 401)
            // And a small change after it is a delta again, from the snapshot's version.
            try await sync(
                renamed.replacingOccurrences(of: "key: analytics-key-2", with: "key: analytics-key-3"), gateway)
            #expect(try await status(of: "analytics-key-3", until: 200, gateway) == 200)
            #expect(try await gateway.chat(Self.hello, key: "analytics-key-2").status == 401)
        }
    }
}
