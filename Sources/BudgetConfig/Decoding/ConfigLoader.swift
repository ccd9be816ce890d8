import CBudgetSystem

/// One input file: a name for messages (`<stdin>` for `-`) and its bytes.
public struct ConfigSource: Sendable {
    public var name: String
    public var bytes: [UInt8]

    public init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }

    /// A source from text, as its UTF-8 bytes.
    public init(name: String, text: String) {
        self.init(name: name, bytes: Array(text.utf8))
    }
}

/// What reading a set of decK files gives: the merged state, the select tags, and every problem.
public struct LoadedConfig: Sendable {
    /// Every entity of every file, with defaults filled in.
    public var state: ConfigState
    /// The files' `_info.select_tags`, already added to every entity they declare.
    public var selectTags: [String]
    public var diagnostics: DiagnosticBag
    /// Where each entity was written, for problems found later.
    public var sourceMap: SourceMap
    /// Values inserted by `${{ env "DECK_…" }}`, for callers that mask them in output.
    public var substitutedValues: [String]

    /// True when there is no error (warnings allowed).
    public var isValid: Bool { !diagnostics.hasErrors }
}

/// Reads decK format 3.0 files into one `ConfigState`, reporting every problem with its location.
///
/// Nothing here does I/O: callers pass the bytes and the environment.
public enum ConfigLoader {
    /// The CPUs this process may run on (its affinity mask), at most 4: more threads gain little on a list that
    /// one thread reads in about a second.
    public static var defaultWorkers: Int { min(4, max(1, Int(cbudget_affinity_cpu_count()))) }

    /// The `_format_version` files must declare.
    public static let formatVersion = "3.0"

    /// Reads, merges and checks `sources`; the result carries every problem rather than throwing.
    ///
    /// `workers` threads at most read a long `consumers` list (`DeckFileDecoder.decodeConsumers`); by default, as
    /// many as the CPUs this process may run on, and 1 reads everything on the calling thread. The result is
    /// the same either way.
    public static func load(
        _ sources: [ConfigSource], environment: [String: String], limits: ConfigLimits = .standard,
        workers: Int = defaultWorkers
    ) -> LoadedConfig {
        let context = DecodeContext(limits: limits)
        let builder = StateBuilder(context: context)
        let loader = YAMLLoader(limits: limits, template: EnvTemplate(environment: environment))
        var substituted: [String] = []
        var declaredTags: [(tags: [String], location: SourceLocation)] = []
        var totalBytes = 0

        for source in sources {
            totalBytes += source.bytes.count
            if totalBytes > limits.maxTotalBytes {
                context.error(
                    "inputs add up to more than \(limits.maxTotalBytes) bytes",
                    at: SourceLocation(file: source.name, line: 1, column: 1), path: YAMLPath())
                break
            }
            var diagnostics = DiagnosticBag(limit: limits.maxDiagnostics)
            let loaded = loader.load(source.bytes, file: source.name, diagnostics: &diagnostics)
            context.diagnostics.append(contentsOf: diagnostics)
            substituted += loaded.substitutedValues
            guard let root = loaded.root else { continue }
            var file = DeckFileDecoder(context: context, builder: builder, workers: workers)
            if let tags = file.decode(root) { declaredTags.append(tags) }
            ExitRetention.keep(root)
        }

        var selectTags: [String] = []
        if let first = declaredTags.first {
            selectTags = first.tags
            for other in declaredTags.dropFirst() where other.tags != first.tags {
                context.error(
                    "_info.select_tags \(other.tags) differ from \(first.tags) at \(first.location); "
                        + "all files of one sync must declare the same select tags",
                    at: other.location, path: YAMLPath().appending("_info").appending("select_tags"))
            }
        }

        let issues = StateValidator.issues(in: builder.state)
        if !issues.isEmpty {
            let origins = builder.sourceMap.indexed()
            for issue in issues { context.diagnostics.append(origins.diagnostic(for: issue)) }
        }
        return LoadedConfig(
            state: builder.state, selectTags: selectTags, diagnostics: context.diagnostics,
            sourceMap: builder.sourceMap, substitutedValues: substituted)
    }
}

/// Accumulates entities from every file; a second definition of one identity is an error that
/// names where the first was.
final class StateBuilder {
    var state = ConfigState()
    var sourceMap = SourceMap()
    let context: DecodeContext
    /// `sourceMap` as tables, made at the first entity defined twice (most files have none) and kept up to date.
    private var origins: SourceMap.Index?

    init(context: DecodeContext) { self.context = context }

    /// Room for `count` more entities.
    func reserveCapacity(_ count: Int) {
        if let log = context.log {
            log.events.reserveCapacity(log.events.count + count)
            return
        }
        state.reserveCapacity(state.count + count)
        sourceMap.reserveCapacity(state.count + count)
    }

    func add(_ entity: Entity, at location: SourceLocation, path: YAMLPath) {
        let origin = SourceMap.Origin(location: location, path: path)
        if let log = context.log {
            log.events.append(.entity(entity, origin))
            return
        }
        add(entity, at: origin)
    }

    private func add(_ entity: Entity, at origin: SourceMap.Origin) {
        let id = entity.id
        if state.insert(entity, id: id) {
            sourceMap.record(id, at: origin)
            origins?.record(id, at: origin)
            return
        }
        if case .consumerGroupConsumer = entity { return }  // the same membership, written both ways
        if origins == nil { origins = sourceMap.indexed() }
        let first = origins?.origin(of: id).map { " (first at \($0.location), \($0.path))" } ?? ""
        if case .keyAuth(let existing)? = state[id] {
            context.error(
                "this key is already the key of consumer \(existing.consumer)\(first); keys must be unique",
                at: origin.location, path: origin.path)
        } else {
            context.error(
                "\(entity.definitionPhrase) is defined more than once\(first)", at: origin.location, path: origin.path)
        }
    }

    func recordField(_ id: EntityID, _ field: String, at location: SourceLocation, path: YAMLPath) {
        let origin = SourceMap.Origin(location: location, path: path)
        if let log = context.log {
            log.events.append(.field(id, field, origin))
            return
        }
        sourceMap.record(id, field: field, at: origin)
    }

    /// Takes in, in their order, the entities, field origins and problems a part of a list logged as it was read
    /// (`DecodedPart`), as if it had been read here: the same entities found twice, the same problems in the
    /// same order, the same ones kept past the diagnostics' limit.
    func replay(_ part: DecodedPart) {
        for event in part.events {
            switch event {
            case .entity(let entity, let origin): add(entity, at: origin)
            case .field(let id, let field, let origin): sourceMap.record(id, field: field, at: origin)
            case .diagnostic(let diagnostic): context.diagnostics.append(diagnostic)
            case .onceWarning(let key, let warning): context.warnOnce(key: key, warning)
            }
        }
    }
}
