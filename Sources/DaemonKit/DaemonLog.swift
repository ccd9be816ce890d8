import Foundation
public import Logging

/// The daemons' log lines on standard error: `text` for people, `json` (one object a line) for
/// collectors. Secrets never reach here: callers log names, counts and masked values only.
public struct DaemonLogHandler: LogHandler {
    /// `text`: a line for people; `json`: one object a line, for collectors.
    public enum Format: String, Sendable, CaseIterable {
        case text, json
    }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let label: String
    let format: Format

    public init(label: String, format: Format, level: Logger.Level) {
        self.label = label
        self.format = format
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let time = Date().formatted(.iso8601)
        let line: String
        switch format {
        case .text:
            let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            line = "\(time) \(event.level) \(label): \(event.message)\(fields.isEmpty ? "" : " " + fields)\n"
        case .json:
            var object: [String: String] = [
                "time": time, "level": "\(event.level)", "logger": label,
                "message": "\(event.message)",
            ]
            for (key, value) in merged { object[key] = "\(value)" }
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            line = ((try? encoder.encode(object)).map { String(decoding: $0, as: UTF8.self) } ?? "{}") + "\n"
        }
        try? FileHandle.standardError.write(contentsOf: Data(line.utf8))
    }

    /// Installs the handler for every logger of the process.
    public static func bootstrap(format: Format, level: Logger.Level) {
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, format: format, level: level) }
    }
}
