import BudgetConfig
import Foundation

/// The variables the user's fixture reads.
let fixtureEnvironment = [
    "DECK_AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "DECK_AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
]

/// The user's fixture, as shipped with the config tests.
func fixturePath() throws -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("BudgetConfigTests/Fixtures/kong-consumer-budgets.yaml").path
}

/// The fixture's config state.
func fixtureState() throws -> ConfigState {
    ConfigLoader.load(
        [ConfigSource(name: "fixture", text: try String(contentsOfFile: try fixturePath(), encoding: .utf8))],
        environment: fixtureEnvironment
    ).state
}

/// A new empty directory under the temporary directory, removed when `body` returns.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try await body(directory.path)
}
