/// Failures the emulator can be asked to inject, so that tests see what a real Bedrock does on a bad day.
///
/// Asked for per request with the `x-emulator-fault` header, with `[[emulator-fault:…]]` in the last user
/// message (which passes through a gateway untouched), or for every request with `--fault`.
/// Several may be combined with commas: `latency-200,throttle`.
package enum EmulatorFault: Sendable, Hashable {
    /// 429 `ThrottlingException`.
    case throttle
    /// 500 `InternalServerException`.
    case internalError
    /// 503 `ServiceUnavailableException`.
    case unavailable
    /// Wait this many milliseconds before answering (at most 60 s).
    case latency(milliseconds: Int)
    /// A streaming reply that stops after its first text delta with a `throttlingException` frame.
    case streamThrottle
    /// Close the connection without answering.
    case drop
    /// A streaming reply whose connection closes after its first text delta.
    case dropMidStream
    /// A streaming reply whose second text delta arrives with a byte changed (its message CRC no longer
    /// matches), as a mangled connection would deliver it; the stream ends there.
    case corruptMidStream

    /// The request header that names faults for that request alone.
    package static let headerName = "x-emulator-fault"
    static let markerPrefix = "[[emulator-fault:"

    /// The faults named in `text` (`throttle`, `error-500`, `error-503`, `latency-250`, `stream-throttle`,
    /// `drop`, `drop-mid-stream`, `corrupt-mid-stream`); nil when a name is not one of these.
    package static func parse(_ text: String) -> [EmulatorFault]? {
        var faults: [EmulatorFault] = []
        for name in text.split(separator: ",").map({ $0.trimmingCharacters() }) where !name.isEmpty {
            switch name {
            case "throttle": faults.append(.throttle)
            case "error-500", "500": faults.append(.internalError)
            case "error-503", "503": faults.append(.unavailable)
            case "stream-throttle": faults.append(.streamThrottle)
            case "drop": faults.append(.drop)
            case "drop-mid-stream": faults.append(.dropMidStream)
            case "corrupt-mid-stream": faults.append(.corruptMidStream)
            default:
                guard name.hasPrefix("latency-"), let milliseconds = Int(name.dropFirst("latency-".count)),
                    (0...60_000).contains(milliseconds)
                else { return nil }
                faults.append(.latency(milliseconds: milliseconds))
            }
        }
        return faults
    }

    /// Faults named by a `[[emulator-fault:…]]` marker in `text`.
    static func fromMarker(in text: String) -> [EmulatorFault] {
        guard let start = text.firstRange(of: markerPrefix),
            let end = text[start.upperBound...].firstRange(of: "]]")
        else { return [] }
        return parse(String(text[start.upperBound..<end.lowerBound])) ?? []
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
