// libyaml, as Yams bundles and builds it. Yams' own tree (`Node`, with a class-typed tag per node, then a second
// pass to convert it) took two thirds of the time of reading 100,000 consumers, so the reader builds `ConfigNode`s
// straight from libyaml's events. CYaml is Yams' C target: not a product of its own, but the module every target
// that depends on Yams can import; linking a second libyaml (Debian's) beside it would clash symbol for symbol.
import CYaml

/// Composes one YAML document into a `ConfigNode` tree from libyaml's parser events, within `ConfigLimits`.
///
/// What it keeps from a YAML "compose" step, as Yams did before it: anchors and aliases (an alias is the anchored
/// node again; an alias that names no anchor, or its own unfinished ancestor, is an error), duplicate keys refused,
/// one document at most. What it adds: every node is counted as it is built, and an alias counts as many nodes as
/// its anchor holds, so a document that expands past `maxNodes` (an alias bomb) is refused before anything is
/// expanded; nesting, aliases included, is bounded by `maxDepth`. Mapping keys must be scalars.
struct YAMLComposer {
    /// Why a document was refused, with the place.
    struct Problem: Error, Equatable {
        /// Where in the input: a line and column, or (for libyaml's reader errors) a byte offset.
        enum Place: Equatable {
            case mark(line: Int, column: Int)
            case byteOffset(Int)
        }
        var message: String
        var place: Place

        init(message: String, line: Int, column: Int) {
            self.message = message
            self.place = .mark(line: line, column: column)
        }

        init(message: String, byteOffset: Int) {
            self.message = message
            self.place = .byteOffset(byteOffset)
        }
    }

    let limits: ConfigLimits
    let file: String

    /// A node being built: a mapping or sequence whose end event has not come yet.
    private struct Open {
        enum Kind {
            case mapping
            case sequence
        }
        var kind: Kind
        var location: SourceLocation
        var anchor: String?
        var items: [ConfigNode] = []
        var pairs: [ConfigNode.Pair] = []
        /// A mapping's key, waiting for its value.
        var pendingKey: (text: String, location: SourceLocation)?
        /// Nodes in this subtree so far, counted as the limit counts them: each node, and each mapping pair once
        /// more; keys are not counted.
        var size = 1
        /// Levels below this node so far.
        var height = 0
    }

    /// An anchored node, with the size and height that an alias of it adds.
    private struct Anchored {
        var node: ConfigNode
        var size: Int
        var height: Int
    }

    /// The root node of `text`, nil for a stream with no document. libyaml reads the string's own UTF-8 storage.
    func compose(_ text: String) throws(Problem) -> ConfigNode? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw Problem(message: "cannot start the YAML parser (out of memory)", line: 1, column: 1)
        }
        defer { yaml_parser_delete(&parser) }
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
        var text = text
        let result: Result<ConfigNode?, Problem> = text.withUTF8 { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            do throws(Problem) {
                return .success(try run(&parser))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private func run(_ parser: inout yaml_parser_t) throws(Problem) -> ConfigNode? {
        var stack: [Open] = []
        var anchors: [String: Anchored] = [:]
        var visited = 0
        var root: ConfigNode?
        var documents = 0
        var event = yaml_event_t()

        while true {
            guard yaml_parser_parse(&parser, &event) == 1 else { throw Self.parserProblem(parser) }
            defer { yaml_event_delete(&event) }
            let mark = event.start_mark
            let location = SourceLocation(file: file, line: Int(mark.line) + 1, column: Int(mark.column) + 1)

            /// Counts `size` more nodes, placed at the current depth and reaching `height` levels below it, against
            /// the limits.
            func admit(size: Int, height: Int) throws(Problem) {
                visited += size
                if visited > limits.maxNodes {
                    throw Problem(
                        message: "document expands to more than \(limits.maxNodes) YAML nodes "
                            + "(aliases are counted each time they are used); refusing to read it",
                        line: location.line, column: location.column)
                }
                if stack.count + height > limits.maxDepth {
                    throw Problem(
                        message: "nesting is deeper than \(limits.maxDepth) levels", line: location.line,
                        column: location.column)
                }
            }

            /// Whether the next node is a mapping's key. Keys are not counted against the node limit, nor their
            /// depth checked, as before this composer: a pair counts one, besides its value.
            var nextIsKey: Bool {
                guard let top = stack.last else { return false }
                return top.kind == .mapping && top.pendingKey == nil
            }

            /// Places a finished node in its parent (or as the root); `written` is where the node was written
            /// (an alias's own place, for a key that is an alias).
            func attach(_ node: ConfigNode, size: Int, height: Int, written: SourceLocation) throws(Problem) {
                // The parent is changed where it lies on the stack, not popped and pushed back.
                let top = stack.count - 1
                guard top >= 0 else {
                    root = node
                    return
                }
                switch stack[top].kind {
                case .sequence:
                    stack[top].items.append(node)
                    stack[top].size += size
                    stack[top].height = max(stack[top].height, height + 1)
                case .mapping:
                    if let key = stack[top].pendingKey {
                        stack[top].pairs.append(ConfigNode.Pair(key: key.text, keyLocation: key.location, value: node))
                        stack[top].pendingKey = nil
                        stack[top].size += size + 1
                        stack[top].height = max(stack[top].height, height + 1)
                        visited += 1
                    } else {
                        guard case .scalar(let scalar) = node.value else {
                            throw Problem(
                                message: "mapping keys must be plain strings, not \(node.kindDescription)",
                                line: written.line, column: written.column)
                        }
                        stack[top].pendingKey = (scalar.text, written)
                    }
                }
            }

            switch event.type {
            case YAML_STREAM_START_EVENT, YAML_DOCUMENT_END_EVENT:
                continue
            case YAML_STREAM_END_EVENT:
                return root
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 {
                    throw Problem(
                        message: "invalid YAML: but found another document (expected a single document in the stream)",
                        line: location.line, column: location.column)
                }
            case YAML_SCALAR_EVENT:
                if !nextIsKey { try admit(size: 1, height: 0) }
                let data = event.data.scalar
                let bytes = UnsafeBufferPointer(start: data.value, count: data.length)
                if bytes.contains(0) {
                    // Kong's database (PostgreSQL text) refuses it too, and SQLite text is read back up to it.
                    throw Problem(
                        message: "a string holds a NUL character (\\0), which no name, key or setting may contain",
                        line: location.line, column: location.column)
                }
                let text = String(decoding: bytes, as: UTF8.self)
                let tag = data.quoted_implicit == 1 ? Self.stringTag : data.tag.map { String(cString: $0) }
                let plain =
                    data.style == YAML_PLAIN_SCALAR_STYLE && tag != Self.stringTag
                    && (tag == nil || tag == "" || tag == "?" || tag?.hasPrefix("tag:yaml.org,2002:") == true)
                let node = ConfigNode(.scalar(ConfigScalar(text, isPlain: plain)), at: location)
                if let anchor = data.anchor {
                    anchors[String(cString: anchor)] = Anchored(node: node, size: 1, height: 0)
                }
                try attach(node, size: 1, height: 0, written: location)
            case YAML_ALIAS_EVENT:
                let name = event.data.alias.anchor.map { String(cString: $0) } ?? ""
                guard let anchored = anchors[name] else {
                    throw Problem(
                        message: "invalid YAML: found undefined alias", line: location.line, column: location.column)
                }
                if !nextIsKey { try admit(size: anchored.size, height: anchored.height) }
                try attach(anchored.node, size: anchored.size, height: anchored.height, written: location)
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                try admit(size: 1, height: 0)
                let isSequence = event.type == YAML_SEQUENCE_START_EVENT
                let anchor = isSequence ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
                stack.append(
                    Open(
                        kind: isSequence ? .sequence : .mapping, location: location,
                        anchor: anchor.map { String(cString: $0) }))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                guard let open = stack.popLast() else {
                    throw Problem(
                        message: "invalid YAML: unbalanced end of a collection", line: location.line,
                        column: location.column)
                }
                let node: ConfigNode
                switch open.kind {
                case .sequence:
                    node = ConfigNode(.sequence(open.items), at: open.location)
                case .mapping:
                    if let duplicate = Self.firstDuplicate(open.pairs) {
                        throw Problem(
                            message: "duplicate key \"\(duplicate.key)\" in one mapping",
                            line: duplicate.keyLocation.line, column: duplicate.keyLocation.column)
                    }
                    node = ConfigNode(.mapping(open.pairs), at: open.location)
                }
                if let anchor = open.anchor {
                    anchors[anchor] = Anchored(node: node, size: open.size, height: open.height)
                }
                try attach(node, size: open.size, height: open.height, written: open.location)
            default:
                continue
            }
        }
    }

    private static let stringTag = "tag:yaml.org,2002:str"

    /// The second occurrence of the first key that a mapping repeats.
    private static func firstDuplicate(_ pairs: [ConfigNode.Pair]) -> ConfigNode.Pair? {
        if pairs.count < 2 { return nil }
        if pairs.count <= 8 {
            for index in 1..<pairs.count {
                for earlier in 0..<index where pairs[earlier].key == pairs[index].key { return pairs[index] }
            }
            return nil
        }
        var seen = Set<String>(minimumCapacity: pairs.count)
        for pair in pairs where !seen.insert(pair.key).inserted { return pair }
        return nil
    }

    /// libyaml's error, as "invalid YAML: problem (context)" at its place.
    private static func parserProblem(_ parser: yaml_parser_t) -> Problem {
        let problem = parser.problem.map { String(cString: $0) } ?? "unknown error"
        switch parser.error {
        case YAML_MEMORY_ERROR:
            return Problem(message: "invalid YAML: out of memory", line: 1, column: 1)
        case YAML_READER_ERROR:
            // Reader errors (bad encoding, control characters) carry a byte offset, not a line.
            return Problem(message: "invalid YAML input: \(problem)", byteOffset: parser.problem_offset)
        default:
            var message = "invalid YAML: \(problem)"
            if let context = parser.context.map({ String(cString: $0) }), !context.isEmpty {
                message += " (\(context))"
            }
            return Problem(
                message: message, line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1)
        }
    }
}
