package import BudgetConfig
import Foundation

/// Reading config inputs for any verb: files by path, `-` for standard input, each bounded.
package enum ConfigInputs {
    /// The bounds every verb reads files with.
    package static let limits = ConfigLimits.standard

    /// The limits in a sentence, for `--help`.
    package static var limitsSummary: String {
        "\(limits.maxFileBytes >> 20) MiB per file, \(limits.maxTotalBytes >> 20) MiB in all; "
            + "\(limits.maxNodes) YAML nodes once aliases are expanded; "
            + "nesting \(limits.maxDepth) levels deep, aliases included; "
            + "\(limits.maxDiagnostics) messages."
    }

    /// The bytes of each input, read no further than the size limit (so a huge file is refused, not loaded).
    /// - Throws: `AdminError.unreadableInput`, a line for each input that could not be read.
    package static func read(_ paths: [String]) throws(AdminError) -> [ConfigSource] {
        var sources: [ConfigSource] = []
        var problems: [String] = []
        var stdinUsed = false
        for path in paths {
            if path == "-" {
                guard !stdinUsed else {
                    problems.append("-: standard input can be read only once")
                    continue
                }
                stdinUsed = true
                sources.append(ConfigSource(name: "<stdin>", bytes: readBounded(FileHandle.standardInput)))
                continue
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                problems.append("\(path): no such file")
                continue
            }
            guard !isDirectory.boolValue else {
                problems.append("\(path): is a directory; name the YAML files")
                continue
            }
            guard let handle = FileHandle(forReadingAtPath: path) else {
                problems.append("\(path): cannot be read (permission denied?)")
                continue
            }
            defer { try? handle.close() }
            sources.append(ConfigSource(name: path, bytes: readBounded(handle)))
        }
        if !problems.isEmpty { throw .unreadableInput(problems) }
        return sources
    }

    /// Up to the file limit plus one byte, so the loader can tell "too large" without reading it all.
    private static func readBounded(_ handle: FileHandle) -> [UInt8] {
        var bytes: [UInt8] = []
        let cap = limits.maxFileBytes + 1
        while bytes.count < cap {
            guard let chunk = try? handle.read(upToCount: min(1 << 20, cap - bytes.count)), !chunk.isEmpty else {
                break
            }
            bytes += chunk
        }
        return bytes
    }
}
