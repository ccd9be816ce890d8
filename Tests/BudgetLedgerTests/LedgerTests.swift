import BudgetLedger
import Testing

@Suite("The budget ledger")
struct LedgerTests {
    let day = LimitKey(plugin: "p", provider: "bedrock", subject: "consumer:dev", windowSize: 86400)
    let minute = LimitKey(plugin: "p", provider: "bedrock", subject: "consumer:dev", windowSize: 60)
    let t0: Int64 = 1_780_000_000 - 1_780_000_000 % 86400  // a UTC midnight

    func request(_ rules: [WindowRule], _ enforcement: Enforcement = .soft, prompt: Double = 10, maxTokens: Int = 100)
        -> ReserveRequest
    {
        ReserveRequest(
            rules: rules, enforcement: enforcement, promptUnits: prompt, unitsPerCompletionToken: 1,
            maxTokens: maxTokens)
    }

    func admittedID(_ outcome: ReserveOutcome) -> UInt64? {
        if case .admitted(let id, _, _) = outcome { return id }
        return nil
    }

    @Test("hard mode with a tiny price and a large budget admits the request's own max_tokens, no overflow")
    func hardModeTinyPrice() throws {
        var ledger = Ledger()
        let rule = WindowRule(key: day, kind: .sliding, limit: 1e12)
        let outcome = ledger.reserve(
            ReserveRequest(
                rules: [rule], enforcement: .hard, promptUnits: 1e-12, unitsPerCompletionToken: 1.5e-14,
                maxTokens: 4096),
            now: t0)
        guard case .admitted(_, let allowed, _) = outcome else {
            Issue.record("should be admitted: \(outcome)")
            return
        }
        #expect(allowed == 4096)
    }

    @Test("the first request on an unused window is told when its own tokens come back, not 'now'")
    func firstResetIsInTheFuture() throws {
        var ledger = Ledger()
        let rule = WindowRule(key: day, kind: .sliding, limit: 10_000)
        let now = t0 + 3600 * 5 + 17
        guard case .admitted(_, _, let windows) = ledger.reserve(request([rule]), now: now) else {
            Issue.record("should be admitted")
            return
        }
        // A sliding day in minute buckets: the charge made now counts until the end of its minute plus a day.
        #expect(windows.first?.reset == t0 + 3600 * 5 + 60 + 86400)
    }

    @Test("ids of two boots never meet: an earlier boot's commit charges its usage and releases no hold")
    func idsAcrossBoots() throws {
        let rule = WindowRule(key: day, kind: .sliding, limit: 10_000)
        var before = Ledger(boot: 1)
        var after = Ledger(boot: 2)
        let old = try #require(admittedID(before.reserve(request([rule]), now: t0)))
        let new = try #require(admittedID(after.reserve(request([rule]), now: t0)))
        #expect(old != new && old != 0 && new != 0)
        #expect(after.inFlight(day) == 110)
        // The request admitted before the restart finishes and commits to the restarted control plane.
        after.commit(id: old, charges: [Charge(key: day, kind: .sliding, units: 42)], now: t0 + 5)
        #expect(after.inFlight(day) == 110)  // the new request's hold stays
        #expect(after.used(day, now: t0 + 5) == 42)  // and the usage counts, once
        #expect(after.reservations.keys.contains(new))
    }

    @Test("a sliding day gives tokens back 24 hours after they were spent, not at midnight")
    func slidingDay() {
        var ledger = Ledger()
        let rule = WindowRule(key: day, kind: .sliding, limit: 1000)
        ledger.apply(Charge(key: day, kind: .sliding, units: 600), now: t0 + 3600 * 20)  // 20:00
        ledger.apply(Charge(key: day, kind: .sliding, units: 400), now: t0 + 3600 * 23)  // 23:00
        #expect(ledger.used(day, now: t0 + 86400 + 60) == 1000)  // just after midnight: still spent
        guard case .refused(let windows, let retryAfter, _) = ledger.reserve(request([rule]), now: t0 + 86400 + 60)
        else {
            Issue.record("should be refused")
            return
        }
        // The 20:00 charge comes back at 20:01 the next day (end of its minute bucket + 24 h).
        #expect(windows.first?.reset == t0 + 3600 * 20 + 60 + 86400)
        #expect(Int64(retryAfter) == t0 + 3600 * 20 + 60 + 86400 - (t0 + 86400 + 60))
        #expect(ledger.used(day, now: t0 + 86400 + 3600 * 20 + 59) == 1000)  // never early
        #expect(ledger.used(day, now: t0 + 86400 + 3600 * 20 + 60) == 400)
        #expect(admittedID(ledger.reserve(request([rule]), now: t0 + 86400 + 3600 * 20 + 60)) != nil)
    }

    @Test("a fixed window resets at the epoch-aligned boundary")
    func fixedWindow() {
        var ledger = Ledger()
        ledger.apply(Charge(key: minute, kind: .fixed, units: 50), now: t0 + 59)
        #expect(ledger.used(minute, now: t0 + 59) == 50)
        #expect(ledger.used(minute, now: t0 + 60) == 0)
        ledger.apply(Charge(key: minute, kind: .fixed, units: 5), now: t0 + 61)
        let rule = WindowRule(key: minute, kind: .fixed, limit: 5)
        guard case .refused(let windows, let retryAfter, _) = ledger.reserve(request([rule]), now: t0 + 70) else {
            Issue.record("should be refused")
            return
        }
        #expect(windows.first?.reset == t0 + 120 && retryAfter == 50)
    }

    @Test("soft: in-flight reservations count, so concurrency cannot multiply the overshoot")
    func softCountsInFlight() {
        var ledger = Ledger()
        let rule = WindowRule(key: day, kind: .sliding, limit: 250)
        // Each request may cost 10 + 100 = 110 units.
        let first = admittedID(ledger.reserve(request([rule]), now: t0))
        let second = admittedID(ledger.reserve(request([rule]), now: t0))
        let third = admittedID(ledger.reserve(request([rule]), now: t0))
        #expect(first != nil && second != nil && third != nil)  // 0, 110, 220 held: each below 250 when admitted
        #expect(admittedID(ledger.reserve(request([rule]), now: t0)) == nil)  // 330 held
        #expect(ledger.inFlight(day) == 330)
        ledger.commit(id: first ?? 0, charges: [Charge(key: day, kind: .sliding, units: 15)], now: t0 + 1)
        #expect(ledger.inFlight(day) == 220 && ledger.used(day, now: t0 + 1) == 15)
        ledger.release(id: second ?? 0, now: t0 + 1)
        #expect(ledger.inFlight(day) == 110)
    }

    @Test("hard: max_tokens is clamped to what remains and a prompt that does not fit is refused")
    func hardClamps() {
        var ledger = Ledger()
        let rule = WindowRule(key: day, kind: .sliding, limit: 100)
        ledger.apply(Charge(key: day, kind: .sliding, units: 40), now: t0)
        guard
            case .admitted(_, let maxTokens, _) = ledger.reserve(
                request([rule], .hard, prompt: 10, maxTokens: 4096), now: t0)
        else {
            Issue.record("should be admitted")
            return
        }
        #expect(maxTokens == 50)  // 100 - 40 - 10
        #expect(ledger.inFlight(day) == 60)
        #expect(admittedID(ledger.reserve(request([rule], .hard, prompt: 1, maxTokens: 10), now: t0)) == nil)
    }

    @Test("every window must have room; the refusal names the windows that do not")
    func multipleWindows() {
        var ledger = Ledger()
        let rules = [
            WindowRule(key: minute, kind: .sliding, limit: 100), WindowRule(key: day, kind: .sliding, limit: 10_000),
        ]
        ledger.apply(Charge(key: minute, kind: .sliding, units: 100), now: t0)
        guard case .refused(_, _, let exceeded) = ledger.reserve(request(rules), now: t0 + 1) else {
            Issue.record("should be refused")
            return
        }
        #expect(exceeded == [minute])
    }

    @Test("reservations expire, so a dead data plane cannot pin a budget")
    func expiry() {
        var ledger = Ledger()
        let rule = WindowRule(key: day, kind: .sliding, limit: 100)
        #expect(admittedID(ledger.reserve(request([rule], maxTokens: 200), now: t0)) != nil)
        #expect(admittedID(ledger.reserve(request([rule]), now: t0 + 599)) == nil)
        #expect(admittedID(ledger.reserve(request([rule]), now: t0 + 600)) != nil)
    }

    @Test("a commit for an unknown reservation still charges its usage")
    func unknownCommit() {
        var ledger = Ledger()
        ledger.commit(id: 999, charges: [Charge(key: day, kind: .sliding, units: 7)], now: t0)
        #expect(ledger.used(day, now: t0) == 7)
    }

    @Test("a clock stepping back frees nothing and breaks nothing")
    func clockBack() {
        var ledger = Ledger()
        ledger.apply(Charge(key: minute, kind: .sliding, units: 30), now: t0 + 1000)
        #expect(ledger.used(minute, now: t0 + 1000 - 86400) == 30)
        ledger.apply(Charge(key: minute, kind: .sliding, units: 5), now: t0)
        #expect(ledger.used(minute, now: t0) == 35)
        #expect(ledger.used(minute, now: t0 + 1000 + 61) == 0)
    }

    @Test("the cost strategy works in dollars: prompt and completion priced apart")
    func cost() {
        var ledger = Ledger()
        let rule = WindowRule(key: day, kind: .sliding, limit: 0.01)  // one cent a day
        let pricing = ReserveRequest(
            rules: [rule], enforcement: .hard, promptUnits: 1000 * 0.25 / 1e6,
            unitsPerCompletionToken: 1.25 / 1e6, maxTokens: 4096)
        guard case .admitted(let id, let maxTokens, _) = ledger.reserve(pricing, now: t0) else {
            Issue.record("should be admitted")
            return
        }
        #expect(maxTokens == 4096)  // 4096 completion tokens cost $0.00512
        ledger.commit(id: id, charges: [Charge(key: day, kind: .sliding, units: 0.009)], now: t0)
        guard case .admitted(_, let clamped, _) = ledger.reserve(pricing, now: t0) else {
            Issue.record("should be admitted")
            return
        }
        #expect(clamped < 4096 && clamped > 0)
    }
}
