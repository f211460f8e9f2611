-- wrk script: POST real request bodies in rotation with token auth, print a JSON summary.
--   wrk -s loadtest/post.lua URL -- CONTENT_TYPE BODY_FILE...
-- The bearer token comes from $WRK_AUTH_TOKEN (not argv, which other users can read).
-- $WRK_MEAN_DELAY_MS > 0 paces each connection with exponential think times (open-loop-like load).
local requests, index = {}, 0
local token = os.getenv("WRK_AUTH_TOKEN") or ""
local mean_delay_ms = tonumber(os.getenv("WRK_MEAN_DELAY_MS") or "0")

function init(args)
  local headers = {["Content-Type"] = args[1]}
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  for i = 2, #args do
    local file = assert(io.open(args[i], "rb"))
    requests[#requests + 1] = wrk.format("POST", wrk.path, headers, file:read("*a"))
    file:close()
  end
  math.randomseed(os.time())
end

function request()
  index = index % #requests + 1
  return requests[index]
end

-- Only defined when pacing: wrk schedules a timer per request as soon as delay() exists.
if mean_delay_ms > 0 then
  function delay()
    return math.floor(-math.log(1 - math.random()) * mean_delay_ms + 0.5)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d}, "latency_us": {"p50": %d, "p95": %d, "p99": %d, "mean": %.1f, "max": %d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean, latency.max))
end
