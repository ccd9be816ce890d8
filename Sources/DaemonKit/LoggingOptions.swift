public import ArgumentParser
public import Logging

/// `--log-format` and `--log-level`, the same for every daemon.
public struct LoggingOptions: ParsableArguments, Sendable {
    @Option(help: ArgumentHelp("Log format: text or json.", valueName: "format"))
    public var logFormat: DaemonLogHandler.Format = .text

    @Option(
        help: ArgumentHelp(
            "Lowest level logged: trace, debug, info, notice, warning, error, critical (info logs one line per "
                + "request).",
            valueName: "level"))
    public var logLevel: Logger.Level = .info

    public init() {}

    /// Installs the daemon log handler for the whole process and returns the daemon's logger.
    public func bootstrap(label: String) -> Logger {
        DaemonLogHandler.bootstrap(format: logFormat, level: logLevel)
        return Logger(label: label)
    }
}

extension DaemonLogHandler.Format: ExpressibleByArgument {}

extension Logger.Level: @retroactive ExpressibleByArgument {}
