import BudgetRedis

/// The server-side scripts of `strategy: redis`: reserve, commit, release, renew and read, each atomic in Redis
/// and each the same arithmetic as `Ledger` (BudgetLedger), so that a budget shared by a fleet behaves as one
/// node's does: the same windows and buckets, the same admission rule (soft: used + held < limit; hard: also the
/// prompt, and `max_tokens` clamped), the same leases, and the same exactly-once commit marks.
///
/// Keys, under the prefix `budget:` (one Redis per fleet; Cluster is not supported, see budget.yaml(5)):
/// - `budget:c:<counter>`: a hash with the window kind `k`, the total of the live buckets `t`, the units held by
///   requests in flight `h`, and one field `b<index>` per bucket; `budget:l:<counter>` lists the bucket indexes,
///   oldest first. Both expire at most eleven minutes after their newest bucket stops counting (or their last
///   hold ends).
/// - `budget:r:<node>:<id>`: a reservation (units `u`, expiry `e`, counters `k1`…`kn`), indexed by expiry in the
///   sorted set `budget:rx`; every reserve and read first releases the ones whose lease ran out (at most 256 a
///   call). A reservation key has no expiry of its own: it goes only when its hold is taken off its counters
///   (a key that expired by itself would leave its units held for good).
/// - `budget:m:<stream>`: the last commit number applied from a data plane's commit stream (kept 30 days).
/// - `budget:clock`: the latest second any script saw. Time is Redis's own (`TIME`), so every node counts on one
///   clock, and it never runs backwards for the budgets.
///
/// Numbers cross as strings (`%.17g`): Lua's numbers are doubles, and Redis would truncate a Lua number reply to
/// an integer.
enum BudgetScripts {
    static let prelude = """
        local P = 'budget:'
        local function num(x) return tonumber(x) or 0 end
        local function fmt(x) return string.format('%.17g', x) end
        local function resolution(kind, w)
          if kind == 'f' then return w end
          local r = math.floor(w / 1440)
          if r < 1 then r = 1 end
          return r
        end
        local function expiry(kind, w, b)
          local e = (b + 1) * resolution(kind, w)
          if kind == 's' then e = e + w end
          return e
        end
        local function clock()
          local t = redis.call('TIME')
          local now = tonumber(t[1])
          local last = num(redis.call('GET', P .. 'clock'))
          if now > last then
            redis.call('SET', P .. 'clock', now)
            return now
          end
          return last
        end
        -- Keeps a counter's keys until at least untilTime; extended with ten minutes to spare, so that most
        -- calls only read the TTL.
        local function keep(ck, lk, untilTime, now)
          local ttl = redis.call('TTL', ck)
          if ttl < 0 or now + ttl < untilTime then
            redis.call('EXPIREAT', ck, untilTime + 600)
            redis.call('EXPIREAT', lk, untilTime + 600)
          end
        end
        -- Drops the buckets that stopped counting at now (in window kind `kind`); returns the total left.
        local function prune(ck, lk, kind, w, now, total)
          while true do
            local b = redis.call('LINDEX', lk, 0)
            if not b then break end
            if expiry(kind, w, tonumber(b)) > now then break end
            total = total - num(redis.call('HGET', ck, 'b' .. b))
            redis.call('HDEL', ck, 'b' .. b)
            redis.call('LPOP', lk)
          end
          if total < 1e-9 then total = 0 end
          return total
        end
        -- The counter's total at now, in kind `kind`. A counter kept in the other kind (window_type changed) is
        -- started again with all its usage counted as used now, as Ledger does.
        local function advance(key, kind, w, now)
          local ck, lk = P .. 'c:' .. key, P .. 'l:' .. key
          local stored = redis.call('HGET', ck, 'k')
          local before = num(redis.call('HGET', ck, 't'))
          local total = before
          if stored and stored ~= kind then
            total = prune(ck, lk, stored, w, now, total)
            for _, b in ipairs(redis.call('LRANGE', lk, 0, -1)) do redis.call('HDEL', ck, 'b' .. b) end
            redis.call('DEL', lk)
            redis.call('HSET', ck, 'k', kind)
            if total > 0 then
              local b = string.format('%d', math.floor(now / resolution(kind, w)))
              redis.call('RPUSH', lk, b)
              redis.call('HSET', ck, 'b' .. b, fmt(total))
              keep(ck, lk, expiry(kind, w, tonumber(b)) + 60, now)
            end
          else
            total = prune(ck, lk, kind, w, now, total)
          end
          if total ~= before then redis.call('HSET', ck, 't', fmt(total)) end
          return total
        end
        local function release(rid)
          local rk = P .. 'r:' .. rid
          local data = redis.call('HGETALL', rk)
          redis.call('ZREM', P .. 'rx', rid)
          if #data == 0 then return 0 end
          local f = {}
          for i = 1, #data, 2 do f[data[i]] = data[i + 1] end
          local u = num(f.u)
          for i = 1, num(f.n) do
            local ck = P .. 'c:' .. f['k' .. i]
            local h = num(redis.call('HINCRBYFLOAT', ck, 'h', fmt(-u)))
            if h < 1e-9 then redis.call('HDEL', ck, 'h') end
          end
          redis.call('DEL', rk)
          return 1
        end
        local function expireDue(now)
          for _, rid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'rx', '-inf', now, 'LIMIT', 0, 256)) do release(rid) end
        end
        local function hold(node, id, units, keys, lifetime, now)
          local rid = node .. ':' .. id
          local rk = P .. 'r:' .. rid
          local e = now + lifetime
          local fields = {'u', fmt(units), 'e', e, 'n', #keys}
          for i, key in ipairs(keys) do
            fields[#fields + 1] = 'k' .. i
            fields[#fields + 1] = key
            local ck, lk = P .. 'c:' .. key, P .. 'l:' .. key
            if units > 0 then redis.call('HINCRBYFLOAT', ck, 'h', fmt(units)) end
            keep(ck, lk, e + 60, now)
          end
          redis.call('HSET', rk, unpack(fields))
          redis.call('ZADD', P .. 'rx', e, rid)
        end

        """

    /// ARGV: node, lifetime, count, then per request: id, enforcement (`s`/`h`), prompt units, units per
    /// completion token, max tokens, rule count, then per rule: counter, kind (`s`/`f`), window seconds, limit.
    /// Returns one string per request: `A <maxTokens>` or `R <retryAfter>`, then per rule
    /// `<remaining> <reset> <exceeded 0|1>`.
    static let reserve = RedisScript(
        prelude + """
            local node, lifetime, count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
            local now = clock()
            expireDue(now)
            local out = {}
            local a = 4
            for r = 1, count do
              local id, enf = ARGV[a], ARGV[a + 1]
              local prompt, perToken, maxTokens = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
              local n = tonumber(ARGV[a + 5])
              a = a + 6
              local statuses, keys, exceeded, retry, allowed = {}, {}, 0, 0, maxTokens
              for i = 1, n do
                local key, kind, w, limit = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
                a = a + 4
                keys[i] = key
                local ck, lk = P .. 'c:' .. key, P .. 'l:' .. key
                local total = advance(key, kind, w, now)
                local held = num(redis.call('HGET', ck, 'h'))
                local first = redis.call('LINDEX', lk, 0)
                local reset
                if first then reset = expiry(kind, w, tonumber(first)) else reset = expiry(kind, w, math.floor(now / resolution(kind, w))) end
                local needed = 0
                if enf == 'h' then needed = prompt end
                local x = 0
                if total + held + needed >= limit then
                  x = 1
                  exceeded = exceeded + 1
                  local target = limit - held - needed - 1e-9
                  local when = nil
                  if target >= 0 and total > target then
                    local remaining = total
                    for _, b in ipairs(redis.call('LRANGE', lk, 0, -1)) do
                      remaining = remaining - num(redis.call('HGET', ck, 'b' .. b))
                      if remaining <= target + 1e-9 then when = expiry(kind, w, tonumber(b)); break end
                    end
                  end
                  local wait
                  if when then wait = when - now else wait = math.max(resolution(kind, w), lifetime) end
                  if wait > retry then retry = wait end
                elseif enf == 'h' and perToken > 0 then
                  local fits = math.floor((limit - total - held - prompt) / perToken)
                  if fits < allowed then
                    if fits > 0 then allowed = fits else allowed = 0 end
                  end
                end
                statuses[i] = {math.max(0, limit - total - held), reset, x}
              end
              if enf == 'h' and allowed < 1 and exceeded == 0 then
                for i = 1, n do statuses[i][3] = 1 end
                exceeded = n
                if retry < 1 then retry = 1 end
              end
              local parts
              if exceeded > 0 then
                parts = {'R', string.format('%d', math.max(1, retry))}
              else
                hold(node, id, prompt + perToken * allowed, keys, lifetime, now)
                parts = {'A', string.format('%d', allowed)}
              end
              for i = 1, n do
                parts[#parts + 1] = fmt(statuses[i][1])
                parts[#parts + 1] = string.format('%d', statuses[i][2])
                parts[#parts + 1] = tostring(statuses[i][3])
              end
              out[r] = table.concat(parts, ' ')
            end
            return out
            """)

    /// ARGV: node, mark lifetime (seconds), count, then per commit: reservation id, stream, number, charge count,
    /// then per charge: counter, kind, window seconds, units. Returns per commit 1 (charged) or 0 (a resend: its
    /// stream had this number or a later one applied; only its hold is released).
    static let commit = RedisScript(
        prelude + """
            local node, markLifetime, count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
            local now = clock()
            local out = {}
            local a = 4
            for c = 1, count do
              local id, source, seq, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
              a = a + 4
              local applied = 1
              if source ~= '0' then
                local mk = P .. 'm:' .. source
                local mark = redis.call('GET', mk)
                if mark and seq <= tonumber(mark) then
                  applied = 0
                else
                  redis.call('SET', mk, ARGV[a - 2], 'EX', markLifetime)
                end
              end
              release(node .. ':' .. id)
              for i = 1, n do
                local key, kind, w, units = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
                a = a + 4
                if applied == 1 and units > 0 then
                  local ck, lk = P .. 'c:' .. key, P .. 'l:' .. key
                  local total = advance(key, kind, w, now)
                  local b = math.floor(now / resolution(kind, w))
                  local bs = string.format('%d', b)
                  local last = redis.call('LINDEX', lk, -1)
                  if not last or tonumber(last) < b then redis.call('RPUSH', lk, bs) end
                  redis.call('HINCRBYFLOAT', ck, 'b' .. bs, fmt(units))
                  redis.call('HSET', ck, 't', fmt(total + units), 'k', kind)
                  keep(ck, lk, expiry(kind, w, b) + 60, now)
                end
              end
              out[c] = applied
            end
            return out
            """)

    /// ARGV: node, then reservation ids. Returns how many were held.
    static let release = RedisScript(
        prelude + """
            local node = ARGV[1]
            local released = 0
            for i = 2, #ARGV do released = released + release(node .. ':' .. ARGV[i]) end
            return released
            """)

    /// ARGV: node, lifetime, adopt (0/1), count, then per lease: id, units, counter count, counters. Renews the
    /// holds it finds; with adopt, installs the ones Redis does not have (they expired, or Redis restarted
    /// empty) as the data plane gives them. Returns how many are held.
    static let renew = RedisScript(
        prelude + """
            local node, lifetime, adopt, count = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', tonumber(ARGV[4])
            local now = clock()
            local held = 0
            local a = 5
            for l = 1, count do
              local id, units, n = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
              local keys = {}
              for i = 1, n do keys[i] = ARGV[a + 2 + i] end
              a = a + 3 + n
              local rid = node .. ':' .. id
              local rk = P .. 'r:' .. rid
              if redis.call('EXISTS', rk) == 1 then
                local e = now + lifetime
                redis.call('HSET', rk, 'e', e)
                redis.call('ZADD', P .. 'rx', e, rid)
                for _, key in ipairs(keys) do keep(P .. 'c:' .. key, P .. 'l:' .. key, e + 60, now) end
                held = held + 1
              elseif adopt and units >= 0 then
                hold(node, id, units, keys, lifetime, now)
                held = held + 1
              end
            end
            return held
            """)

    /// ARGV: counter hash names (`budget:c:…`). Forgets their usage but keeps what requests in flight hold (`h`),
    /// which their commits and releases take off again. Returns how many counters had usage.
    static let reset = RedisScript(
        """
        local reset = 0
        for i = 1, #ARGV do
          local ck = ARGV[i]
          local lk = 'budget:l:' .. string.sub(ck, string.len('budget:c:') + 1)
          local held = redis.call('HGET', ck, 'h')
          if redis.call('HEXISTS', ck, 't') == 1 then reset = reset + 1 end
          redis.call('DEL', ck, lk)
          if held then redis.call('HSET', ck, 'h', held) end
        end
        return reset
        """)

    /// ARGV: count, then per counter: counter, kind, window seconds. Returns one string per counter:
    /// `<used> <held> <reset>` (reset 0 when nothing is used).
    static let read = RedisScript(
        prelude + """
            local now = clock()
            expireDue(now)
            local out = {}
            local a = 2
            for c = 1, tonumber(ARGV[1]) do
              local key, kind, w = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
              a = a + 3
              local ck, lk = P .. 'c:' .. key, P .. 'l:' .. key
              local total = 0
              if redis.call('EXISTS', ck) == 1 then total = advance(key, kind, w, now) end
              local first = redis.call('LINDEX', lk, 0)
              local reset = 0
              if first then reset = expiry(kind, w, tonumber(first)) end
              out[c] = fmt(total) .. ' ' .. fmt(num(redis.call('HGET', ck, 'h'))) .. ' ' .. string.format('%d', reset)
            end
            return out
            """)
}
