/// The bounds every config input is read within, so that no file can exhaust time or memory.
///
/// They are stated in `budgetctl --help` and in budget.yaml(5).
public struct ConfigLimits: Sendable, Hashable {
    /// Largest single input file, in bytes (16 MiB: 100,000 consumers in decK format take about 12 MiB).
    public var maxFileBytes: Int = 16 << 20
    /// Largest sum of all inputs of one command, in bytes.
    public var maxTotalBytes: Int = 64 << 20
    /// Most YAML nodes one document may hold once aliases are expanded; stops alias bombs.
    public var maxNodes: Int = 2_000_000
    /// Deepest nesting of mappings and lists (a decK file needs about 10).
    public var maxDepth: Int = 64
    /// Most diagnostics reported for one command before the rest are only counted.
    public var maxDiagnostics: Int = 500

    public init() {}

    /// Most windows (`limit`/`window_size` pairs) of one provider entry: a request is checked against each, and
    /// the data plane's reservation and commit messages carry at most this many.
    public static let maxWindowsPerProvider = 64

    /// The limits every command uses unless told otherwise.
    public static let standard = ConfigLimits()
}
