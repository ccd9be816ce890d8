public import Bedrock

/// How an emulator instance behaves.
public struct EmulatorConfiguration: Sendable {
    /// Access keys accepted; by default the AWS documentation pair.
    public var credentials: [AWSCredentials] = [.documentationExample]
    /// When false, any request is accepted without checking its signature (for benchmarks).
    public var verifySignatures = true
    /// Model ids served; others get Bedrock's "invalid model identifier" error.
    public var models: [String] = [ClaudeHaiku.modelID]
    /// Faults applied to every request that names none of its own.
    public var defaultFaults: [EmulatorFault] = []
    /// Pause between streamed frames, in milliseconds.
    public var streamFrameDelayMilliseconds = 0
    /// Largest request body, in bytes: Bedrock's 20 MB.
    public var maxBodyBytes = 20_000_000
    /// Largest `maxTokens` the model accepts.
    public var modelMaxTokens = ClaudeHaiku.maxOutputTokens

    /// The defaults: the documentation key pair, signatures checked, Claude 3 Haiku, no faults.
    public init() {}
}
