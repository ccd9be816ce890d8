/// State shared while one set of files is read: the diagnostics, and which "field has no effect"
/// warnings were given already (each is given once per field, not once per entity).
final class DecodeContext {
    var diagnostics: DiagnosticBag
    private var warnedFields: Set<String> = []
    /// In the context of a part read on its own thread (`DecodedPart`): the once-per-field warnings, held back
    /// so that the whole run's context gives each once when it absorbs the part. Nil: given at once.
    private(set) var heldOnceWarnings: [DecodedPart.OnceWarning]?

    init(limits: ConfigLimits, holdingOnceWarnings: Bool = false) {
        diagnostics = DiagnosticBag(limit: limits.maxDiagnostics)
        heldOnceWarnings = holdingOnceWarnings ? [] : nil
    }

    func error(_ message: String, at location: SourceLocation, path: YAMLPath) {
        diagnostics.error(message, at: location, path: path)
    }

    func warning(_ message: String, at location: SourceLocation, path: YAMLPath) {
        diagnostics.warning(message, at: location, path: path)
    }

    /// Warns about `field` of `kind` once for the whole run.
    func warnOnce(kind: String, field: String, _ message: String, at location: SourceLocation, path: YAMLPath) {
        let key = "\(kind).\(field)"
        guard warnedFields.insert(key).inserted else { return }
        if heldOnceWarnings != nil {
            heldOnceWarnings?.append(
                DecodedPart.OnceWarning(key: key, diagnostic: Diagnostic(.warning, at: location, path: path, message)))
        } else {
            warning(message, at: location, path: path)
        }
    }

    /// Takes in a part's diagnostics, after those of the parts before it.
    func absorb(_ part: DecodedPart) {
        diagnostics.append(contentsOf: part.diagnostics)
        for held in part.onceWarnings where warnedFields.insert(held.key).inserted {
            diagnostics.append(held.diagnostic)
        }
    }
}
