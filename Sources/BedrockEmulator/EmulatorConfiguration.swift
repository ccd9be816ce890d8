package import Bedrock

/// How an emulator instance behaves.
package struct EmulatorConfiguration: Sendable {
    /// Access keys accepted; by default the AWS documentation pair.
    package var credentials: [AWSCredentials] = [.documentationExample]
    /// When false, any request is accepted without checking its signature (for benchmarks).
    package var verifySignatures = true
    /// Model ids served; others get Bedrock's "invalid model identifier" error.
    package var models: [String] = [ClaudeHaiku.modelID]
    /// Faults applied to every request that names none of its own.
    package var defaultFaults: [EmulatorFault] = []
    /// Pause between streamed frames, in milliseconds.
    package var streamFrameDelayMilliseconds = 0
    /// Largest request body, in bytes: Bedrock's 20 MB.
    package var maxBodyBytes = 20_000_000
    /// Largest `maxTokens` the model accepts.
    package var modelMaxTokens = ClaudeHaiku.maxOutputTokens

    /// The defaults: the documentation key pair, signatures checked, Claude 3 Haiku, no faults.
    package init() {}
}
