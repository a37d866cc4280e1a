"""The gateway with a second official client: the MCP TypeScript SDK's
`Client` over `StreamableHTTPClientTransport` (tests/mcp/node/client.mjs,
on the Node 22 of tests/mcp/node/package.json), through the session's
`govctl serve` to the example upstream.

The npm packages are installed with `npm ci` when node_modules does not
match package-lock.json (tests/mcp/node/npm_ci.py).
"""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
CLIENT = NODE_DIR / "client.mjs"


def load_npm_ci():
    spec = importlib.util.spec_from_file_location("agent_governance_npm_ci", NODE_DIR / "npm_ci.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def node():
    try:
        return load_npm_ci().ensure()
    except RuntimeError as e:
        pytest.fail(f"cannot install the Node client: {e}")


def node_client(node, gateway, agent_token, user_token, *calls, run_id=None):
    """Runs client.mjs against the gateway; `calls` are (tool, arguments) pairs."""
    argv = [str(node), str(CLIENT), "--url", gateway.url]
    for tool, arguments in calls:
        argv += ["--call", tool, "--args", json.dumps(arguments)]
    if run_id:
        argv += ["--run-id", run_id]
    env = dict(os.environ, GOVCTL_AGENT_TOKEN=agent_token, GOVCTL_USER_TOKEN=user_token)
    out = subprocess.run(argv, cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def text(result):
    return "\n".join(c["text"] for c in result["content"] if c.get("type") == "text")


def test_the_typescript_sdk_client_lists_and_calls_through_the_gateway(node, gateway, upstream):
    agent = gateway.agent("agent-support-1")
    user = gateway.user("lee", "support_agent")
    searched, logs = upstream.executions("search_kb"), upstream.executions("search_logs")
    out = node_client(
        node, gateway, agent, user,
        ("search_kb", {"query": "refund policy", "limit": 2}),
        ("search_logs", {"query": "timeout"}),
        run_id="run-node-1",
    )

    # The SDK's newest revision, over a session of the gateway's.
    assert out["protocolVersion"] == "2025-11-25"
    assert out["sessionId"] and all(0x21 <= ord(ch) <= 0x7E for ch in out["sessionId"])
    assert out["serverInfo"]["name"] == "agent-governance"
    assert "tools" in out["serverCapabilities"]

    # Only what this agent may call for this user.
    assert sorted(t["name"] for t in out["tools"]) == ["get_ticket", "search_kb"]
    search = next(t for t in out["tools"] if t["name"] == "search_kb")
    assert search["inputSchema"]["properties"]["query"]["type"] == "string"
    # A registry read that the upstream also marks read-only.
    assert search["annotations"]["readOnlyHint"] is True

    allowed, denied = out["calls"]
    # Allowed: forwarded, and the upstream's structured result comes back as it made it.
    assert "error" not in allowed, allowed
    result = allowed["result"]
    assert not result.get("isError"), text(result)
    assert result["structuredContent"] == {
        "query": "refund policy",
        "articles": ["KB-1: about refund policy", "KB-2: about refund policy"],
        "server": "dev-upstream",
    }
    assert result["_meta"]["agent-governance/decision"]["decision"] == "allow"
    assert upstream.executions("search_kb") == searched + 1

    # Not granted: a tool error the model can read, never forwarded.
    assert "error" not in denied, denied
    result = denied["result"]
    assert result["isError"] is True
    assert "tool_not_granted" in text(result)
    assert result["_meta"]["agent-governance/decision"]["decision_id"] in text(result)
    assert upstream.executions("search_logs") == logs

    # The run the client named is on the record.
    decision_id = allowed["result"]["_meta"]["agent-governance/decision"]["decision_id"]
    record = next(
        line["record"] for line in gateway.export()
        if line.get("layer") == "decision" and line["record"].get("decision_id") == decision_id
    )
    assert record["run_id"] == "run-node-1"
