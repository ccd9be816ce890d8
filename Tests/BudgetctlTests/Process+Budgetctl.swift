import Foundation
import TestSupport

let fixtureEnvironment = [
    "DECK_AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "DECK_AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
]

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
) async throws -> ProcessResult {
    try await runBinary("budgetctl", arguments, environment: environment, input: input, directory: directory)
}

/// Runs one of the package's executables, built beside this test bundle (or the one at an absolute path), to
/// completion, off Swift's cooperative pool.
func runBinary(
    _ name: String, _ arguments: [String], environment: [String: String] = [:], input: Data? = nil,
    directory: URL? = nil
) async throws -> ProcessResult {
    let executable =
        name.hasPrefix("/")
        ? URL(fileURLWithPath: name) : budgetctlURL.deletingLastPathComponent().appendingPathComponent(name)
    var env = ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()]
    env.merge(environment) { $1 }
    return try await runProcess(executable, arguments, environment: env, input: input, directory: directory)
}
