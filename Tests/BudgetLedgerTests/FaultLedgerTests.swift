import BudgetLedger
import Testing

/// The ledger's side of the fault guarantees: resends, leases across restarts, window-type changes, clock jumps.
@Suite("The ledger through faults")
struct FaultLedgerTests {
    let day = LimitKey(plugin: "p", provider: "bedrock", subject: "consumer:dev", windowSize: 86400)
    let t0: Int64 = 1_780_000_000 - 1_780_000_000 % 86400

    func request(_ rule: WindowRule, _ enforcement: Enforcement = .hard, prompt: Double = 10, maxTokens: Int = 100)
        -> ReserveRequest
    {
        ReserveRequest(
            rules: [rule], enforcement: enforcement, promptUnits: prompt, unitsPerCompletionToken: 1,
            maxTokens: maxTokens)
    }

    func admitted(_ outcome: ReserveOutcome) -> (id: UInt64, maxTokens: Int)? {
        if case .admitted(let id, let maxTokens, _) = outcome { return (id, maxTokens) }
        return nil
    }

    @Test("a commit sent again from the same stream is charged once; an older number is a resend too")
    func resendChargedOnce() {
        var ledger = Ledger()
        let charge = [Charge(key: day, kind: .sliding, units: 40)]
        let first = ledger.commit(id: 7, origin: CommitOrigin(source: 99, sequence: 5), charges: charge, now: t0)
        let again = ledger.commit(id: 7, origin: CommitOrigin(source: 99, sequence: 5), charges: charge, now: t0 + 1)
        let older = ledger.commit(id: 6, origin: CommitOrigin(source: 99, sequence: 4), charges: charge, now: t0 + 1)
        #expect(first.applied && !again.applied && !older.applied)
        #expect(again.buckets.isEmpty && older.buckets.isEmpty)
        #expect(ledger.used(day, now: t0 + 2) == 40)
        // Another stream, or no identity, is not affected by stream 99's mark.
        ledger.commit(id: 8, origin: CommitOrigin(source: 100, sequence: 1), charges: charge, now: t0 + 2)
        ledger.commit(id: 9, charges: charge, now: t0 + 2)
        ledger.commit(id: 9, charges: charge, now: t0 + 2)
        #expect(ledger.used(day, now: t0 + 2) == 160)
        #expect(ledger.commitMarks[99]?.sequence == 5)
    }

    @Test("a stored mark, loaded after a restart, recognises the resend")
    func markSurvivesRestart() {
        var restarted = Ledger(boot: 2)
        restarted.load(mark: CommitMark(source: 99, sequence: 12, seenAt: t0))
        let resend = restarted.commit(
            id: 1, origin: CommitOrigin(source: 99, sequence: 12), charges: [Charge(key: day, kind: .sliding, units: 9)],
            now: t0 + 10)
        #expect(!resend.applied)
        #expect(restarted.used(day, now: t0 + 10) == 0)
        restarted.forgetMarks(seenBefore: t0 + 1)
        #expect(restarted.commitMarks.isEmpty)
    }

    @Test("a renewed lease outlives the reservation lifetime; an unrenewed one expires")
    func leasesRenew() throws {
        var ledger = Ledger()
        ledger.reservationLifetime = 10
        let rule = WindowRule(key: day, kind: .sliding, limit: 1000)
        let renewed = try #require(admitted(ledger.reserve(request(rule), now: t0)))
        let forgotten = try #require(admitted(ledger.reserve(request(rule), now: t0)))
        for second in stride(from: t0 + 3, through: t0 + 30, by: 3) {
            ledger.renew([Lease(id: renewed.id, keys: [day], units: 110)], adopt: false, now: second)
            ledger.expireReservations(now: second)
        }
        #expect(ledger.reservations[renewed.id] != nil)
        #expect(ledger.reservations[forgotten.id] == nil)
        #expect(ledger.inFlight(day) == 110)
    }

    @Test("past its most reservations the ledger answers unavailable, until one is committed, released or expired")
    func reservationsBounded() throws {
        var ledger = Ledger()
        ledger.maxReservations = 3
        ledger.reservationLifetime = 10
        let rule = WindowRule(key: day, kind: .sliding, limit: 1_000_000)
        let first = try #require(admitted(ledger.reserve(request(rule), now: t0)))
        _ = try #require(admitted(ledger.reserve(request(rule), now: t0)))
        _ = try #require(admitted(ledger.reserve(request(rule), now: t0 + 1)))
        guard case .unavailable(let reason) = ledger.reserve(request(rule), now: t0 + 1) else {
            Issue.record("a fourth reservation was admitted")
            return
        }
        #expect(reason.contains("holds 3 reservations"))
        #expect(ledger.reservations.count == 3 && ledger.inFlight(day) == 3 * 110)
        ledger.commit(id: first.id, charges: [Charge(key: day, kind: .sliding, units: 5)], now: t0 + 2)
        _ = try #require(admitted(ledger.reserve(request(rule), now: t0 + 2)))
        #expect(ledger.reserve(request(rule), now: t0 + 3) == .unavailable(reason: reason))
        // The one left of those made at t0 expires at t0 + 10: room again.
        _ = try #require(admitted(ledger.reserve(request(rule), now: t0 + 10)))
        #expect(ledger.reservations.count == 3)
    }

    @Test("holds expire each at its own time, however they were made, renewed or adopted, and in whatever order")
    func expiriesInterleaved() throws {
        var ledger = Ledger(boot: 2)
        ledger.reservationLifetime = 10
        let rule = WindowRule(key: day, kind: .sliding, limit: 1_000_000)
        let early = try #require(admitted(ledger.reserve(request(rule), now: t0)))  // until t0 + 10
        let late = try #require(admitted(ledger.reserve(request(rule), now: t0 + 5)))  // until t0 + 15
        ledger.expireReservations(now: t0 + 9)
        #expect(ledger.reservations.count == 2)
        ledger.expireReservations(now: t0 + 10)
        #expect(ledger.reservations[early.id] == nil && ledger.reservations[late.id] != nil)
        // Renewed at t0 + 12: until t0 + 22. An adopted hold of an earlier run at t0 + 13: until t0 + 23.
        ledger.renew([Lease(id: late.id, keys: [day], units: 110)], adopt: false, now: t0 + 12)
        let adopted = Lease(id: 1 << 44 | 9, keys: [day], units: 50)
        #expect(ledger.renew([adopted], adopt: true, now: t0 + 13) == 1)
        ledger.expireReservations(now: t0 + 21)
        #expect(ledger.reservations.count == 2)
        ledger.expireReservations(now: t0 + 22)
        #expect(ledger.reservations[late.id] == nil && ledger.reservations[adopted.id] != nil)
        #expect(ledger.inFlight(day) == 50)
        // A reservation, made while another is due sooner, does not hide that one's expiry.
        let third = try #require(admitted(ledger.reserve(request(rule), now: t0 + 22)))  // until t0 + 32
        ledger.expireReservations(now: t0 + 23)
        #expect(ledger.reservations[adopted.id] == nil && ledger.reservations[third.id] != nil)
        ledger.expireReservations(now: t0 + 32)
        #expect(ledger.reservations.isEmpty && ledger.inFlight(day) == 0)
    }

    @Test("after a restart, adopted holds keep a hard budget: what was in flight is not admitted twice")
    func adoptAfterRestart() throws {
        let rule = WindowRule(key: day, kind: .sliding, limit: 8000)
        var before = Ledger(boot: 1)
        let first = try #require(admitted(before.reserve(request(rule, maxTokens: 4000), now: t0)))
        let lease = Lease(id: first.id, keys: [day], units: 10 + Double(first.maxTokens))

        var after = Ledger(boot: 2)
        #expect(after.renew([lease], adopt: true, now: t0 + 1) == 1)
        #expect(after.inFlight(day) == 4010)
        // B and C are clamped to what A leaves.
        let second = try #require(admitted(after.reserve(request(rule, maxTokens: 4000), now: t0 + 2)))
        #expect(second.maxTokens == 8000 - 4010 - 10)
        #expect(admitted(after.reserve(request(rule, maxTokens: 4000), now: t0 + 2)) == nil)
        // A commits: its hold goes, its usage stays; nothing exceeds the limit.
        after.commit(id: first.id, charges: [Charge(key: day, kind: .sliding, units: 4010)], now: t0 + 3)
        after.commit(id: second.id, charges: [Charge(key: day, kind: .sliding, units: 3990)], now: t0 + 3)
        #expect(after.used(day, now: t0 + 3) == 8000)
        #expect(after.inFlight(day) == 0)
    }

    @Test("adopt installs only holds of an earlier run; an unknown hold of this run stays gone")
    func adoptOnlyForeign() throws {
        var ledger = Ledger(boot: 3)
        let rule = WindowRule(key: day, kind: .sliding, limit: 1000)
        let own = try #require(admitted(ledger.reserve(request(rule), now: t0)))
        ledger.release(id: own.id, now: t0)
        #expect(ledger.renew([Lease(id: own.id, keys: [day], units: 110)], adopt: true, now: t0) == 0)
        #expect(ledger.inFlight(day) == 0)
        // Renewing without adopt never installs anything.
        let foreign = Ledger(boot: 2).isOwn(own.id) ? 0 : own.id ^ (1 << 60)
        #expect(ledger.renew([Lease(id: foreign, keys: [day], units: 5)], adopt: false, now: t0) == 0)
        #expect(ledger.renew([Lease(id: foreign, keys: [day], units: 5)], adopt: true, now: t0) == 1)
        #expect(ledger.inFlight(day) == 5)
    }

    @Test("a window_type change carries usage over, in both directions, without locking anyone out")
    func windowTypeChange() throws {
        var ledger = Ledger()
        let now = t0 + 3600 * 10
        ledger.apply(Charge(key: day, kind: .sliding, units: 700), now: now)
        // The plugin now says fixed: the 700 still count, and come back at the end of today's window.
        let fixed = WindowRule(key: day, kind: .fixed, limit: 1000)
        guard case .admitted(_, _, let windows) = ledger.reserve(request(fixed, .soft), now: now + 5) else {
            Issue.record("should be admitted")
            return
        }
        #expect(windows.first?.remaining == 300)
        #expect(windows.first?.reset == t0 + 86400)
        #expect(ledger.counters[day]?.kind == .fixed)
        // Stored buckets of the other kind, loaded after a restart, count at load time (bucket numbers of
        // one kind mean nothing in the other).
        var restarted = Ledger()
        restarted.load(key: day, kind: .fixed, bucket: now / 86400, units: 200, now: now)
        restarted.load(key: day, kind: .sliding, bucket: now / 60, units: 300, now: now)
        #expect(restarted.used(day, now: now) == 500)
        #expect(restarted.used(day, now: t0 + 86400) == 0)  // the fixed day ends; nothing lingers for millennia
    }

    @Test("pruning waits while the wall clock has jumped, and resumes once it kept pace for an hour")
    func pruneClock() {
        var clock = PruneClock(interval: 300, wall: t0, monotonic: 0)
        #expect(clock.tick(wall: t0 + 1, monotonic: 1) == .prune)
        #expect(clock.tick(wall: t0 + 100, monotonic: 100) == .wait)
        #expect(clock.tick(wall: t0 + 400, monotonic: 400) == .prune)
        // Set a year ahead: no prune now, nor for the next hour.
        let jump: Int64 = 365 * 86400
        #expect(clock.tick(wall: t0 + jump + 500, monotonic: 500) == .clockJumped(seconds: jump))
        #expect(clock.tick(wall: t0 + jump + 1500, monotonic: 1500) == .wait)
        // Set back right: another jump; pruning only an hour after it.
        #expect(clock.tick(wall: t0 + 2000, monotonic: 2000) == .clockJumped(seconds: -jump))
        #expect(clock.tick(wall: t0 + 4000, monotonic: 4000) == .wait)
        #expect(clock.tick(wall: t0 + 5700, monotonic: 5700) == .prune)
    }

    @Test("time the control plane did not run (a gap between heartbeats) does not expire holds")
    func pausedControlPlaneKeepsHolds() throws {
        var ledger = Ledger()
        ledger.reservationLifetime = 10
        ledger.expectsHeartbeats = true
        let rule = WindowRule(key: day, kind: .sliding, limit: 10_000)
        ledger.heartbeat(now: t0)
        let held = try #require(admitted(ledger.reserve(request(rule, maxTokens: 4000), now: t0)))
        ledger.heartbeat(now: t0 + 1)
        // Stopped for 15 s: the first call after it (a reservation queued during the stop) finds the hold.
        let next = try #require(admitted(ledger.reserve(request(rule, maxTokens: 8000), now: t0 + 16)))
        #expect(ledger.reservations[held.id] != nil)
        #expect(next.maxTokens == 10_000 - 4010 - 10)
        // Running (heartbeats every second) and not renewed: the hold expires after its lifetime.
        for second in (t0 + 17)...(t0 + 40) { ledger.heartbeat(now: second) }
        ledger.expireReservations(now: t0 + 40)
        #expect(ledger.reservations.isEmpty)
    }

    @Test("a duplicate commit still releases its own hold (re-established after a restart)")
    func duplicateReleasesItsHold() throws {
        var ledger = Ledger(boot: 5)
        ledger.load(mark: CommitMark(source: 7, sequence: 3, seenAt: t0))
        let foreign = (UInt64(4) << UInt64(Ledger.reservationCounterBits)) | 9
        ledger.renew([Lease(id: foreign, keys: [day], units: 500)], adopt: true, now: t0)
        #expect(ledger.inFlight(day) == 500)
        let again = ledger.commit(
            id: foreign, origin: CommitOrigin(source: 7, sequence: 3), charges: [Charge(key: day, kind: .sliding, units: 40)],
            now: t0 + 1)
        #expect(!again.applied)
        #expect(ledger.inFlight(day) == 0)
        #expect(ledger.used(day, now: t0 + 1) == 0)
    }

    @Test("stored rows take the kind the config gives the counter now, whichever row is read first")
    func loadTakesTheCurrentKind() {
        let now = t0 + 3600 * 10 + 30
        var restarted = Ledger()
        // The old fixed row is read first; the config now says sliding.
        restarted.load(key: day, kind: .fixed, bucket: now / 86400, units: 400, now: now, current: .sliding)
        restarted.load(key: day, kind: .sliding, bucket: (now - 20) / 60, units: 140, now: now, current: .sliding)
        #expect(restarted.counters[day]?.kind == .sliding)
        // The sliding row keeps its bucket and counts past the end of the fixed day (where it vanished when the
        // counter took the first row's kind); the fixed row, converted at load, counts a sliding day from now.
        #expect(restarted.used(day, now: t0 + 86400 + 5) == 540)
        #expect(restarted.used(day, now: t0 + 2 * 86400) == 0)
    }
}
