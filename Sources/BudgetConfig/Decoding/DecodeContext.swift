/// State shared while one set of files is read: the diagnostics, and which "field has no effect"
/// warnings were given already (each is given once per field, not once per entity).
final class DecodeContext {
    var diagnostics: DiagnosticBag
    private var warnedFields: Set<String> = []

    init(limits: ConfigLimits) {
        diagnostics = DiagnosticBag(limit: limits.maxDiagnostics)
    }

    func error(_ message: String, at location: SourceLocation, path: YAMLPath) {
        diagnostics.error(message, at: location, path: path)
    }

    func warning(_ message: String, at location: SourceLocation, path: YAMLPath) {
        diagnostics.warning(message, at: location, path: path)
    }

    /// Warns about `field` of `kind` once for the whole run.
    func warnOnce(kind: String, field: String, _ message: String, at location: SourceLocation, path: YAMLPath) {
        guard warnedFields.insert("\(kind).\(field)").inserted else { return }
        warning(message, at: location, path: path)
    }
}
