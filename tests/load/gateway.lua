-- wrk script: one MCP tools/call per request, in the stateless 2026-07-28
-- form (routing headers and per-request metadata), for search_kb. With
-- AGENT_TOKEN and USER_TOKEN set it goes through the gateway as
-- agent-support-1 for a support agent; without, straight to the upstream.
wrk.method = "POST"
wrk.path = "/mcp"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_kb","arguments":{"query":"reset password"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"1"}}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "search_kb"
if os.getenv("AGENT_TOKEN") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("AGENT_TOKEN")
  wrk.headers["X-On-Behalf-Of"] = os.getenv("USER_TOKEN")
end

-- A JSON-RPC error or a tool error is a failed request, whatever the status.
local bad = 0
function response(status, headers, body)
  if status ~= 200 or string.find(body, '"isError":true', 1, true) or string.find(body, '"error":', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d non2xx=%d socket_errors=%d duration_s=%.2f rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
