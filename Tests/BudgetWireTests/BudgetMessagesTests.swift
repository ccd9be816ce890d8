import BudgetLedger
import BudgetWire
import Testing

@Suite("The binary reserve, commit and release messages")
struct BudgetMessagesTests {
    let key = LimitKey(plugin: "rl", provider: "bedrock", subject: "consumer:alice", windowSize: 86_400)

    @Test("reservations read back equal after encoding")
    func reserves() throws {
        let requests = [
            ReserveRequest(
                rules: [WindowRule(key: key, kind: .sliding, limit: 10_000)], enforcement: .soft, promptUnits: 12,
                unitsPerCompletionToken: 1, maxTokens: 4096),
            ReserveRequest(
                rules: [
                    WindowRule(key: key, kind: .fixed, limit: 0.5),
                    WindowRule(key: LimitKey(plugin: "rl", provider: "bedrock", subject: "group:g", windowSize: 60),
                        kind: .sliding, limit: 99),
                ],
                enforcement: .hard, promptUnits: 0.25, unitsPerCompletionToken: 0.000_015, maxTokens: 7),
        ]
        #expect(try BudgetMessages.decodeReserves(BudgetMessages.encode(reserves: requests)) == requests)
    }

    @Test("outcomes, admitted and refused, read back equal after encoding")
    func outcomes() throws {
        let windows = [WindowStatus(key: key, limit: 100, remaining: 40, reset: 1_700_000_000)]
        let outcomes: [ReserveOutcome] = [
            .admitted(id: 7, maxTokens: 512, windows: windows),
            .refused(windows: windows, retryAfter: 30, exceeded: [key]),
        ]
        #expect(try BudgetMessages.decodeOutcomes(BudgetMessages.encode(outcomes: outcomes)) == outcomes)
    }

    @Test("commits and releases read back equal after encoding")
    func commitsAndReleases() throws {
        let commits = [
            BudgetMessages.Commit(reservation: 3, charges: [Charge(key: key, kind: .sliding, units: 1234)]),
            BudgetMessages.Commit(reservation: UInt64.max, charges: []),
            BudgetMessages.Commit(
                reservation: 9, charges: [Charge(key: key, kind: .fixed, units: 1)],
                origin: CommitOrigin(source: UInt64.max, sequence: 1 << 40)),
        ]
        #expect(try BudgetMessages.decodeCommits(BudgetMessages.encode(commits: commits)) == commits)
        #expect(try BudgetMessages.decodeReleases(BudgetMessages.encode(releases: [1, 2, 3])) == [1, 2, 3])
        #expect(try BudgetMessages.decodeAck(BudgetMessages.encodeAck(count: 5)) == 5)
    }

    @Test("leases to renew read back equal, with the adopt flag; their encoded size is what the encoder writes")
    func renewals() throws {
        let leases = [
            Lease(id: 1 << 44 | 3, keys: [key, key], units: 4010),
            Lease(id: 7, keys: [], units: 0),
        ]
        for adopt in [true, false] {
            let bytes = BudgetMessages.encode(renewals: leases, adopt: adopt)
            let decoded = try BudgetMessages.decodeRenewals(bytes)
            #expect(decoded.leases == leases && decoded.adopt == adopt)
            #expect(bytes.count == 3 + leases.reduce(0) { $0 + BudgetMessages.encodedSize($1) })
            for length in 0..<bytes.count {
                #expect(throws: WireDecodingError.self) { try BudgetMessages.decodeRenewals(Array(bytes.prefix(length))) }
            }
        }
        let negative = BudgetMessages.encode(renewals: [Lease(id: 1, keys: [key], units: -1)], adopt: true)
        #expect(throws: WireDecodingError.self) { try BudgetMessages.decodeRenewals(negative) }
    }

    @Test("a truncated reservation is an error, not a crash")
    func truncated() {
        let bytes = BudgetMessages.encode(reserves: [
            ReserveRequest(
                rules: [WindowRule(key: key, kind: .sliding, limit: 1)], enforcement: .soft, promptUnits: 1,
                unitsPerCompletionToken: 1, maxTokens: 1)
        ])
        for length in 0..<bytes.count {
            #expect(throws: WireDecodingError.self) { try BudgetMessages.decodeReserves(Array(bytes.prefix(length))) }
        }
    }

    @Test("keys that are not ASCII read back equal; a string that is not UTF-8 is an error naming it")
    func strings() throws {
        let zoe = LimitKey(plugin: "rl", provider: "bedrock", subject: "consumer:zoë-日本", windowSize: 60)
        let commits = [BudgetMessages.Commit(reservation: 1, charges: [Charge(key: zoe, kind: .sliding, units: 1)])]
        #expect(try BudgetMessages.decodeCommits(BudgetMessages.encode(commits: commits)) == commits)

        // A lone continuation byte, a two-byte sequence cut short, a byte UTF-8 never uses, a three-byte one cut.
        let marked = LimitKey(plugin: "rl", provider: "bedrock", subject: "Q", windowSize: 60)
        for bad: [UInt8] in [[0x80], [0xC3], [0xFF], [0x61, 0xE6, 0x97]] {
            var bytes = BudgetMessages.encode(commits: [
                BudgetMessages.Commit(reservation: 1, charges: [Charge(key: marked, kind: .sliding, units: 1)])
            ])
            // The subject "Q" is the only Q in the payload: replace it, and fix its u16 length.
            let at = try #require(bytes.firstIndex(of: UInt8(ascii: "Q")))
            bytes.replaceSubrange(at..<at + 1, with: bad)
            bytes[at - 1] = UInt8(bad.count)
            let error = #expect(throws: WireDecodingError.self) { try BudgetMessages.decodeCommits(bytes) }
            #expect(error?.message == "a string is not UTF-8")
        }
    }

    @Test("a batch of three-window commits is cut by its encoded size, not only by count, and fits a frame")
    func commitBatchesFitAFrame() throws {
        // As budget-proxyd queues them while the control plane is away: a tier with three windows, long names.
        let keys = [60, 3600, 86_400].map {
            LimitKey(
                plugin: "ai-rate-limiting-advanced for consumer-group signify-enterprise", provider: "bedrock",
                subject: "consumer:signify-production", windowSize: $0)
        }
        let commit = BudgetMessages.Commit(
            reservation: 1 << 44 | 7, charges: keys.map { Charge(key: $0, kind: .sliding, units: 18) })
        #expect(BudgetMessages.encodedSize(commit) + 2 == BudgetMessages.encode(commits: [commit]).count)
        let queue = Array(repeating: commit, count: 10_000)
        let count = BudgetMessages.batchCount(queue, size: BudgetMessages.encodedSize)
        #expect(count > 0 && count < BudgetMessages.maxBatch)  // the count cap alone would overflow the frame
        let payload = BudgetMessages.encode(commits: Array(queue.prefix(count)))
        #expect(payload.count <= BudgetMessages.maxPayloadBytes)
        #expect(BudgetMessages.encode(commits: Array(queue.prefix(count + 1))).count > BudgetMessages.maxPayloadBytes)
        #expect(try BudgetMessages.decodeCommits(payload).count == count)
    }

    @Test("a reservation's encoded size is what the batch encoder writes; one too large for a frame gets 0")
    func reserveSizes() {
        let request = ReserveRequest(
            rules: [WindowRule(key: key, kind: .sliding, limit: 1)], enforcement: .soft, promptUnits: 1,
            unitsPerCompletionToken: 1, maxTokens: 1)
        #expect(BudgetMessages.encodedSize(request) + 2 == BudgetMessages.encode(reserves: [request]).count)
        let huge = LimitKey(
            plugin: String(repeating: "p", count: 60_000), provider: "bedrock",
            subject: String(repeating: "s", count: 60_000), windowSize: 60)
        let tooLarge = ReserveRequest(
            rules: Array(repeating: WindowRule(key: huge, kind: .sliding, limit: 1), count: 10), enforcement: .soft,
            promptUnits: 1, unitsPerCompletionToken: 1, maxTokens: 1)
        #expect(BudgetMessages.batchCount([tooLarge, request], size: BudgetMessages.encodedSize) == 0)
        #expect(BudgetMessages.batchCount([request, tooLarge], size: BudgetMessages.encodedSize) == 1)
    }
}
