import Foundation

let fixtureEnvironment = [
    "DECK_AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "DECK_AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
]

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// The package's root, found from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The user's fixture, as shipped with the tests.
func fixturePath() throws -> String {
    packageRoot.appendingPathComponent("Tests/BudgetConfigTests/Fixtures/kong-consumer-budgets.yaml").path
}

/// The `budgetctl` built beside this test bundle.
var budgetctlURL: URL {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("budgetctl")
}

/// Runs budgetctl to completion with `environment` added to a minimal one, feeding `input` on stdin.
func runBudgetctl(
    _ arguments: [String], environment: [String: String] = [:], input: Data? = nil,
    directory: URL? = nil
) throws -> ProcessResult {
    try runBinary("budgetctl", arguments, environment: environment, input: input, directory: directory)
}

/// Runs one of the package's executables, built beside this test bundle, to completion.
func runBinary(
    _ name: String, _ arguments: [String], environment: [String: String] = [:], input: Data? = nil,
    directory: URL? = nil
) throws -> ProcessResult {
    let process = Process()
    process.executableURL =
        name.hasPrefix("/")
        ? URL(fileURLWithPath: name) : budgetctlURL.deletingLastPathComponent().appendingPathComponent(name)
    process.arguments = arguments
    var env = ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()]
    env.merge(environment) { $1 }
    process.environment = env
    if let directory { process.currentDirectoryURL = directory }
    let stdout = Pipe()
    let stderr = Pipe()
    let stdin = Pipe()
    process.standardOutput = stdout
    process.standardError = stderr
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(input) }
    try stdin.fileHandleForWriting.close()
    // Read both pipes to the end before waiting, so a large output cannot block the child.
    let group = DispatchGroup()
    nonisolated(unsafe) var outData = Data()
    nonisolated(unsafe) var errData = Data()
    DispatchQueue.global().async(group: group) { outData = stdout.fileHandleForReading.readDataToEndOfFile() }
    DispatchQueue.global().async(group: group) { errData = stderr.fileHandleForReading.readDataToEndOfFile() }
    group.wait()
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self))
}
