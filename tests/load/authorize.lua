-- wrk script: one allowed decision per request (agent-support-1 → search_kb for
-- a support agent). Tokens come from the environment; see run.sh.
wrk.method = "POST"
wrk.path = "/v1/authorize"
wrk.body = '{"tool_id":"search_kb","arguments":{"query":"reset password"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("AGENT_TOKEN")
wrk.headers["X-On-Behalf-Of"] = os.getenv("USER_TOKEN")

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("RESULT requests=%d non2xx=%d socket_errors=%d duration_s=%.2f rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
    summary.requests, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
