import Bedrock
import BudgetJSON
import NIOCore

/// What turns Bedrock's event-stream frames into the bytes a client of one format reads, for
/// `ProxyService.relay`: OpenAI chunks, Anthropic events, or Bedrock's own frames passed through.
protocol StreamRelaying {
    /// The bytes for the client for one frame (none for a frame the client does not see).
    mutating func translate(_ message: EventStreamMessage) -> [UInt8]
    /// Whether the stream's last frame has been seen.
    var isFinished: Bool { get }
    /// The bytes that end a stream Bedrock broke off (or that ended without its last frame).
    mutating func brokenOff() -> [UInt8]
    /// The bytes that end a stream with a frame that cannot be decoded.
    mutating func undecodable(_ error: EventStreamError) -> [UInt8]
}

extension ProxyService {
    /// Relays Bedrock's event stream to the client as its frames arrive, through `translator`, which keeps
    /// what the stream reported (usage, errors) for the charge. A stream that breaks off or cannot be decoded
    /// is ended in the client's format. Returns whether the client left before the end (before the first byte
    /// too): then Bedrock ran the call all the same, and the caller charges it as a stream its client left.
    func relay<Translator: StreamRelaying>(
        _ response: UpstreamResponse, through translator: inout Translator, headers: [(String, String)],
        sink: any ResponseSink
    ) async -> Bool {
        do {
            try await sink.start(status: 200, headers: headers, contentLength: nil)
        } catch {
            return true
        }
        var decoder = EventStreamDecoder()
        // What the frames of one read from Bedrock become goes to the client in one write: they arrived together,
        // so nothing waits longer, and a write (a flush and a system call) is a stream's largest cost per frame.
        var out: [UInt8] = []
        do {
            reading: for try await buffer in response.body {
                decoder.append(buffer.readableBytesView)
                while let message = try decoder.next() {
                    out += translator.translate(message)
                    if translator.isFinished { break }
                }
                // The stream's last bytes go with its end, in one flush.
                if translator.isFinished { break reading }
                if !out.isEmpty {
                    do {
                        try await sink.write(out)
                    } catch {
                        return true
                    }
                    out.removeAll(keepingCapacity: true)
                }
            }
            if translator.isFinished {
                do {
                    try await sink.finish(last: out)
                } catch {
                    return !out.isEmpty  // as when a write of the stream's bytes fails: the client left before them
                }
                return false
            }
            try? await sink.write(translator.brokenOff())
        } catch let error as EventStreamError {
            try? await sink.write(out + translator.undecodable(error))
        } catch {
            if !translator.isFinished { try? await sink.write(out + translator.brokenOff()) }
        }
        try? await sink.finish()
        return false
    }
}

extension ChatStreamTranslator: StreamRelaying {
    mutating func brokenOff() -> [UInt8] { finishWithoutMetadata() }

    mutating func undecodable(_ error: EventStreamError) -> [UInt8] {
        let body = OpenAIErrorBody.fromBedrock(status: 502, errorType: "EventStreamError", message: error.description)
        return Array("data: \(body.serialized)\n\n".utf8)
    }
}

extension AnthropicStreamTranslator: StreamRelaying {
    mutating func brokenOff() -> [UInt8] { finishWithoutStop() }

    mutating func undecodable(_ error: EventStreamError) -> [UInt8] {
        AnthropicErrorBody.event(status: 502, message: "EventStreamError: \(error)")
    }
}

/// Bedrock's own frames, passed through whole (each checked and re-encoded) while their usage is read.
struct PassthroughRelay: StreamRelaying {
    var reader: BedrockStreamUsage

    mutating func translate(_ message: EventStreamMessage) -> [UInt8] {
        reader.observe(message)
        return EventStreamEncoder.encode(message)
    }

    var isFinished: Bool { reader.isFinished }

    func brokenOff() -> [UInt8] { Self.exception("Bedrock's stream ended before its last event") }

    func undecodable(_ error: EventStreamError) -> [UInt8] {
        isFinished ? [] : Self.exception("Bedrock sent an event-stream frame that cannot be decoded: \(error)")
    }

    /// The `internalServerException` frame that ends a stream the proxy cannot relay to its end.
    private static func exception(_ message: String) -> [UInt8] {
        EventStreamEncoder.encode(
            .exception(
                "internalServerException",
                payload: JSONValue.object(["message": .string(message)]).serializedBytes))
    }
}
