/// A request to admit: the windows it is checked against, and what it may cost.
///
/// Units are tokens, or dollars with the cost strategy: the caller converts its prompt estimate and
/// per-completion-token price into units (`tokens_count_strategy` decides which tokens count).
public struct ReserveRequest: Sendable, Hashable, Codable {
    /// The windows to check; the request is admitted only if it fits them all.
    public var rules: [WindowRule]
    /// Soft admits while any budget remains; hard also clamps `maxTokens` to fit.
    public var enforcement: Enforcement
    /// Units of the prompt estimate.
    public var promptUnits: Double
    /// Units of one completion token (0 when completion tokens do not count).
    public var unitsPerCompletionToken: Double
    /// The effective `max_tokens` (config, else client, else the model's maximum).
    public var maxTokens: Int

    public init(
        rules: [WindowRule], enforcement: Enforcement, promptUnits: Double, unitsPerCompletionToken: Double,
        maxTokens: Int
    ) {
        self.rules = rules
        self.enforcement = enforcement
        self.promptUnits = promptUnits
        self.unitsPerCompletionToken = unitsPerCompletionToken
        self.maxTokens = maxTokens
    }
}

/// One window's state as the client headers show it.
public struct WindowStatus: Sendable, Hashable, Codable {
    public var key: LimitKey
    public var limit: Double
    /// What is left after usage and requests in flight (before this request's own hold).
    public var remaining: Double
    /// Epoch second at which tokens next come back (now when nothing is used).
    public var reset: Int64

    public init(key: LimitKey, limit: Double, remaining: Double, reset: Int64) {
        self.key = key
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
    }
}

/// The answer to a reserve: admitted with a reservation, or refused.
public enum ReserveOutcome: Sendable, Hashable {
    /// Admitted: the reservation to commit or release, and the `max_tokens` the request may use
    /// (clamped in hard mode).
    case admitted(id: UInt64, maxTokens: Int, windows: [WindowStatus])
    /// Refused: the windows, and seconds until enough usage leaves the window to admit again.
    case refused(windows: [WindowStatus], retryAfter: Int, exceeded: [LimitKey])
    /// Not decided: the store that keeps this budget (the fleet's Redis) cannot be reached and the control
    /// plane's policy is to refuse meanwhile. `reason` says why, for the client's 503.
    case unavailable(reason: String)
}

/// One counter's charge at commit.
public struct Charge: Sendable, Hashable, Codable {
    public var key: LimitKey
    public var kind: WindowKind
    public var units: Double

    public init(key: LimitKey, kind: WindowKind, units: Double) {
        self.key = key
        self.kind = kind
        self.units = units
    }
}

/// Where a commit comes from: a data plane's commit stream (`source`, random per stream) and the commit's
/// number in it. Numbers rise along a stream, so the control plane keeps one mark per stream to recognise a
/// commit sent again (after a lost acknowledgement, or from the data plane's spool). `source` 0 is a commit
/// without identity: it is always applied.
public struct CommitOrigin: Sendable, Hashable {
    public var source: UInt64
    public var sequence: UInt64

    public init(source: UInt64, sequence: UInt64) {
        self.source = source
        self.sequence = sequence
    }

    /// No identity: never deduplicated.
    public static let none = CommitOrigin(source: 0, sequence: 0)
}

/// The last commit applied from one commit stream, and when.
public struct CommitMark: Sendable, Hashable {
    public var source: UInt64
    public var sequence: UInt64
    /// Epoch second it was applied (marks of streams silent for long are forgotten).
    public var seenAt: Int64

    public init(source: UInt64, sequence: UInt64, seenAt: Int64) {
        self.source = source
        self.sequence = sequence
        self.seenAt = seenAt
    }
}

/// A hold a data plane still has in flight, as it renews or re-establishes it: the reservation id, the
/// counters it holds on, and the units it holds on each.
public struct Lease: Sendable, Hashable {
    public var id: UInt64
    public var keys: [LimitKey]
    public var units: Double

    public init(id: UInt64, keys: [LimitKey], units: Double) {
        self.id = id
        self.keys = keys
        self.units = units
    }
}

/// Budgets in memory: usage per counter, and the reservations of requests in flight.
///
/// Pure logic with the time passed in. Time never runs backwards inside a ledger: a clock that steps
/// back is treated as standing still, so it cannot free budget.
public struct Ledger: Sendable {
    /// A request in flight: what it holds on each counter until commit, release or expiry.
    public struct Reservation: Sendable, Hashable {
        public var id: UInt64
        public var holds: [LimitKey: Double]
        public var expiresAt: Int64
    }

    /// Usage per counter.
    public private(set) var counters: [LimitKey: WindowCounter] = [:]
    /// Requests in flight, by reservation id.
    public private(set) var reservations: [UInt64: Reservation] = [:]
    /// No reservation expires before this second: a lower bound, lowered as holds are made and set to the true
    /// next expiry by each scan, so that a reservation does not walk every hold in flight.
    private var nextExpiry = Int64.max
    /// The last commit applied from each data plane (`CommitOrigin`), so a commit sent again is not charged again.
    public private(set) var commitMarks: [UInt64: CommitMark] = [:]
    private var held: [LimitKey: Double] = [:]
    private var nextID: UInt64
    /// This run's boot number, as it appears in the high bits of its reservation ids.
    private let bootTag: UInt64
    private var latest: Int64 = 0
    /// How long a reservation lives without a commit or release (default 10 minutes).
    public var reservationLifetime: Int64 = 600
    /// Most reservations held at once (each some 300 bytes); past it a new reservation is answered `unavailable`.
    /// A data plane that reserves and never commits (or never reads its answers) cannot grow the ledger without
    /// bound within the reservations' lifetime. Holds adopted in `renew` are not counted against it: they were
    /// granted before a restart, and refusing them would free budget that requests in flight still use.
    public var maxReservations = Ledger.defaultMaxReservations
    /// 1,000,000: far above what the requests in flight of a fleet hold, below what fills a small server.
    public static let defaultMaxReservations = 1_000_000
    /// Whether `heartbeat(now:)` is called every second: then a longer gap between two calls is time the
    /// control plane did not run (stopped, starved, or the clock jumped), which does not count towards any
    /// hold's lifetime.
    public var expectsHeartbeats = false
    /// The time of the last heartbeat (or operation, with `expectsHeartbeats`).
    private var lastBeat: Int64 = 0
    /// A gap between heartbeats longer than this is time the control plane did not run.
    public static let heartbeatGap: Int64 = 3

    /// Bits of a reservation id that count reservations within one boot (17.6 trillion); the bits above them
    /// hold the boot number.
    public static let reservationCounterBits = 44
    /// Boot numbers go round after this many (about a million restarts).
    public static let bootNumbers: UInt64 = 1 << (64 - UInt64(reservationCounterBits))

    /// An empty ledger: no usage, no reservations. `boot` numbers this run of the control plane (the store
    /// counts them): reservation ids carry it in their high bits, so an id handed out before a restart never
    /// matches a hold of this run, and a late commit of it charges its usage without releasing anyone else's
    /// hold. Ids are never 0 (0 means "no reservation" on the wire).
    public init(boot: UInt64 = 0) {
        bootTag = boot % Self.bootNumbers
        nextID = bootTag << UInt64(Self.reservationCounterBits) | 1
    }

    /// Whether reservation `id` was handed out by this run of the control plane (rather than an earlier one).
    public func isOwn(_ id: UInt64) -> Bool { id >> UInt64(Self.reservationCounterBits) == bootTag }

    /// `now`, or the latest time seen if the clock stepped back.
    mutating func monotonic(_ now: Int64) -> Int64 {
        latest = max(latest, now)
        return latest
    }

    /// Notes that the control plane is running at `now` (called every second with `expectsHeartbeats`). After a
    /// gap longer than `heartbeatGap` (the process was stopped or starved, or the wall clock jumped), every hold
    /// lives that much longer: the data planes' renewals could not be read meanwhile, and reservations queued
    /// behind them must not find the holds of requests in flight expired.
    public mutating func heartbeat(now wallClock: Int64) {
        let now = monotonic(wallClock)
        defer { lastBeat = now }
        guard lastBeat > 0, now - lastBeat > Self.heartbeatGap else { return }
        let paused = now - lastBeat
        for id in reservations.keys { reservations[id]?.expiresAt += paused }
    }

    /// A new reservation id of this run, for a hold kept elsewhere (the fleet's Redis, or a fallback ledger):
    /// unique among this ledger's own.
    public mutating func takeID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    /// Checks `request` against its windows at `now`; admitted requests hold their worst-case units. `id` is
    /// the reservation's id when given (from another ledger's `takeID()`), else a new one of this ledger.
    public mutating func reserve(_ request: ReserveRequest, now wallClock: Int64, id given: UInt64? = nil)
        -> ReserveOutcome
    {
        let now = monotonic(wallClock)
        expireReservations(now: now)
        guard reservations.count < maxReservations else {
            return .unavailable(
                reason: "the control plane holds \(maxReservations) reservations, its limit: requests in flight are "
                    + "not being committed or released")
        }
        var statuses: [WindowStatus] = []
        var exceeded: [LimitKey] = []
        var retryAfter: Int64 = 0
        var allowedTokens = request.maxTokens
        for rule in request.rules {
            let counter = withCounter(rule.key, kind: rule.kind, now: now) { counter in
                counter.advance(to: now)
                return counter
            }
            let inFlight = held[rule.key, default: 0]
            let committed = counter.total
            statuses.append(
                WindowStatus(
                    key: rule.key, limit: rule.limit, remaining: max(0, rule.limit - committed - inFlight),
                    // Nothing spent yet: the first tokens to come back are the ones this request spends now.
                    reset: counter.nextReset ?? counter.expiry(ofBucket: counter.bucketIndex(at: now))))
            let needed = request.enforcement == .hard ? request.promptUnits : 0
            if committed + inFlight + needed >= rule.limit {
                exceeded.append(rule.key)
                // Enough must leave the window that used + held + needed < limit again.
                let target = rule.limit - inFlight - needed - 1e-9
                let when = target < 0 ? nil : counter.time(whenUsageAtMost: target)
                let wait = when.map { $0 - now } ?? max(Int64(counter.resolution), reservationLifetime)
                retryAfter = max(retryAfter, wait)
                continue
            }
            if request.enforcement == .hard && request.unitsPerCompletionToken > 0 {
                let room = rule.limit - committed - inFlight - request.promptUnits
                // Compared as a Double first: with a tiny price and a large limit the quotient is beyond Int.
                let fits = (room / request.unitsPerCompletionToken).rounded(.down)
                if fits < Double(allowedTokens) { allowedTokens = fits > 0 ? Int(fits) : 0 }
            }
        }
        if request.enforcement == .hard && allowedTokens < 1 && exceeded.isEmpty {
            exceeded = request.rules.map(\.key)
            retryAfter = max(retryAfter, 1)
        }
        guard exceeded.isEmpty else {
            return .refused(windows: statuses, retryAfter: Int(max(1, retryAfter)), exceeded: exceeded)
        }
        let hold = request.promptUnits + request.unitsPerCompletionToken * Double(allowedTokens)
        let id = given ?? takeID()
        var holds: [LimitKey: Double] = [:]
        for rule in request.rules {
            holds[rule.key] = hold
            held[rule.key, default: 0] += hold
        }
        reservations[id] = Reservation(id: id, holds: holds, expiresAt: now + reservationLifetime)
        nextExpiry = min(nextExpiry, now + reservationLifetime)
        return .admitted(id: id, maxTokens: allowedTokens, windows: statuses)
    }

    /// Replaces reservation `id` (if still held) with the real usage. The charges are applied even when
    /// the reservation is unknown (the control plane restarted, or it expired): usage is never dropped.
    /// A commit whose `origin` already had a commit of this sequence number or a later one applied is a
    /// resend: nothing is charged or released again, and `applied` is false.
    /// Returns the buckets it added to, computed with the ledger's clock, for the store to persist as they are.
    @discardableResult
    public mutating func commit(
        id: UInt64, origin: CommitOrigin = .none, charges: [Charge], now wallClock: Int64
    ) -> CommittedUsage {
        var buckets: [BucketUsage] = []
        buckets.reserveCapacity(charges.count)
        let (time, applied) = commit(
            id: id, origin: origin, charges: charges, now: wallClock, appendingTo: &buckets)
        return CommittedUsage(time: time, buckets: buckets, applied: applied)
    }

    /// `commit(id:origin:charges:now:)` for many commits in a row: appends the buckets to `buckets` (one array
    /// for a whole batch) and returns the time the ledger used and whether the commit was applied.
    public mutating func commit(
        id: UInt64, origin: CommitOrigin = .none, charges: [Charge], now wallClock: Int64,
        appendingTo buckets: inout [BucketUsage]
    ) -> (time: Int64, applied: Bool) {
        let now = monotonic(wallClock)
        if origin.source != 0 {
            if let mark = commitMarks[origin.source], origin.sequence <= mark.sequence {
                // Charged already; its own hold, should it have been re-established since, goes.
                release(id: id, now: now)
                return (now, false)
            }
            commitMarks[origin.source] = CommitMark(source: origin.source, sequence: origin.sequence, seenAt: now)
        }
        release(id: id, now: now)
        for charge in charges {
            if let bucket = apply(charge, now: now) { buckets.append(bucket) }
        }
        return (now, true)
    }

    /// Loads a stored commit mark (at start).
    public mutating func load(mark: CommitMark) {
        if let known = commitMarks[mark.source], known.sequence >= mark.sequence { return }
        commitMarks[mark.source] = mark
    }

    /// Forgets the marks of data planes not heard from since `before` (they stopped long ago).
    public mutating func forgetMarks(seenBefore before: Int64) {
        commitMarks = commitMarks.filter { $0.value.seenAt >= before }
    }

    // MARK: - Leases

    /// Renews the holds of requests still in flight for another `reservationLifetime`. With `adopt`, holds
    /// this ledger does not know that were handed out by an earlier run of the control plane are installed
    /// again as they were (the data plane re-establishes them after reconnecting, before it admits new
    /// work): a restart does not free the budget of requests in flight. Unknown holds of this run are not
    /// adopted (they were committed, released or expired). Returns how many holds are now held.
    @discardableResult
    public mutating func renew(_ leases: [Lease], adopt: Bool, now wallClock: Int64) -> Int {
        let now = monotonic(wallClock)
        if expectsHeartbeats { heartbeat(now: now) }
        var count = 0
        for lease in leases where lease.id != 0 {
            if reservations[lease.id] != nil {
                reservations[lease.id]?.expiresAt = now + reservationLifetime
                count += 1
            } else if adopt && !isOwn(lease.id) && lease.units >= 0 && lease.units.isFinite {
                var holds: [LimitKey: Double] = [:]
                for key in lease.keys {
                    holds[key] = lease.units
                    held[key, default: 0] += lease.units
                }
                reservations[lease.id] = Reservation(id: lease.id, holds: holds, expiresAt: now + reservationLifetime)
                nextExpiry = min(nextExpiry, now + reservationLifetime)
                count += 1
            }
        }
        return count
    }

    /// Frees reservation `id`; unknown ids are ignored.
    public mutating func release(id: UInt64, now wallClock: Int64) {
        _ = monotonic(wallClock)
        guard let reservation = reservations.removeValue(forKey: id) else { return }
        for (key, amount) in reservation.holds {
            // One lookup of the key, not two: this runs for every commit.
            guard let index = held.index(forKey: key) else { continue }
            let remaining = held.values[index] - amount
            if remaining > 1e-9 { held.values[index] = remaining } else { held.remove(at: index) }
        }
    }

    /// Adds usage to a counter, creating it if needed; returns the bucket it added to (nil for no units).
    @discardableResult
    public mutating func apply(_ charge: Charge, now wallClock: Int64) -> BucketUsage? {
        let now = monotonic(wallClock)
        guard charge.units > 0 else { return nil }
        return withCounter(charge.key, kind: charge.kind, now: now) { counter in
            counter.add(charge.units, at: now)
            let bucket = counter.bucketIndex(at: now)
            return BucketUsage(
                key: charge.key, kind: counter.kind, bucket: bucket, units: charge.units,
                expiresAt: counter.expiry(ofBucket: bucket))
        }
    }

    /// Loads stored usage into bucket `bucket` of a counter. Usage stored under the other window kind (the
    /// plugin's `window_type` changed) is counted as used at `now` in the counter's own buckets: bucket numbers
    /// of one kind mean nothing in the other.
    /// `current` is the kind the config gives the counter now (nil: the stored kind): a counter always takes the
    /// current kind, whichever row is read first.
    public mutating func load(
        key: LimitKey, kind: WindowKind, bucket: Int64, units: Double, now: Int64, current: WindowKind? = nil
    ) {
        let target = current ?? counters[key]?.kind ?? kind
        var counter = counters[key] ?? WindowCounter(kind: target, windowSize: key.windowSize)
        if counter.kind == kind {
            counter.add(units, bucket: bucket)
        } else {
            let stored = WindowCounter(kind: kind, windowSize: key.windowSize)
            guard stored.expiry(ofBucket: bucket) > now else { return }
            counter.add(units, at: max(now, latest))
        }
        counters[key] = counter
    }

    /// The counter of `key` in window kind `kind`. A counter kept in the other kind (the plugin's
    /// `window_type` changed) is started again in the new kind with all its usage counted as used at `now`:
    /// never less than before, and released one new window later at most.
    ///
    /// `body` changes it in place, with one lookup of the key for a counter that exists: this runs for every
    /// reservation and commit, and a `LimitKey` hashes three strings.
    private mutating func withCounter<T>(
        _ key: LimitKey, kind: WindowKind, now: Int64, _ body: (inout WindowCounter) -> T
    ) -> T {
        guard let index = counters.index(forKey: key) else {
            var counter = WindowCounter(kind: kind, windowSize: key.windowSize)
            let result = body(&counter)
            counters[key] = counter
            return result
        }
        if counters.values[index].kind != kind {
            var existing = counters.values[index]
            existing.advance(to: now)
            var converted = WindowCounter(kind: kind, windowSize: key.windowSize)
            if existing.total > 0 { converted.add(existing.total, at: now) }
            counters.values[index] = converted
        }
        return body(&counters.values[index])
    }

    /// Releases reservations whose lifetime has passed, so a dead data plane cannot pin a budget.
    public mutating func expireReservations(now: Int64) {
        if expectsHeartbeats { heartbeat(now: now) }
        guard now >= nextExpiry else { return }
        var next = Int64.max
        for reservation in reservations.values {
            if reservation.expiresAt <= now {
                release(id: reservation.id, now: now)
            } else {
                next = min(next, reservation.expiresAt)
            }
        }
        nextExpiry = next
    }

    /// Units used in a counter's window at `now`.
    public mutating func used(_ key: LimitKey, now wallClock: Int64) -> Double {
        let now = monotonic(wallClock)
        guard var counter = counters[key] else { return 0 }
        counter.advance(to: now)
        counters[key] = counter
        return counter.total
    }

    /// Units held by requests in flight on a counter.
    public func inFlight(_ key: LimitKey) -> Double { held[key, default: 0] }

    /// Drops the counters `matching`; returns how many.
    @discardableResult
    public mutating func removeCounters(where matching: (LimitKey) -> Bool) -> Int {
        let keys = counters.keys.filter(matching)
        for key in keys { counters.removeValue(forKey: key) }
        return keys.count
    }

    /// Drops counters with nothing left in their window.
    public mutating func compact(now wallClock: Int64) {
        let now = monotonic(wallClock)
        for key in Array(counters.keys) {
            counters[key]?.advance(to: now)
            if counters[key]?.total == 0 && held[key] == nil { counters.removeValue(forKey: key) }
        }
    }
}
