/// One problem found in an input, located so that a user can go straight to it.
///
/// Rendered as `file:line:column: path: message`, the form compilers and decK users know,
/// with `warning: ` before the path for warnings.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    /// An error makes the input unusable; a warning does not.
    public enum Severity: String, Sendable, Hashable {
        case error
        case warning
    }

    public var severity: Severity
    /// Where the problem is; `nil` only for problems that belong to no file (an unreadable path).
    public var location: SourceLocation?
    /// The YAML path of the offending node; the root path when the whole document is meant.
    public var path: YAMLPath
    public var message: String

    public init(_ severity: Severity, at location: SourceLocation?, path: YAMLPath, _ message: String) {
        self.severity = severity
        self.location = location
        self.path = path
        self.message = message
    }

    public var description: String {
        var text = ""
        if let location { text += "\(location): " }
        if severity == .warning { text += "warning: " }
        if !path.isRoot { text += "\(path): " }
        return text + message
    }
}

/// Collects diagnostics while a document is read, so that every problem is reported, not only the first.
///
/// A bag is bounded: past `limit` errors it stops recording and notes how many were left out,
/// so a pathological file cannot flood the terminal or memory.
public struct DiagnosticBag: Sendable {
    public private(set) var diagnostics: [Diagnostic] = []
    /// How many diagnostics were left out past the limit.
    public private(set) var suppressed = 0
    public let limit: Int

    /// An empty bag that records at most `limit` diagnostics.
    public init(limit: Int = 500) { self.limit = limit }

    /// Whether any error was found, recorded or left out.
    public var hasErrors: Bool { diagnostics.contains { $0.severity == .error } || suppressed > 0 }
    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [Diagnostic] { diagnostics.filter { $0.severity == .warning } }

    /// Records `diagnostic` once, or counts it as left out past the limit.
    public mutating func append(_ diagnostic: Diagnostic) {
        if diagnostics.count >= limit {
            suppressed += 1
            return
        }
        if diagnostics.contains(diagnostic) { return }
        diagnostics.append(diagnostic)
    }

    /// Records an error.
    public mutating func error(_ message: String, at location: SourceLocation?, path: YAMLPath) {
        append(Diagnostic(.error, at: location, path: path, message))
    }

    /// Records a warning.
    public mutating func warning(_ message: String, at location: SourceLocation?, path: YAMLPath) {
        append(Diagnostic(.warning, at: location, path: path, message))
    }

    /// Records another bag's diagnostics and its count of those left out.
    public mutating func append(contentsOf other: DiagnosticBag) {
        for diagnostic in other.diagnostics { append(diagnostic) }
        suppressed += other.suppressed
    }

    /// The diagnostics in file order, errors and warnings interleaved as they appear.
    public var sorted: [Diagnostic] {
        diagnostics.enumerated().sorted { lhs, rhs in
            switch (lhs.element.location, rhs.element.location) {
            case let (l?, r?) where l != r: return l < r
            case (nil, _?): return true
            case (_?, nil): return false
            default: return lhs.offset < rhs.offset
            }
        }.map(\.element)
    }

    /// Every diagnostic as one line each, and a last line for those left out.
    public var rendered: [String] {
        var lines = sorted.map(\.description)
        if suppressed > 0 { lines.append("… and \(suppressed) more problems not shown") }
        return lines
    }
}

/// Thrown when an input cannot be used; carries every diagnostic found.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: DiagnosticBag

    public init(_ diagnostics: DiagnosticBag) { self.diagnostics = diagnostics }

    public var description: String { diagnostics.rendered.joined(separator: "\n") }
}
