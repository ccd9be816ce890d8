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
        ]
        #expect(try BudgetMessages.decodeCommits(BudgetMessages.encode(commits: commits)) == commits)
        #expect(try BudgetMessages.decodeReleases(BudgetMessages.encode(releases: [1, 2, 3])) == [1, 2, 3])
        #expect(try BudgetMessages.decodeAck(BudgetMessages.encodeAck(count: 5)) == 5)
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
}
