import ArgumentParser
import Bedrock
import BedrockEmulator
import DaemonKit
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// `bedrock-emulator`: a local Bedrock Runtime for demos, tests and benchmarks.
@main
struct BedrockEmulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bedrock-emulator",
        abstract: "Serve Bedrock Runtime's wire format locally (Converse, ConverseStream, InvokeModel).",
        discussion: """
            Answers POST /model/{id}/converse, /converse-stream, /invoke and /invoke-with-response-stream \
            as Bedrock does, checking SigV4 for service bedrock. Replies are deterministic: their length \
            follows the prompt, and tokens are counted as one per four UTF-8 bytes.

            Faults for tests, per request with the x-emulator-fault header or [[emulator-fault:NAME]] in the \
            last user message, or for every request with --fault: throttle, error-500, error-503, \
            latency-MS, stream-throttle, drop, drop-mid-stream, corrupt-mid-stream (comma-separated to combine).

            Prints "listening on HOST:PORT" once it accepts connections; SIGTERM or SIGINT stops it (exit 0).
            """,
        version: GatewayVersion.current
    )

    @Option(help: ArgumentHelp("Address to listen on; port 0 picks a free port.", valueName: "host:port"))
    var listen = ListenAddress.tcp(host: "127.0.0.1", port: 9100)

    @Option(
        name: .customLong("credentials"),
        help: ArgumentHelp(
            "An accepted key pair (repeatable). Default: AKIDEXAMPLE and the AWS documentation secret.",
            valueName: "id:secret"))
    var credentials: [String] = []

    @Flag(help: "Accept requests without checking their SigV4 signature.")
    var noVerify = false

    @Option(help: ArgumentHelp("Another model id to serve (repeatable), besides Claude 3 Haiku.", valueName: "id"))
    var model: [String] = []

    @Option(help: ArgumentHelp("Faults to apply to every request that names none itself.", valueName: "faults"))
    var fault: String?

    @Option(help: ArgumentHelp("Pause between streamed frames.", valueName: "ms"))
    var streamDelayMs = 0

    @Option(help: ArgumentHelp("Event-loop threads (default: one per core).", valueName: "n"))
    var threads: Int?

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard case .tcp = listen else {
            throw ValidationError("--listen: expected HOST:PORT with a port from 0 to 65535, got '\(listen)'")
        }
        for pair in credentials where Self.credential(pair) == nil {
            throw ValidationError("--credentials: expected ID:SECRET with both parts non-empty")
        }
        if let fault, EmulatorFault.parse(fault) == nil {
            throw ValidationError("--fault: unknown fault in '\(fault)'; see --help for the names")
        }
        guard (0...10_000).contains(streamDelayMs) else { throw ValidationError("--stream-delay-ms: 0 to 10000") }
        if let threads, !(1...64).contains(threads) { throw ValidationError("--threads: 1 to 64") }
    }

    static func credential(_ pair: String) -> AWSCredentials? {
        guard let colon = pair.firstIndex(of: ":") else { return nil }
        let id = String(pair[..<colon])
        let secret = String(pair[pair.index(after: colon)...])
        guard !id.isEmpty, !secret.isEmpty else { return nil }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret)
    }

    func run() async throws {
        let logger = logging.bootstrap(label: "bedrock-emulator")
        var configuration = EmulatorConfiguration()
        let pairs = credentials.compactMap(Self.credential)
        if !pairs.isEmpty { configuration.credentials = pairs }
        configuration.verifySignatures = !noVerify
        configuration.models += model
        configuration.defaultFaults = fault.flatMap(EmulatorFault.parse) ?? []
        configuration.streamFrameDelayMilliseconds = streamDelayMs
        guard case .tcp(let host, let port) = listen else { throw ExitCode.validationFailure }
        IgnoredSignals.sigpipe()
        let server = try await EmulatorServer.start(
            host: host, port: port, configuration: configuration, threads: threads)
        try? FileHandle.standardOutput.write(contentsOf: Data("listening on \(host):\(server.port ?? port)\n".utf8))
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: server)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await services.run()
    }
}
