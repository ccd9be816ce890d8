import BudgetConfig
import BudgetLedger
import BudgetWire
import DaemonKit
import Foundation
import NIOPosix
import TestSupport
import Testing

@Suite("budget-controld and budgetctl as processes")
struct ControlPlaneProcessTests {
    func fixtureText() throws -> String { try String(contentsOfFile: try fixturePath(), encoding: .utf8) }

    @Test("sync the fixture, sync again, change one limit, diff exit codes")
    func syncCycle() async throws {
        let daemon = try await ControlDaemon.start()
        defer { daemon.removeDirectory() }
        let fixture = try fixturePath()
        let first = try await daemon.budgetctl(["sync", fixture])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.hasSuffix("Summary:\n  Created: 19\n  Updated: 0\n  Deleted: 0\n"))
        #expect(first.stdout.contains("creating key-auth m-key for consumer signify-dev-team\n"))
        #expect(
            !first.stdout.contains("dev-team-key")
                && !first.stdout.contains(fixtureEnvironment["DECK_AWS_SECRET_ACCESS_KEY"] ?? "?"))
        let again = try await daemon.budgetctl(["sync", fixture])
        #expect(again.stdout == "Summary:\n  Created: 0\n  Updated: 0\n  Deleted: 0\n")
        #expect(try await daemon.budgetctl(["diff", fixture, "--non-zero-exit-code"]).status == 0)

        let changed = try daemon.file(
            try fixtureText().replacingOccurrences(of: "limit: [50000]", with: "limit: [60000]"))
        let diff = try await daemon.budgetctl(["gateway", "diff", changed, "--non-zero-exit-code"])
        #expect(diff.status == 2)
        #expect(
            diff.stdout == """
                updating plugin ai-rate-limiting-advanced for consumer-group signify-premium
                  - config.llm_providers[0].limit: [50000]
                  + config.llm_providers[0].limit: [60000]
                Summary:
                  Created: 0
                  Updated: 1
                  Deleted: 0

                """)
        #expect(try await daemon.budgetctl(["sync", changed]).stdout.hasSuffix("Updated: 1\n  Deleted: 0\n"))
        #expect(try await daemon.budgetctl(["diff", changed, "--non-zero-exit-code"]).status == 0)
    }

    @Test("reset --select-tag deletes only the tagged entities, and asks unless --force")
    func resetScope() async throws {
        let daemon = try await ControlDaemon.start()
        defer { daemon.removeDirectory() }
        #expect(try await daemon.budgetctl(["sync", try fixturePath()]).status == 0)
        let other = try daemon.file(
            """
            _format_version: "3.0"
            _info: {select_tags: [other-team]}
            consumers: [{username: outsider, keyauth_credentials: [{key: outsider-key}]}]
            """)
        #expect(try await daemon.budgetctl(["sync", other]).status == 0)
        let refused = try await daemon.budgetctl(["reset", "--select-tag", "signify-demo"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("standard input is not a terminal"))
        let reset = try await daemon.budgetctl(["reset", "--tag", "signify-demo", "--force"])
        #expect(reset.status == 0)
        #expect(reset.stdout.hasSuffix("Deleted: 19\n"))
        let remaining = try await daemon.budgetctl(["get", "consumers"])
        #expect(remaining.stdout == "outsider  tags: other-team\n")
    }

    @Test("a broken file changes nothing")
    func brokenFileChangesNothing() async throws {
        let daemon = try await ControlDaemon.start()
        defer { daemon.removeDirectory() }
        #expect(try await daemon.budgetctl(["sync", try fixturePath()]).status == 0)
        let before = try await daemon.budgetctl(["dump"]).stdout
        let broken = try daemon.file(
            try fixtureText()
                .replacingOccurrences(of: "limit: [10000]", with: "limit: [0]")
                .replacingOccurrences(of: "username: signify-production", with: "username: signify-production-2"))
        let result = try await daemon.budgetctl(["sync", broken])
        #expect(result.status == 1)
        #expect(result.stderr.contains("limit[0]: 0 is out of range"))
        #expect(result.stderr.hasSuffix("Error: nothing was changed\n"))
        #expect(try await daemon.budgetctl(["dump"]).stdout == before)
        let redis = try daemon.file(
            try fixtureText().replacingOccurrences(
                of: "      strategy: local              # no sync_rate with local",
                with: "      strategy: redis\n      sync_rate: 0\n      redis: {cluster_nodes: [{ip: 127.0.0.1, port: 7000}]}"))
        let refused = try await daemon.budgetctl(["sync", redis])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("Redis Cluster (redis.cluster_nodes) is not supported"))
        #expect(try await daemon.budgetctl(["dump"]).stdout == before)
    }

    @Test("two syncs at once are serialized: one applies, the other fails cleanly or finds nothing to do")
    func concurrentSyncs() async throws {
        let daemon = try await ControlDaemon.start()
        defer { daemon.removeDirectory() }
        let fixture = try fixturePath()
        let results = try await withThrowingTaskGroup(of: ProcessResult.self) { group in
            for _ in 0..<2 { group.addTask { try await daemon.budgetctl(["sync", fixture]) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let created = results.filter { $0.stdout.contains("Created: 19") }
        #expect(created.count >= 1)
        for loser in results where !loser.stdout.contains("Created: 19") || loser.status != 0 {
            // Either it planned after the winner applied (nothing to do), or it lost the race and was refused.
            #expect(
                loser.stdout.contains("Created: 0")
                    || loser.stderr.contains("the config changed since the plan was made"),
                "\(loser.stdout) \(loser.stderr)")
        }
        #expect(try await daemon.budgetctl(["diff", fixture, "--non-zero-exit-code"]).status == 0)
        #expect(try await daemon.budgetctl(["status"]).stdout.contains("entities:       19\n"))
    }

    @Test("dump writes key hashes and DECK_ placeholders, and syncs back unchanged")
    func dumpRoundTrip() async throws {
        let daemon = try await ControlDaemon.start()
        defer { daemon.removeDirectory() }
        #expect(try await daemon.budgetctl(["sync", try fixturePath()]).status == 0)
        let dump = try await daemon.budgetctl(["dump", "--select-tag", "signify-demo"]).stdout
        #expect(
            !dump.contains("dev-team-key") && !dump.contains(fixtureEnvironment["DECK_AWS_SECRET_ACCESS_KEY"] ?? "?"))
        #expect(dump.contains("aws_secret_access_key: ${{ env \"DECK_AWS_SECRET_ACCESS_KEY\" }}"))
        #expect(dump.contains("key_hash: \"sha256:"))
        let file = try daemon.file(dump)
        let diff = try await daemon.budgetctl(["diff", file, "--non-zero-exit-code"])
        #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
    }

    @Test("tag add and remove change one entity")
    func tags() async throws {
        let daemon = try await ControlDaemon.start()
        defer { daemon.removeDirectory() }
        #expect(try await daemon.budgetctl(["sync", try fixturePath()]).status == 0)
        let added = try await daemon.budgetctl(["tag", "add", "consumer", "signify-dev-team", "vip"])
        #expect(added.stdout.hasPrefix("updating consumer signify-dev-team\n"))
        #expect(
            try await daemon.budgetctl(["get", "consumers", "--tag", "vip"]).stdout
                == "signify-dev-team  tags: signify-demo,vip\n")
        #expect(try await daemon.budgetctl(["tag", "remove", "consumer", "signify-dev-team", "vip"]).status == 0)
        #expect(try await daemon.budgetctl(["get", "consumers", "--tag", "vip"]).stdout == "")
    }

    /// kill -9 of `daemon` once `ready` (the load under test has got going) and 700 ms have passed, or after 20 s:
    /// not after a fixed time only, since on a loaded machine the load may not have started by then.
    static func crash(_ daemon: ControlDaemon, once ready: @Sendable () -> Bool) async {
        let started = ContinuousClock.now
        try? await Task.sleep(for: .milliseconds(700))
        while !ready() && ContinuousClock.now - started < .seconds(20) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        daemon.crash()
    }

    @Test("every charge acknowledged before kill -9 is there after the restart")
    func durability() async throws {
        let daemon = try await ControlDaemon.start()
        defer { daemon.removeDirectory() }
        #expect(try await daemon.budgetctl(["sync", try fixturePath()]).status == 0)
        let client = try await WireClient.connect(path: daemon.controlSocket, role: .dataPlane, client: "test")
        let key = LimitKey(
            plugin: "ai-rate-limiting-advanced for consumer-group signify-basic", provider: "bedrock",
            subject: "consumer:signify-dev-team", windowSize: 86400)
        let charge = BudgetMessages.Commit(reservation: 0, charges: [Charge(key: key, kind: .sliding, units: 1)])
        let acknowledged = Gauge()
        let sent = Gauge()
        // Eight concurrent streams of commits; the daemon is killed while they run.
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<100_000 {
                        sent.add(1)
                        do {
                            _ = try await client.call(.commit, payload: BudgetMessages.encode(commits: [charge]))
                            acknowledged.add(1)
                        } catch {
                            return
                        }
                    }
                }
            }
            group.addTask { await Self.crash(daemon, once: { acknowledged.value > 100 }) }
        }
        #expect(acknowledged.value > 100, "too few charges acknowledged before the crash to mean anything")
        let restarted = try await ControlDaemon.start(directory: daemon.directory)
        defer { restarted.stop() }
        let usage = try await restarted.budgetctl(["usage", "signify-dev-team", "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(usage.stdout.utf8)) as? [[String: Any]]
        let used = rows?.first?["used"] as? Double ?? -1
        #expect(used >= Double(acknowledged.value), "acknowledged \(acknowledged.value), found \(used)")
        #expect(used <= Double(sent.value))
    }

    @Test("commits sent again after a kill -9 (acknowledged or not) are charged exactly once")
    func exactlyOnceAcrossCrash() async throws {
        let daemon = try await ControlDaemon.start()
        defer { daemon.removeDirectory() }
        #expect(try await daemon.budgetctl(["sync", try fixturePath()]).status == 0)
        let client = try await WireClient.connect(path: daemon.controlSocket, role: .dataPlane, client: "test")
        let key = LimitKey(
            plugin: "ai-rate-limiting-advanced for consumer-group signify-basic", provider: "bedrock",
            subject: "consumer:signify-dev-team", windowSize: 86400)
        let commit: @Sendable (_ stream: Int, _ sequence: UInt64) -> BudgetMessages.Commit = { stream, sequence in
            BudgetMessages.Commit(
                reservation: 0, charges: [Charge(key: key, kind: .sliding, units: 1)],
                origin: CommitOrigin(source: UInt64(0xC0FFEE00 + stream), sequence: sequence))
        }
        // Eight commit streams, one commit per frame; the daemon is killed while they run. Each remembers the
        // last number it sent, acknowledged or not.
        let streams = 8
        let lastSent = (0..<streams).map { _ in Gauge() }
        await withTaskGroup(of: Void.self) { group in
            for stream in 0..<streams {
                group.addTask {
                    for sequence in UInt64(1)...100_000 {
                        lastSent[stream].add(1)
                        do {
                            _ = try await client.call(
                                .commit, payload: BudgetMessages.encode(commits: [commit(stream, sequence)]))
                        } catch {
                            return
                        }
                    }
                }
            }
            group.addTask { await Self.crash(daemon, once: { lastSent.allSatisfy { $0.value > 20 } }) }
        }
        let sent = lastSent.map { UInt64($0.value) }
        #expect(sent.allSatisfy { $0 > 10 }, "too few commits before the crash to mean anything: \(sent)")
        // After the restart every stream sends everything again, from its first commit, twice.
        let restarted = try await ControlDaemon.start(directory: daemon.directory)
        defer { restarted.stop() }
        let again = try await WireClient.connect(path: restarted.controlSocket, role: .dataPlane, client: "test")
        for _ in 0..<2 {
            for stream in 0..<streams {
                let all = (UInt64(1)...sent[stream]).map { commit(stream, $0) }
                for start in stride(from: 0, to: all.count, by: 1000) {
                    let batch = Array(all[start..<min(start + 1000, all.count)])
                    _ = try await again.call(.commit, payload: BudgetMessages.encode(commits: batch))
                }
            }
        }
        await again.close()
        let usage = try await restarted.budgetctl(["usage", "signify-dev-team", "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(usage.stdout.utf8)) as? [[String: Any]]
        let used = rows?.first?["used"] as? Double ?? -1
        #expect(used == Double(sent.reduce(0, +)), "sent \(sent.reduce(0, +)) distinct commits, charged \(used)")
        // And once more after another restart: the marks are durable.
        restarted.stop()
        let third = try await ControlDaemon.start(directory: daemon.directory)
        defer { third.stop() }
        let late = try await WireClient.connect(path: third.controlSocket, role: .dataPlane, client: "test")
        _ = try await late.call(.commit, payload: BudgetMessages.encode(commits: [commit(0, 1)]))
        await late.close()
        let final = try await third.budgetctl(["usage", "signify-dev-team", "--json"])
        let finalRows = try JSONSerialization.jsonObject(with: Data(final.stdout.utf8)) as? [[String: Any]]
        #expect(finalRows?.first?["used"] as? Double == used)
    }

    @Test("bad frames get error replies; the daemon and its other connections carry on")
    func protocolFuzz() async throws {
        let daemon = try await ControlDaemon.start()
        defer { daemon.removeDirectory() }
        let bystander = try await WireClient.connect(path: daemon.adminSocket, role: .admin, client: "bystander")
        var generator = SystemRandomNumberGenerator()
        var payloads: [[UInt8]] = [
            [0, 0, 0, 1, 1],  // length shorter than the header
            [0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0, 1],  // 4 GiB
            [0, 0, 0, 5, 0x7E, 0, 0, 0, 9],  // unknown type
            [0, 0, 0, 9, 1, 0, 0, 0, 1, 0x7B, 0x7D, 0x5B, 0x5D],  // hello that is not a Hello
            Array("GET / HTTP/1.1\r\n\r\n".utf8),
        ]
        for _ in 0..<30 {
            payloads.append(
                (0..<Int.random(in: 1...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator)
                })
        }
        for payload in payloads {
            let reply = try await rawExchange(path: daemon.adminSocket, bytes: payload)
            // Either an error frame, or a closed connection for bytes that are not even a whole frame.
            if reply.count >= 9 { #expect(reply[4] == FrameType.error.rawValue, "\(payload)") }
        }
        // A well-formed request with a payload that is not JSON: error reply, connection stays usable.
        do {
            _ = try await bystander.call(.request, payload: Array("not json".utf8))
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("payload is not a valid AdminRequest"))
        }
        // An apply whose second entity has a mistyped field: refused with its path, nothing applied.
        let apply = """
            {"op":"apply","baseVersion":0,"changes":[
            {"action":"creating","entity":{"kind":"consumer","username":"alice","tags":[]}},
            {"action":"creating","entity":{"kind":"service","name":"s","protocol":"http","host":"h","port":"80",
            "connect_timeout":1,"read_timeout":1,"write_timeout":1,"retries":1,"enabled":true,"tags":[]}}]}
            """
        do {
            _ = try await bystander.call(.request, payload: Array(apply.utf8))
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("changes[1].entity.port must be a whole number, found a string"), "\(error)")
        }
        #expect(try await bystander.admin(AdminRequest(op: .dump)).state == ConfigState())
        #expect(try await bystander.admin(AdminRequest(op: .ping)).server?.hasPrefix("budget-controld/") == true)
        #expect(try await daemon.budgetctl(["ping"]).status == 0)
        await bystander.close()
    }

    @Test("the admin socket refuses a peer of another uid, by SO_PEERCRED", .enabled(if: getuid() == 0))
    func peerCredentials() async throws {
        let daemon = try await ControlDaemon.start()
        defer { daemon.removeDirectory() }
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: daemon.directory.path)
        let asNobody = [
            "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", budgetctlURL.path, "ping",
            "--socket", daemon.adminSocket,
        ]
        let denied = try await runBinary("/usr/bin/env", asNobody)
        #expect(denied.status == 1)
        #expect(denied.stderr.contains("permission denied"), "\(denied.stderr)")
        // Even with the file mode opened up, the daemon itself refuses the other uid.
        chmod(daemon.adminSocket, 0o666)
        let refused = try await runBinary("/usr/bin/env", asNobody)
        #expect(refused.status == 1)
        #expect(
            refused.stderr.contains("permission denied: uid 65534 may not use the admin socket"), "\(refused.stderr)")
        #expect(try await daemon.budgetctl(["ping"]).status == 0)
    }

    @Test(
        "--admin-group admits a member by supplementary group with /proc hidden (ProtectProc=invisible), refuses others",
        .enabled(if: getuid() == 0, "needs root, to run the daemon and its clients as other users"),
        .enabled(
            if: HiddenProc.available,
            "needs a mount namespace (unshare --mount) to hide /proc as the unit's ProtectProc=invisible does"))
    func adminGroupBySupplementaryGroup() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "controld-group-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("state"), withIntermediateDirectories: true)
        for path in [directory.path, directory.appendingPathComponent("state").path] {
            #expect(chown(path, HiddenProc.daemonUser, HiddenProc.daemonUser) == 0)
            #expect(chmod(path, 0o755) == 0)
        }
        // The daemon runs as an ordinary user, like the unit's User=budget, so it cannot see other users'
        // processes in /proc: the way it was run in production when supplementary members were refused. It is in
        // the admin group itself, to give the socket that group.
        let daemon = try await ControlDaemon.start(
            directory: directory, extraArguments: ["--admin-group", String(HiddenProc.adminGroup)],
            launcher: HiddenProc.launcher(user: HiddenProc.daemonUser, groups: [HiddenProc.adminGroup]))
        defer { daemon.removeDirectory() }
        func ping(groups: [UInt32], primary: String = "nogroup") async throws -> ProcessResult {
            try await runBinary(
                "/usr/bin/env",
                [
                    "setpriv", "--reuid=nobody", "--regid=\(primary)",
                    groups.isEmpty ? "--clear-groups" : "--groups=\(groups.map(String.init).joined(separator: ","))",
                    budgetctlURL.path, "ping", "--socket", daemon.adminSocket,
                ])
        }
        let group = HiddenProc.adminGroup
        let member = try await ping(groups: [group])
        #expect(member.status == 0, "\(member.stderr) \(daemon.logText())")
        // More groups than the first buffer holds (64): the kernel's ERANGE and its count, then the whole list.
        let many = try await ping(groups: (0..<100).map { UInt32(60_000 + $0) } + [group])
        #expect(many.status == 0, "\(many.stderr) \(daemon.logText())")
        let primary = try await ping(groups: [], primary: String(group))
        #expect(primary.status == 0, "\(primary.stderr)")

        // The file mode opened up, so that the daemon's own check is what refuses.
        chmod(daemon.adminSocket, 0o666)
        let others: [[UInt32]] = [[], [group + 1], (0..<100).map { 60_000 + $0 }]
        for groups in others {
            let refused = try await ping(groups: groups)
            #expect(refused.status == 1)
            #expect(
                refused.stderr.contains(
                    "permission denied: uid 65534 may not use the admin socket (allowed: uid \(HiddenProc.daemonUser) "
                        + "and members of group \(group))"), "\(refused.stderr)")
        }
        #expect(try await daemon.budgetctl(["ping"]).status == 0)
    }

    @Test("a missing, unwritable or corrupt state directory is a clear message at start-up")
    func badStateDirectory() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent(
            "controld-bad-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: base) }
        let controld = budgetctlURL.deletingLastPathComponent().appendingPathComponent("budget-controld").path
        func start(_ state: String) async throws -> ProcessResult {
            try await runBinary(
                controld.split(separator: "/").last.map(String.init) ?? "budget-controld",
                [
                    "--state-dir", state, "--control-socket", base.appendingPathComponent("c.sock").path,
                    "--admin-socket", base.appendingPathComponent("a.sock").path,
                ])
        }
        let missing = try await start(base.appendingPathComponent("nope").path)
        #expect(missing.status == 1 && missing.stderr.contains("does not exist"))
        let corruptDirectory = base.appendingPathComponent("corrupt")
        try FileManager.default.createDirectory(at: corruptDirectory, withIntermediateDirectories: true)
        try Data(repeating: 0x41, count: 8192).write(to: corruptDirectory.appendingPathComponent("budget.sqlite3"))
        let corrupt = try await start(corruptDirectory.path)
        #expect(corrupt.status == 1 && corrupt.stderr.contains("cannot open the store"), "\(corrupt.stderr)")
    }
}

/// A socket connected to the Unix socket at `path`, with a receive buffer of `receiveBuffer` bytes when given;
/// the caller closes it.
func unixConnect(_ path: String, receiveBuffer: Int32? = nil) throws -> Int32 {
    let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    if var size = receiveBuffer {
        setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
        let path = Array(path.utf8)
        buffer.copyBytes(from: path)
        buffer[path.count] = 0
    }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    guard connected == 0 else {
        let error = errno
        close(descriptor)
        throw DaemonError(message: "connect to \(path) failed: \(error)")
    }
    return descriptor
}

/// Sends raw bytes to a Unix socket, half-closes, and returns what comes back within 2 s (waiting off the
/// cooperative pool).
func rawExchange(path: String, bytes: [UInt8]) async throws -> [UInt8] {
    try await offPool { try rawExchangeBlocking(path: path, bytes: bytes) }
}

private func rawExchangeBlocking(path: String, bytes: [UInt8]) throws -> [UInt8] {
    let descriptor = try unixConnect(path)
    defer { close(descriptor) }
    var timeout = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    _ = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    shutdown(descriptor, Int32(SHUT_WR))
    var reply: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = recv(descriptor, &buffer, buffer.count, 0)
        if count <= 0 { break }
        reply += buffer[0..<count]
    }
    return reply
}

@Suite("budget-controld's bounds on slow peers")
struct SlowPeerTests {
    @Test("a peer that sends half a frame and stops is cut off; others carry on")
    func halfFrame() async throws {
        let daemon = try await ControlDaemon.start(extraArguments: ["--peer-timeout", "1"])
        defer { daemon.removeDirectory() }
        let started = Date()
        // rawExchange half-closes its side, so use a socket that keeps its side open.
        let descriptor = try unixConnect(daemon.adminSocket)
        defer { close(descriptor) }
        let half: [UInt8] = [0, 0, 0, 50, 1, 0, 0]
        _ = half.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let received = try await offPool {
            var buffer = [UInt8](repeating: 0, count: 64)
            return recv(descriptor, &buffer, buffer.count, 0)
        }
        #expect(received == 0, "the daemon should have closed the connection")
        #expect(Date().timeIntervalSince(started) < 8)
        #expect(try await daemon.budgetctl(["ping"]).status == 0)
    }
}

extension SlowPeerTests {
    /// A frame of the budget protocol: u32 length | u8 type | u32 request id | payload.
    static func frame(_ type: FrameType, id: UInt32, _ payload: [UInt8]) -> [UInt8] {
        let length = UInt32(WireFrame.headerBytes + payload.count)
        return withUnsafeBytes(of: length.bigEndian, Array.init) + [type.rawValue]
            + withUnsafeBytes(of: id.bigEndian, Array.init) + payload
    }

    @Test("a data plane that stops reading, then sends a bad frame behind a good one, is cut off at the peer time-out")
    func badFrameToNonReader() async throws {
        let daemon = try await ControlDaemon.start(extraArguments: ["--peer-timeout", "1"])
        defer { daemon.removeDirectory() }
        let descriptor = try unixConnect(daemon.controlSocket, receiveBuffer: 4096)
        defer { close(descriptor) }
        func write(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        write(Self.frame(.hello, id: 1, WireJSON.encode(Hello(role: .dataPlane, client: "non-reader"))))
        // Releases, each answered, until the replies fill the socket: then some wait in the daemon, far below its
        // write-buffer mark, so the connection still counts as writable.
        let release = BudgetMessages.encode(releases: [1])
        var queued: Int32 = -1
        var steady = 0
        var id: UInt32 = 2
        while steady < 3 {
            write((0..<20).flatMap { index in Self.frame(.release, id: id + index, release) })
            id += 20
            try await Task.sleep(for: .milliseconds(30))
            var now: Int32 = 0
            _ = ioctl(descriptor, UInt(FIONREAD), &now)
            steady = now == queued ? steady + 1 : 0
            queued = now
        }
        // One write: a frame that is answered, then one of an unknown type (an error, then the close).
        write(Self.frame(.release, id: id, release) + [0, 0, 0, 5, 0x7F, 0, 0, 0, 9])
        func dataPlanes() async throws -> String {
            let status = try await daemon.budgetctl(["status"])
            return status.stdout.split(separator: "\n").first { $0.hasPrefix("data planes:") }.map(String.init) ?? ""
        }
        #expect(try await dataPlanes().hasSuffix(" 1 connected"))
        try await Task.sleep(for: .seconds(4))
        let after = try await dataPlanes()
        #expect(after.hasSuffix(" 0 connected"), "4 s after the bad frame, with a 1-s peer time-out: \(after)")
    }
}

/// A /proc that hides other users' processes, as systemd's ProtectProc=invisible makes it: a mount namespace
/// with its own /proc mounted hidepid=invisible.
enum HiddenProc {
    /// Ids nothing else uses: the daemon's user, and the admin group.
    static let daemonUser: UInt32 = 64_124
    static let adminGroup: UInt32 = 64_123

    /// A command line that runs what follows it as `user`, with supplementary `groups`, in such a namespace.
    static func launcher(user: UInt32, groups: [UInt32] = []) -> [String] {
        [
            "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            "mount -t proc -o hidepid=invisible proc /proc && exec \"$@\"", "sh",
            "setpriv", "--reuid=\(user)", "--regid=\(user)",
            groups.isEmpty ? "--clear-groups" : "--groups=\(groups.map(String.init).joined(separator: ","))", "--",
        ]
    }

    /// Whether this machine can make one, and it hides process 1 from the daemon's user.
    static let available: Bool = {
        let probe = launcher(user: daemonUser) + ["test", "!", "-e", "/proc/1/status"]
        // Evaluated once, while the run is planned, before any test runs: it may block.
        guard getuid() == 0 else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = probe
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }()
}
