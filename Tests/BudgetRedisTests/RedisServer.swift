import Foundation
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A redis-server (or redis-sentinel) started by a test on a free loopback port in its own temporary directory,
/// killed by PID (SIGKILL) when the test is done, also when it failed (`defer { server.stop() }`).
final class RedisServer: @unchecked Sendable {
    let port: Int
    let directory: URL
    let executable: String
    let arguments: [String]
    /// The log file, and the line the server writes there once its listeners are bound (in every Redis version:
    /// "Running mode=…" comes before the bind from 7.2 on).
    let logFile: URL
    let readyLine: String
    private var process: Process?

    /// Starts `redis-server` with the test's usual flags plus `extra`; `port` reuses one (a restart).
    static func started(extra: [String] = [], port: Int? = nil, tls: TestCertificates? = nil, directory: URL? = nil)
        async throws -> RedisServer
    {
        try await withFreshPort(retrying: port == nil) {
            try RedisServer(extra: extra, port: port, tls: tls, directory: directory)
        } cleanUp: { server in
            directory == nil ? server.remove() : server.stop()
        }
    }

    /// Starts `redis-sentinel` with a generated config monitoring master `name` at `masterPort`.
    static func sentinel(for name: String, masterPort: Int) async throws -> RedisServer {
        try await withFreshPort(retrying: true) {
            try RedisServer(sentinelFor: name, masterPort: masterPort)
        } cleanUp: { server in
            server.remove()
        }
    }

    /// Launches the server `make` sets up. A free port is found by binding port 0 and closing it, so another
    /// process (a parallel test's connection) can take it before the server binds it: the server then exits with
    /// "Address already in use", and one set up on a new port is tried, up to three times.
    private static func withFreshPort(
        retrying: Bool, _ make: () throws -> RedisServer, cleanUp: (RedisServer) -> Void
    ) async throws -> RedisServer {
        var attempt = 1
        while true {
            let server = try make()
            do {
                try await server.launch()
                return server
            } catch {
                guard retrying, attempt < 3, server.logText().contains("Address already in use") else { throw error }
                cleanUp(server)
                attempt += 1
            }
        }
    }

    private init(extra: [String], port: Int?, tls: TestCertificates?, directory: URL?) throws {
        self.port = try port ?? freePort()
        self.directory = try directory ?? temporaryDirectory("redis")
        executable = try findExecutable("redis-server")
        logFile = self.directory.appendingPathComponent("redis.log")
        readyLine = "Ready to accept connections"
        var arguments = [
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.directory.path,
            "--logfile", logFile.path,
        ]
        if let tls {
            arguments += [
                "--port", "0", "--tls-port", String(self.port), "--tls-cert-file", tls.serverCert,
                "--tls-key-file", tls.serverKey, "--tls-ca-cert-file", tls.caCert, "--tls-auth-clients", "no",
            ]
        } else {
            arguments += ["--port", String(self.port)]
        }
        self.arguments = arguments + extra
    }

    private init(sentinelFor name: String, masterPort: Int) throws {
        port = try freePort()
        directory = try temporaryDirectory("sentinel")
        executable = try findExecutable("redis-sentinel")
        logFile = directory.appendingPathComponent("sentinel.log")
        readyLine = "Sentinel ID is"
        let config = directory.appendingPathComponent("sentinel.conf")
        try """
        port \(port)
        bind 127.0.0.1
        dir \(directory.path)
        logfile \(logFile.path)
        sentinel monitor \(name) 127.0.0.1 \(masterPort) 1
        sentinel down-after-milliseconds \(name) 1000
        sentinel failover-timeout \(name) 5000

        """.write(to: config, atomically: true, encoding: .utf8)
        arguments = [config.path]
    }

    /// Starts the process (again) and waits, without holding a thread of the cooperative pool, until its port
    /// accepts connections.
    func launch() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        // What the log held before: a restart appends to the same file, and only this run's lines count.
        let logStart = (try? FileManager.default.attributesOfItem(atPath: logFile.path)[.size] as? Int) ?? 0
        try process.run()
        self.process = process
        let port = port
        // Ready when this process says it listens and the port takes connections: a port that only accepts could
        // be another process's, taken between `freePort()` and this bind.
        let ready = await waitUntilReady(process, within: .seconds(10), every: .milliseconds(10)) {
            logWritten(since: logStart).contains(readyLine) && canConnect(port: port)
        }
        if ready { return }
        stop()
        throw TestFailure("\(executable) did not start on port \(port): \(logText())")
    }

    /// SIGKILL and wait (synchronous, for `defer`: a killed redis-server is gone at once).
    func stop() {
        guard let process else { return }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        self.process = nil
    }

    /// The log file's text past its first `offset` bytes.
    private func logWritten(since offset: Int) -> String {
        guard let handle = try? FileHandle(forReadingFrom: logFile) else { return "" }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: UInt64(offset))) != nil, let data = try? handle.readToEnd() else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    func logText() -> String {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".log") }.compactMap {
            try? String(contentsOfFile: directory.appendingPathComponent($0).path, encoding: .utf8)
        }.joined(separator: "\n").suffix(2000).description
    }

    /// Stops the process and removes its directory.
    func remove() {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}

/// A CA and a server certificate for localhost and 127.0.0.1, made once per test run with the openssl CLI.
struct TestCertificates: Sendable {
    let caCert: String
    let serverCert: String
    let serverKey: String
    /// A server certificate for localhost only (no IP address): NIOSSL accepts a certificate whose IP SAN is the
    /// connected address whatever the server name, so a wrong name only fails against this one.
    let dnsOnlyCert: String
    let dnsOnlyKey: String

    static let shared: Result<TestCertificates, TestFailure> = {
        do { return .success(try make()) } catch let error as TestFailure { return .failure(error) } catch {
            return .failure(TestFailure("\(error)"))
        }
    }()

    private static func make() throws -> TestCertificates {
        let directory = try temporaryDirectory("redis-tls")
        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\n".write(
            toFile: path("ext.cnf"), atomically: true, encoding: .utf8)
        try "subjectAltName=DNS:localhost\n".write(toFile: path("dns.cnf"), atomically: true, encoding: .utf8)
        let openssl = try findExecutable("openssl")
        try runTool(
            openssl,
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", path("ca.key"), "-out", path("ca.crt"), "-days", "2", "-subj", "/CN=BudgetRedis test CA",
            ])
        try runTool(
            openssl,
            [
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", path("server.key"), "-out", path("server.csr"), "-subj", "/CN=localhost",
            ])
        try runTool(
            openssl,
            [
                "x509", "-req", "-in", path("server.csr"), "-CA", path("ca.crt"), "-CAkey", path("ca.key"),
                "-CAcreateserial", "-out", path("server.crt"), "-days", "2", "-extfile", path("ext.cnf"),
            ])
        try runTool(
            openssl,
            [
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", path("dns.key"), "-out", path("dns.csr"), "-subj", "/CN=localhost",
            ])
        try runTool(
            openssl,
            [
                "x509", "-req", "-in", path("dns.csr"), "-CA", path("ca.crt"), "-CAkey", path("ca.key"),
                "-CAcreateserial", "-out", path("dns.crt"), "-days", "2", "-extfile", path("dns.cnf"),
            ])
        return TestCertificates(
            caCert: path("ca.crt"), serverCert: path("server.crt"), serverKey: path("server.key"),
            dnsOnlyCert: path("dns.crt"), dnsOnlyKey: path("dns.key"))
    }

    /// The same CA, with the localhost-only server certificate.
    var dnsOnly: TestCertificates {
        TestCertificates(
            caCert: caCert, serverCert: dnsOnlyCert, serverKey: dnsOnlyKey, dnsOnlyCert: dnsOnlyCert,
            dnsOnlyKey: dnsOnlyKey)
    }
}

/// The executable's path, or a failure saying how to install it.
func findExecutable(_ name: String) throws -> String {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw TestFailure(
        "\(name) is not installed: the BudgetRedis tests need redis-server, redis-sentinel and openssl "
            + "(scripts/deps.sh test installs them)")
}

func runTool(_ executable: String, _ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let output = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw TestFailure(
            "\(executable) \(arguments.joined(separator: " ")) failed: \(String(decoding: output, as: UTF8.self))")
    }
}

func temporaryDirectory(_ prefix: String) throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
        "\(prefix)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}

/// A loopback port nothing listens on (the kernel's choice for port 0).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw TestFailure("bind: \(errno)") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw TestFailure("getsockname: \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// Polls `condition` until it holds or `seconds` have passed; returns whether it held.
func eventually(within seconds: Double, _ condition: () async -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return await condition()
}
