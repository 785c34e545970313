-- wrk script for the umbra benchmark: POST the JSON body in $BODY_FILE to the
-- URL given to wrk (extra headers come from wrk -H), and print one
-- machine-readable line at the end:
--   WRK {"requests":N,"duration_us":D,"rps":R,"p50_us":..,"p90_us":..,"p99_us":..,"max_us":..,
--        "errors_connect":..,"errors_read":..,"errors_write":..,"errors_status":..,"errors_timeout":..}
local path = os.getenv("BODY_FILE")
if path == nil then
  io.stderr:write("wrk_post.lua: set BODY_FILE\n")
  os.exit(2)
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local s = summary
  local rps = 0
  if s.duration > 0 then rps = s.requests / (s.duration / 1e6) end
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"max_us":%.1f,' ..
    '"mean_us":%.1f,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    s.requests, s.duration, rps, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout))
end
