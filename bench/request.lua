-- wrk script: one POST per request, body and headers from the environment; prints percentiles as JSON.
--   BENCH_PATH, BENCH_BODY, BENCH_APIKEY (optional), BENCH_OUT (file for the JSON summary)
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_APIKEY")
if key and key ~= "" then wrk.headers["apikey"] = key end

-- BENCH_DELAY_MS (optional): mean pause before each request on a connection, to hold a rate below the
-- maximum. Pauses are drawn from an exponential distribution (arrivals as from many independent clients);
-- a fixed pause keeps connections in lockstep, so a proxy that answers in batches sees waves of requests.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause and pause > 0 then
    math.randomseed(os.time())
    delay = function() return math.floor(-pause * math.log(1 - math.random()) + 0.5) end
end

-- Statuses. response() runs in each wrk thread's own Lua state, and done() in yet another: a counter kept
-- in a global here is invisible to done(). So each thread's state keeps its own, setup() keeps the thread
-- objects, and done() reads every thread's counter through thread:get(). wrk's own C counter of non-2xx/3xx
-- answers (summary.errors.status) is reported beside it, so the two can be checked against each other.
local threads = {}
setup = function(thread) table.insert(threads, thread) end

non200 = 0
response = function(status, headers, body)
    if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary, latency, requests)
    local counted = 0
    for _, thread in ipairs(threads) do counted = counted + (thread:get("non200") or 0) end
    local out = io.open(os.getenv("BENCH_OUT"), "w")
    local seconds = summary.duration / 1e6
    out:write(string.format(
        '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"errors":%d,' ..
        '"non200":%d,"non2xx":%d}\n',
        summary.requests, seconds, summary.requests / seconds, latency:percentile(50) / 1000,
        latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, counted,
        summary.errors.status))
    out:close()
end
