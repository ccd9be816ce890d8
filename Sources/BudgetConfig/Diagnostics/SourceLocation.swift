/// A position in an input file, 1-based, with the column counted in Unicode scalars as YAML does.
public struct SourceLocation: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The file name as the user gave it (`<stdin>` for `-`).
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (lhs: SourceLocation, rhs: SourceLocation) -> Bool {
        (lhs.file, lhs.line, lhs.column) < (rhs.file, rhs.line, rhs.column)
    }
}

/// A path into the document, such as `consumers[1].groups[0].name`.
public struct YAMLPath: Sendable, Hashable, CustomStringConvertible {
    enum Component: Sendable, Hashable {
        case key(String)
        case index(Int)
    }

    var components: [Component]

    /// The root path: the whole document.
    public init() { components = [] }

    init(_ components: [Component]) { self.components = components }

    /// The path of a mapping value under `key`.
    public func appending(_ key: String) -> YAMLPath { YAMLPath(components + [.key(key)]) }

    /// The path of the element at `index` of a sequence.
    public func appending(index: Int) -> YAMLPath { YAMLPath(components + [.index(index)]) }

    /// Whether this is the path of the whole document.
    public var isRoot: Bool { components.isEmpty }

    public var description: String {
        var text = ""
        for component in components {
            switch component {
            case .key(let key):
                if !text.isEmpty { text += "." }
                text += key
            case .index(let index):
                text += "[\(index)]"
            }
        }
        return text.isEmpty ? "(document)" : text
    }
}
