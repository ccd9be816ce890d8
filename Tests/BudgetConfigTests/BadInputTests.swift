import BudgetConfig
import Foundation
import Testing

@Suite("Bad input: a clear, located error within bounded time and memory")
struct BadInputTests {
    @Test("text that is not YAML")
    func notYAML() {
        #expect(
            load("a: [1, 2\nb: }").errorLines == [
                "config.yaml:2:2: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence)"
            ])
    }

    @Test("a document that is a list, a scalar, or empty")
    func wrongShape() {
        #expect(
            load("- a\n- b\n").errorLines.first?.hasPrefix(
                "config.yaml:1:1: the document is a list; a decK file is a mapping") == true)
        #expect(load("hello\n").errorLines.first?.hasPrefix("config.yaml:1:1: the document is a string;") == true)
        #expect(load("").errorLines.first?.hasPrefix("config.yaml:1:1: the file holds no YAML document") == true)
    }

    @Test("an alias bomb is refused before it expands")
    func aliasBomb() {
        var lines = ["_format_version: \"3.0\"", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        for level in 1...9 {
            let refs = Array(repeating: "*a\(level - 1)", count: 9).joined(separator: ", ")
            lines.append("a\(level): &a\(level) [\(refs)]")
        }
        let clock = ContinuousClock()
        var loaded: LoadedConfig?
        let elapsed = clock.measure { loaded = load(lines.joined(separator: "\n")) }
        #expect(loaded?.errorLines.count == 1)
        #expect(loaded?.errorLines.first?.contains("document expands to more than 2000000 YAML nodes") == true)
        // Not a timing assertion on speed: a guard that the bomb was not expanded (9^10 nodes would take hours).
        #expect(elapsed < .seconds(60))
    }

    @Test("anchors and aliases reuse a value, quoted scalars stay strings, tags are honoured")
    func anchorsAndAliases() {
        let loaded = load(
            """
            _format_version: "3.0"
            consumers:
              - username: alice
                tags: &shared [team-a, "1"]
              - username: bob
                tags: *shared
              - username: !!str 123
            """)
        #expect(loaded.errorLines == [])
        let tags = Dictionary(uniqueKeysWithValues: loaded.state.consumers.map { ($0.name, $0.tags) })
        #expect(tags == ["alice": ["1", "team-a"], "bob": ["1", "team-a"], "123": []])
    }

    @Test("YAML that cannot be composed: an unknown alias, a non-scalar key, two documents, deep nesting")
    func composeErrors() {
        #expect(
            load("_format_version: \"3.0\"\nconsumers: *nowhere\n").errorLines == [
                "config.yaml:2:12: invalid YAML: found undefined alias"
            ])
        #expect(
            load("_format_version: \"3.0\"\nconsumers: &self [*self]\n").errorLines == [
                "config.yaml:2:19: invalid YAML: found undefined alias"
            ])
        #expect(
            load("_format_version: \"3.0\"\n? [a, b]\n: 1\n").errorLines == [
                "config.yaml:2:3: mapping keys must be plain strings, not a list"
            ])
        #expect(
            load("_format_version: \"3.0\"\n---\n_format_version: \"3.0\"\n").errorLines == [
                "config.yaml:2:1: invalid YAML: but found another document (expected a single document in the stream)"
            ])
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(
            load("_format_version: \"3.0\"\nx: \(deep)\n").errorLines == [
                "config.yaml:2:68: nesting is deeper than 64 levels"
            ])
        // The same depth reached through an alias of a nested value is refused too.
        let half = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        let nested = String(repeating: "[", count: 30) + "*h" + String(repeating: "]", count: 30)
        #expect(
            load("_format_version: \"3.0\"\nh: &h \(half)\nx: \(nested)\n").errorLines == [
                "config.yaml:3:34: nesting is deeper than 64 levels"
            ])
        #expect(
            load("_format_version: \"3.0\"\nconsumers: []\nservices: []\nconsumers: [] \n").errorLines == [
                "config.yaml:4:1: duplicate key \"consumers\" in one mapping"
            ])
    }

    @Test("the node limit counts a node once per use and a mapping pair once, not its key")
    func nodeCounting() {
        // a is 1 + 10 pairs × 2 = 21 nodes, b is 1 + 100 × 21 = 2,101, and c is 1 + uses × 2,101: with 900 uses the
        // document is 1,893,027 nodes, under the limit of 2,000,000; with 960, 2,019,087, over it. (Counting keys
        // too refused ordinary files of 92,000 consumers.)
        func document(uses: Int) -> String {
            let keys = (0..<10).map { "k\($0): v" }.joined(separator: ", ")
            return """
                a: &a {\(keys)}
                b: &b [\(Array(repeating: "*a", count: 100).joined(separator: ", "))]
                c: [\(Array(repeating: "*b", count: uses).joined(separator: ", "))]
                """
        }
        let under = load(document(uses: 900)).errorLines
        #expect(!under.contains { $0.contains("YAML nodes") })
        #expect(under.contains { $0.contains("unknown field \"a\"") })
        let over = load(document(uses: 960)).errorLines
        #expect(over.count == 1)
        #expect(over.first?.contains("document expands to more than 2000000 YAML nodes") == true)
    }

    @Test("a key repeated through an alias is located where the alias is written")
    func duplicateKeyThroughAlias() {
        #expect(
            load("_format_version: \"3.0\"\nconsumers: []\nx: &n consumers\n*n : []\n").errorLines == [
                "config.yaml:4:1: duplicate key \"consumers\" in one mapping"
            ])
    }

    @Test("a NUL character written as an escape is refused where it is, in a value or a key")
    func nulCharacter() {
        #expect(
            load("_format_version: \"3.0\"\nconsumers:\n  - username: \"a\\0b\"\n").errorLines == [
                "config.yaml:3:15: a string holds a NUL character (\\0), which no name, key or setting may contain"
            ])
        #expect(
            load("_format_version: \"3.0\"\n\"x\\0\": 1\n").errorLines == [
                "config.yaml:2:1: a string holds a NUL character (\\0), which no name, key or setting may contain"
            ])
    }

    @Test("a control character libyaml refuses is located at its line and column")
    func controlCharacter() {
        #expect(
            load("_format_version: \"3.0\"\nconsumers:\n  - username: a\u{7}b\n").errorLines.first?.hasPrefix(
                "config.yaml:3:16: invalid YAML input: control characters are not allowed") == true)
    }

    @Test("a file over the size limit is refused without parsing")
    func tooLarge() {
        var limits = ConfigLimits()
        limits.maxFileBytes = 1024
        let big = "_format_version: \"3.0\"\n# " + String(repeating: "x", count: 2000)
        let loaded = load(big, limits: limits)
        #expect(loaded.errorLines == ["config.yaml:1:1: file is 2025 bytes, over the limit of 1024 bytes"])
    }

    @Test("nesting deeper than the limit is refused")
    func deepNesting() {
        let deep =
            "_format_version: \"3.0\"\nx: " + String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        let loaded = load(deep)
        #expect(loaded.errorLines.count == 1)
        #expect(loaded.errorLines.first?.contains("nesting is deeper than 64 levels") == true)
    }

    @Test("invalid UTF-8 is located at the first bad byte")
    func invalidUTF8() {
        var bytes = Array("_format_version: \"3.0\"\nconsumers:\n- username: ab".utf8)
        bytes += [0xC3, 0x28]
        let loaded = ConfigLoader.load([ConfigSource(name: "bad.yaml", bytes: bytes)], environment: [:])
        #expect(loaded.errorLines == ["bad.yaml:3:15: invalid UTF-8 (byte 0x28); config files must be UTF-8 text"])
    }

    @Test("a tab-indented file gets a hint about tabs")
    func tabs() {
        #expect(
            load("_format_version: \"3.0\"\nservices:\n\t- name: x\n").errorLines == [
                "config.yaml:3:1: invalid YAML: found character that cannot start any token (while scanning for the next "
                    + "token); tabs cannot indent YAML, use spaces"
            ])
    }

    @Test("a duplicated key in one mapping")
    func duplicateKey() {
        #expect(
            load("_format_version: \"3.0\"\nconsumers: []\nconsumers: []\n").errorLines.first?
                .contains("duplicate key \"consumers\" in one mapping") == true)
    }

    @Test("wrong types are named with what was found")
    func wrongTypes() {
        let loaded = load(
            """
            _format_version: "3.0"
            services: {name: x}
            consumers:
              - username: [a, b]
              - username: bob
                tags: yes
            """)
        #expect(
            loaded.errorLines == [
                "config.yaml:2:11: services: expected a list, found a mapping",
                "config.yaml:4:5: consumers[0]: a consumer needs a username or a custom_id",
                "config.yaml:4:15: consumers[0].username: expected a string, found a list",
                "config.yaml:6:11: consumers[1].tags: expected a list, found the boolean yes",
            ])
    }

    @Test("problems past the reporting limit are counted, not printed")
    func manyProblems() {
        let consumers = (0..<600).map { "  - {username: u\($0), bogus: 1}" }.joined(separator: "\n")
        let loaded = load("_format_version: \"3.0\"\nconsumers:\n" + consumers)
        #expect(loaded.diagnostics.diagnostics.count == 500)
        #expect(loaded.diagnostics.suppressed == 100)
        #expect(loaded.diagnostics.rendered.last == "… and 100 more problems not shown")
    }
}
