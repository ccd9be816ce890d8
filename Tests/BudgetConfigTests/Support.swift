import BudgetConfig
import Foundation

/// The environment the fixture needs.
let fixtureEnvironment = [
    "DECK_AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "DECK_AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
]

func fixtureText(_ name: String = "kong-consumer-budgets.yaml") throws -> String {
    guard let url = Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil) else {
        throw CocoaError(.fileNoSuchFile)
    }
    return try String(contentsOf: url, encoding: .utf8)
}

/// Loads one in-memory file named `config.yaml`.
func load(
    _ text: String, environment: [String: String] = fixtureEnvironment,
    limits: ConfigLimits = .standard
) -> LoadedConfig {
    ConfigLoader.load([ConfigSource(name: "config.yaml", text: text)], environment: environment, limits: limits)
}

extension LoadedConfig {
    var errorLines: [String] { diagnostics.sorted.filter { $0.severity == .error }.map(\.description) }
    var warningLines: [String] { diagnostics.sorted.filter { $0.severity == .warning }.map(\.description) }
}

/// A minimal valid file with one AI route; `extra` is appended at the top level.
func minimalFile(_ extra: String = "", rateLimitConfig: String? = nil) -> String {
    var text = """
        _format_version: "3.0"
        services:
          - name: llm
            host: bedrock-runtime.us-east-1.amazonaws.com
            routes:
              - name: chat
                paths: [/ai/budget]
                plugins:
                  - name: key-auth
                  - name: ai-proxy
                    config:
                      route_type: llm/v1/chat
                      model:
                        provider: bedrock
                        name: anthropic.claude-3-haiku-20240307-v1:0

        """
    if let rateLimitConfig {
        text += """
            plugins:
              - name: ai-rate-limiting-advanced
                config:
            \(rateLimitConfig.split(separator: "\n", omittingEmptySubsequences: false).map { "      " + $0 }.joined(separator: "\n"))

            """
    }
    return text + extra
}
