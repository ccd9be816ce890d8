import Foundation
import TestSupport
import Testing

@Suite("budgetctl as a process")
struct ValidateCommandTests {
    @Test("validate accepts the fixture silently with exit 0")
    func validFixture() async throws {
        let result = try await runBudgetctl(["validate", try fixturePath()], environment: fixtureEnvironment)
        #expect(result.status == 0)
        #expect(result.stdout == "")
        #expect(result.stderr == "")
    }
}

@Suite("budgetctl validate on broken files")
struct ValidateFailureTests {
    func withTemporaryFile(_ text: String, _ body: (String) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("budgetctl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("config.yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        try await body(file.path)
    }

    @Test("a typo in a group name fails with exit 1 and the located message")
    func typo() async throws {
        let text = try String(contentsOfFile: try fixturePath(), encoding: .utf8)
            .replacingOccurrences(
                of: "    groups:\n      - name: signify-premium", with: "    groups:\n      - name: signify-premum")
        try await withTemporaryFile(text) { path in
            let result = try await runBudgetctl(["validate", path], environment: fixtureEnvironment)
            #expect(result.status == 1)
            #expect(result.stdout == "")
            #expect(
                result.stderr == """
                    \(path):69:15: consumers[1].groups[0].name: consumer group "signify-premum" is not defined
                    Error: 1 error found

                    """)
        }
    }

    @Test("standard input is read with -, and named <stdin>")
    func stdin() async throws {
        let result = try await runBudgetctl(
            ["validate", "-"], input: Data("_format_version: \"3.0\"\nservices: 5\n".utf8))
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("<stdin>:2:11: services: expected a list, found the number 5\n"))
    }

    @Test("a missing file and a directory are named, exit 1")
    func unreadable() async throws {
        let result = try await runBudgetctl(["validate", "/nonexistent/config.yaml", "/tmp"])
        #expect(result.status == 1)
        #expect(result.stderr == "/nonexistent/config.yaml: no such file\n/tmp: is a directory; name the YAML files\n")
    }

    @Test("a file over 16 MiB is refused without being read whole")
    func hugeFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("budgetctl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("huge.yaml").path
        // A sparse 200 MB file: it costs no disk, and reading it whole would cost 200 MB of memory.
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: 200_000_000)
        try handle.close()
        let result = try await runBudgetctl(["validate", path])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("\(path):1:1: file is 16777217 bytes, over the limit of 16777216 bytes"))
    }
}

@Suite("budgetctl's help and its man page")
struct HelpTests {
    @Test("--help lists the verbs that exist, each with a one-line purpose")
    func help() async throws {
        let result = try await runBudgetctl(["--help"])
        #expect(result.status == 0)
        #expect(
            result.stdout.contains("  validate                Check decK files offline (prints nothing when valid).\n"))
    }

    /// The `--flags` a help text lists, except --help.
    func flags(inHelp help: String) -> [Substring] {
        help.split(whereSeparator: { " \n,[]:.();".contains($0) })
            .filter { $0.hasPrefix("--") && $0 != "--help" }
    }

    func manPageMentions(_ page: String, flag: Substring) -> Bool {
        page.contains("Fl \\-\(flag.dropFirst(2))") || page.contains("Fl \(flag.dropFirst(1))")
    }

    @Test("every verb and flag in budgetctl's --help appears in budgetctl(1)")
    func manPageCoversHelp() async throws {
        let page = try String(contentsOf: packageRoot.appendingPathComponent("man/budgetctl.1"), encoding: .utf8)
        let verbs: [[String]] = [
            ["validate"], ["sync"], ["diff"], ["dump"], ["reset"], ["ping"], ["status"], ["get"], ["tag"], ["usage"],
            ["usage", "reset"],
        ]
        for verb in verbs {
            #expect(page.contains("Cm \(verb.last ?? "")"), "verb \(verb) missing from budgetctl.1")
            for flag in flags(inHelp: try await runBudgetctl(verb + ["--help"]).stdout) {
                #expect(manPageMentions(page, flag: flag), "\(flag) of \(verb) missing from budgetctl.1")
            }
        }
    }

    @Test("every flag in budget-proxyd's --help appears in budget-proxyd(8)")
    func proxydManPage() async throws {
        let page = try String(contentsOf: packageRoot.appendingPathComponent("man/budget-proxyd.8"), encoding: .utf8)
        let found = flags(inHelp: try await runBinary("budget-proxyd", ["--help"]).stdout)
        #expect(found.count >= 10)
        for flag in found {
            #expect(manPageMentions(page, flag: flag), "\(flag) missing from budget-proxyd.8")
        }
    }

    @Test("every flag in budget-controld's --help appears in budget-controld(8)")
    func controldManPage() async throws {
        let page = try String(contentsOf: packageRoot.appendingPathComponent("man/budget-controld.8"), encoding: .utf8)
        let found = flags(inHelp: try await runBinary("budget-controld", ["--help"]).stdout)
        #expect(found.count >= 8)
        for flag in found {
            #expect(manPageMentions(page, flag: flag), "\(flag) missing from budget-controld.8")
        }
    }

    @Test("every flag in bedrock-emulator's --help appears in bedrock-emulator(1)")
    func emulatorManPage() async throws {
        let page = try String(contentsOf: packageRoot.appendingPathComponent("man/bedrock-emulator.1"), encoding: .utf8)
        let help = try await runBinary("bedrock-emulator", ["--help"]).stdout
        let found = flags(inHelp: help)
        #expect(found.count >= 7)
        for flag in found {
            #expect(manPageMentions(page, flag: flag), "\(flag) missing from bedrock-emulator.1")
        }
    }

    @Test("the man pages pass mandoc -Tlint -Wwarning")
    func manLint() async throws {
        let pages = try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("man").path)
        #expect(!pages.isEmpty)
        for page in pages {
            let lint = try await runBinary(
                "/usr/bin/mandoc", ["-Tlint", "-Wwarning", packageRoot.appendingPathComponent("man/\(page)").path])
            #expect(lint.status == 0, "\(page): \(lint.stdout)\(lint.stderr)")
        }
    }
}
