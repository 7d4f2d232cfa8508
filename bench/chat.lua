-- wrk script for the gateway benchmark: POST a small JSON chat completion.
--
-- Environment:
--   BENCH_MODEL   model name in the body (default "bench-tier")
--   BENCH_STREAM  "1" adds "stream": true (the upstream then answers a 20-chunk SSE stream)
--   BENCH_API_KEY sent as "Authorization: Bearer KEY" (the LiteLLM proxy's master key)
--
-- done() prints one parseable line, latencies in microseconds:
--   BENCH_RESULT requests=N duration_us=N bytes=N connect=N read=N write=N status=N
--     timeout=N p50_us=N p90_us=N p99_us=N p999_us=N mean_us=N max_us=N
--
-- Usage: BENCH_STREAM=1 wrk -t1 -c32 -d10s --latency -s bench/chat.lua http://127.0.0.1:P/v1/chat/completions

local model = os.getenv("BENCH_MODEL") or "bench-tier"
local stream = os.getenv("BENCH_STREAM") == "1"

local body = '{"model":"' .. model .. '",'
  .. '"messages":[{"role":"user","content":"Say hello in one short sentence."}],'
  .. '"max_tokens":16'
if stream then
  body = body .. ',"stream":true'
end
body = body .. '}'

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_API_KEY") or "sk-bench-dummy")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d"
      .. " timeout=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d mean_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
