import AsyncHTTPClient
import BedrockEmulator
import DaemonKit
import DataPlane
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import TestSupport

/// The data plane in this process, in front of a real emulator (also in process) and a real budget-controld
/// (the built executable, on its own temporary sockets, stopped by PID). `withGateway` tears it all down, also
/// when the test fails.
final class GatewayUnderTest: Sendable {
    let directory: URL
    let emulator: EmulatorServer
    private let controlPlane: Mutex<Process>
    /// Flags budget-controld starts (and restarts) with, beyond its sockets and state directory.
    let controlPlaneArguments: [String]
    var controld: Process { controlPlane.withLock { $0 } }
    let proxyURL: String
    let client: HTTPClient
    let services: ServiceGroup
    let running: Task<Void, any Error>

    var adminSocket: String { directory.appendingPathComponent("admin.sock").path }

    private init(
        directory: URL, emulator: EmulatorServer, controld: Process, controlPlaneArguments: [String],
        proxyURL: String, client: HTTPClient, services: ServiceGroup, running: Task<Void, any Error>
    ) {
        self.controlPlaneArguments = controlPlaneArguments
        self.directory = directory
        self.emulator = emulator
        self.controlPlane = Mutex(controld)
        self.proxyURL = proxyURL
        self.client = client
        self.services = services
        self.running = running
    }

    /// Starts everything with `config` (decK YAML) synced, runs `body`, and stops everything.
    static func withGateway<T>(
        config: String = fixtureText(), lossPolicy: ControlPlaneLossPolicy = .failClosed,
        controlPlaneArguments: [String] = [], _ body: (GatewayUnderTest) async throws -> T
    ) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "dataplane-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("state"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let emulator = try await EmulatorServer.start(
            host: "127.0.0.1", port: 0, configuration: EmulatorConfiguration(), threads: 1)
        let controld: Process
        do {
            controld = try await startControlPlane(in: directory, arguments: controlPlaneArguments)
        } catch {
            try? await emulator.close()
            throw error
        }
        let gateway: GatewayUnderTest
        do {
            let configFile = directory.appendingPathComponent("config.yaml")
            try config.write(to: configFile, atomically: true, encoding: .utf8)
            let sync = try await runBinary("budgetctl", ["sync", configFile.path], admin: directory)
            guard sync.status == 0 else { throw TestFailure("budgetctl sync failed: \(sync.stderr)") }
            gateway = try await startProxy(
                directory: directory, emulator: emulator, controld: controld,
                controlPlaneArguments: controlPlaneArguments, lossPolicy: lossPolicy)
        } catch {
            await terminate(controld)
            try? await emulator.close()
            throw error
        }
        do {
            let result = try await body(gateway)
            await gateway.stop()
            return result
        } catch {
            await gateway.stop()
            throw error
        }
    }

    private static func startProxy(
        directory: URL, emulator: EmulatorServer, controld: Process, controlPlaneArguments: [String],
        lossPolicy: ControlPlaneLossPolicy
    ) async throws -> GatewayUnderTest {
        let (announcements, announce) = AsyncStream.makeStream(of: String.self)
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = "http://127.0.0.1:\(emulator.port ?? 0)"
        var logger = Logger(label: "budget-proxyd")
        logger.logLevel = .warning
        let daemon = ProxyDaemon(
            options: .init(
                listen: [.tcp(host: "127.0.0.1", port: 0)], statusListen: nil,
                controlSocket: directory.appendingPathComponent("control.sock").path, lossPolicy: lossPolicy,
                limits: HTTPLimits(), controlTimeout: .seconds(2), environment: environment),
            logger: logger, signals: []
        ) { line in announce.yield(line) }
        let services = ServiceGroup(services: [daemon], logger: logger)
        let running = Task { try await services.run() }
        let waited = await withDeadline(.seconds(20)) { () -> String? in
            for await line in announcements where line.hasPrefix("listening on ") {
                return "http://" + line.dropFirst("listening on ".count)
            }
            return nil
        }
        let proxyURL = waited ?? nil
        guard let proxyURL else {
            await services.triggerGracefulShutdown()
            running.cancel()
            throw TestFailure("budget-proxyd did not start listening within 20 s")
        }
        return GatewayUnderTest(
            directory: directory, emulator: emulator, controld: controld,
            controlPlaneArguments: controlPlaneArguments, proxyURL: proxyURL, client: HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup), services: services,
            running: running)
    }

    /// Graceful shutdown of the proxy (awaited), then the control plane and the emulator.
    func stop() async {
        await services.triggerGracefulShutdown()
        _ = try? await running.value
        try? await client.shutdown()
        await terminate(controld)
        try? await emulator.close()
    }

    /// kill -9 of budget-controld.
    func killControlPlane() async {
        let process = controld
        kill(process.processIdentifier, SIGKILL)
        _ = try? await offPool { process.waitUntilExit() }
    }

    /// Starts budget-controld again on the same state directory and sockets.
    func restartControlPlane() async throws {
        unlink(adminSocket)
        let process = try await Self.startControlPlane(in: directory, arguments: controlPlaneArguments)
        controlPlane.withLock { $0 = process }
    }

    /// POSTs a chat body with `apikey` to `/ai/budget` and returns the status, headers and body.
    func chat(_ body: String, key: String?, path: String = "/ai/budget", timeout: TimeAmount = .seconds(30))
        async throws -> Reply
    {
        var request = HTTPClientRequest(url: proxyURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key { request.headers.add(name: "apikey", value: key) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await client.execute(request, timeout: timeout)
        let bytes = try await response.body.collect(upTo: 4 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: String(buffer: bytes))
    }

    /// `budgetctl usage CONSUMER --json`: the used and in-flight units of its first window.
    func usage(of consumer: String) async throws -> (used: Double, inFlight: Double) {
        let result = try await runBinary("budgetctl", ["usage", consumer, "--json"], admin: directory)
        guard result.status == 0,
            let rows = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]],
            let row = rows.first, let used = row["used"] as? Double, let inFlight = row["inFlight"] as? Double
        else { throw TestFailure("budgetctl usage: \(result.stderr) \(result.stdout)") }
        return (used, inFlight)
    }

    /// Polls `usage(of:)` until `condition` holds (commits reach the control plane asynchronously), for at most
    /// 10 s; returns the last reading.
    func usage(of consumer: String, until condition: ((used: Double, inFlight: Double)) -> Bool) async throws
        -> (used: Double, inFlight: Double)
    {
        let deadline = ContinuousClock.now + .seconds(10)
        var reading = try await usage(of: consumer)
        while !condition(reading) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            reading = try await usage(of: consumer)
        }
        return reading
    }

    /// An HTTP answer from the proxy.
    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: String

        var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
        }

        /// `usage.total_tokens` of a chat completion.
        var totalTokens: Int? { (json?["usage"] as? [String: Any])?["total_tokens"] as? Int }
    }

    // MARK: - Processes

    private static func startControlPlane(in directory: URL, arguments: [String]) async throws -> Process {
        let process = Process()
        process.executableURL = binaryURL("budget-controld")
        process.arguments = [
            "--state-dir", directory.appendingPathComponent("state").path,
            "--control-socket", directory.appendingPathComponent("control.sock").path,
            "--admin-socket", directory.appendingPathComponent("admin.sock").path,
            "--log-level", "warning",
        ] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let admin = directory.appendingPathComponent("admin.sock").path
        if await waitUntilReady(process, within: .seconds(20), { FileManager.default.fileExists(atPath: admin) }) {
            return process
        }
        await terminate(process)
        throw TestFailure("budget-controld did not start")
    }
}

/// The user's fixture, with its `DECK_` secrets for the emulator's key pair filled in by budgetctl.
func fixtureText() -> String {
    (try? String(
        contentsOf: packageRoot.appendingPathComponent("Tests/BudgetConfigTests/Fixtures/kong-consumer-budgets.yaml"),
        encoding: .utf8)) ?? ""
}

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// An executable of the package, built beside this test bundle.
func binaryURL(_ name: String) -> URL {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
}

/// Runs a built executable to completion against the gateway's admin socket, off Swift's cooperative pool.
func runBinary(_ name: String, _ arguments: [String], admin directory: URL) async throws -> ProcessResult {
    try await runProcess(
        binaryURL(name), arguments,
        environment: [
            "PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory(),
            "BUDGETCTL_SOCKET": directory.appendingPathComponent("admin.sock").path,
            "DECK_AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "DECK_AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ])
}
