/// One frame of the budget protocol (see budget-protocol(7)):
///
///     u32 length (of what follows) | u8 type | u32 request id | payload
///
/// All integers big-endian. Request ids let one connection carry many requests at once; replies may
/// come back in any order. Id 0 is for frames nobody asked for (snapshot and delta pushes).
public struct WireFrame: Sendable, Hashable {
    public var type: FrameType
    public var requestID: UInt32
    public var payload: [UInt8]

    public init(_ type: FrameType, requestID: UInt32, payload: [UInt8]) {
        self.type = type
        self.requestID = requestID
        self.payload = payload
    }

    /// Bytes of the header after the length field.
    public static let headerBytes = 5
}

/// Frame types. JSON payloads for hello, errors, admin requests and snapshots; a compact binary
/// encoding for the per-request budget calls.
public enum FrameType: UInt8, Sendable, Hashable, CaseIterable {
    case hello = 0x01
    case welcome = 0x02
    case error = 0x03
    case request = 0x10
    case response = 0x11
    case snapshot = 0x12
    /// The changes from one config version to the next (`ConfigDelta`), pushed instead of a whole snapshot.
    case snapshotDelta = 0x13
    case reserve = 0x20
    case reserveResult = 0x21
    case commit = 0x22
    case commitAck = 0x23
    case release = 0x24
    case releaseAck = 0x25
    case renew = 0x26
    case renewAck = 0x27
}

/// The protocol version this build speaks; the hello carries it and a mismatch is refused.
public enum WireProtocol {
    /// 2: entities in `EntityCodec` format 2 (their decK fields) rather than Foundation's synthesized Codable form.
    /// 3: commits carry their origin (commit stream and number) and holds are leases (`renew` frames).
    /// 4: a reservation's outcome may be `unavailable` (the fleet's Redis is away and the policy refuses).
    /// 5: after the first snapshot, a config change is pushed as a `snapshotDelta` (base version, new version and
    ///    the applied changes) rather than as the whole config.
    public static let version = 5
    /// Largest frame a client may send to the control plane's data-plane socket.
    public static let maxDataPlaneRequestBytes = 1 << 20
    /// Largest frame a client may send to the admin socket (a first sync of a large config is tens of MiB).
    public static let maxAdminRequestBytes = 128 << 20
    /// Largest frame the control plane sends (a snapshot or a dump of a large config).
    public static let maxServerFrameBytes = 512 << 20
}
