/// State shared while one set of files is read: the diagnostics, and which "field has no effect"
/// warnings were given already (each is given once per field, not once per entity).
final class DecodeContext {
    var diagnostics: DiagnosticBag
    private var warnedFields: Set<String> = []
    /// In the context of a part of a long list (`DecodedPart`): where its problems go, in order
    /// with its entities, for the whole run's context and builder to take in turn. Nil: recorded here.
    let log: DecodedPart.Log?

    init(limits: ConfigLimits, log: DecodedPart.Log? = nil) {
        diagnostics = DiagnosticBag(limit: limits.maxDiagnostics)
        self.log = log
    }

    func error(_ message: String, at location: SourceLocation, path: YAMLPath) {
        record(Diagnostic(.error, at: location, path: path, message))
    }

    func warning(_ message: String, at location: SourceLocation, path: YAMLPath) {
        record(Diagnostic(.warning, at: location, path: path, message))
    }

    /// Warns about `field` of `kind` once for the whole run.
    func warnOnce(kind: String, field: String, _ message: String, at location: SourceLocation, path: YAMLPath) {
        let key = "\(kind).\(field)"
        guard warnedFields.insert(key).inserted else { return }
        let warning = Diagnostic(.warning, at: location, path: path, message)
        if let log {
            log.events.append(.onceWarning(key: key, warning))
        } else {
            diagnostics.append(warning)
        }
    }

    /// A once-per-field warning that a part held back: given unless this run gave it already.
    func warnOnce(key: String, _ warning: Diagnostic) {
        guard warnedFields.insert(key).inserted else { return }
        record(warning)
    }

    private func record(_ diagnostic: Diagnostic) {
        if let log {
            log.events.append(.diagnostic(diagnostic))
        } else {
            diagnostics.append(diagnostic)
        }
    }
}
