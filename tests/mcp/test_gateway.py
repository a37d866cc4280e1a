"""The MCP gateway end to end: the official MCP Python SDK's client
(`mcp` on PyPI) through `govctl serve`'s `/mcp` to upstream servers written
with the same SDK, over Streamable HTTP and stdio.
"""

import asyncio
import json

import pytest
from mcp.types import ElicitResult

from conftest import BUREAU_SECRET, http, wait_for

pytestmark = pytest.mark.anyio

MERIDIAN = "meridian-capital"


def meta(result):
    return (result.meta or {}).get("agent-governance/decision", {})


def text(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def decision_records(gateway):
    return [line["record"] for line in gateway.export() if line.get("layer") == "decision"]


async def tool_names(gateway, agent_id, user_token, **kw):
    async with gateway.client(gateway.agent(agent_id), user_token, **kw) as c:
        return sorted(t.name for t in (await c.list_tools()).tools)


async def test_tools_list_offers_only_what_this_agent_may_call_for_this_user(gateway):
    underwriter = gateway.user("ana", "underwriter", org=MERIDIAN)
    senior = gateway.user("sam", "senior_underwriter", org=MERIDIAN)
    assert await tool_names(gateway, "meridian-loan-agent", underwriter) == [
        "calculate_risk_score", "flag_for_review", "lookup_regulatory_requirements", "pull_credit_report",
    ]
    # senior_underwriter inherits underwriter and adds the recommendation.
    async with gateway.client(gateway.agent("meridian-loan-agent"), senior) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert sorted(tools) == [
        "calculate_risk_score", "flag_for_review", "generate_recommendation",
        "lookup_regulatory_requirements", "pull_credit_report",
    ]
    rec = tools["generate_recommendation"]
    assert "human approval by senior-underwriters" in rec.description
    assert rec.input_schema["properties"]["application_id"]["type"] == "string"
    # Upstream annotations never loosen the registry: an unannotated write is destructive.
    assert rec.annotations.read_only_hint is False and rec.annotations.destructive_hint is True
    # The bureau's tool is offered under the registry's name, not the server's.
    assert "get_credit_report" not in tools
    # Another agent, other tools; the same agent for a user of no matching role, none.
    assert await tool_names(gateway, "agent-support-1", gateway.user("lee", "support_agent")) == [
        "get_ticket", "search_kb",
    ]
    assert await tool_names(gateway, "agent-support-1", gateway.user("ops", "sre")) == []
    # Tools the registry does not know are never offered.
    for agent in ("agent-support-1", "agent-ops-1", "meridian-loan-agent"):
        assert "export_all_customers" not in await tool_names(gateway, agent, gateway.user("x", "sre", "support_agent", "underwriter"))


async def test_an_allowed_call_is_forwarded_filtered_and_its_execution_recorded(gateway, upstream):
    before = upstream.executions("get_credit_report")
    user = gateway.user("ana", "underwriter", org=MERIDIAN)
    async with gateway.client(gateway.agent("meridian-loan-agent"), user, run_id="run-fico") as c:
        result = await c.call_tool("pull_credit_report", {"applicant_id": "APL-1"})
    assert not result.is_error, text(result)
    assert result.structured_content == {"applicant_id": "APL-1", "score": 712, "tradelines": 9}
    assert "raw_fico_model" not in text(result) and "FICO 10T" not in text(result)
    assert meta(result)["decision"] == "allow" and meta(result)["removed_paths"] == ["raw_fico_model"]
    assert upstream.executions("get_credit_report") == before + 1
    # The evidence: the decision, then its execution, which keeps the removed
    # paths and the result's hash, never the removed values.
    # govctl serve writes the execution record beside the answer.
    def executed():
        rs = decision_records(gateway)
        ids = {(r.get("execution") or {}).get("decision_id") for r in rs}
        return rs if meta(result)["decision_id"] in ids else None

    records = wait_for("the execution record", executed, timeout=10)
    decision = next(r for r in records if r["decision_id"] == meta(result)["decision_id"])
    assert decision["decision"] == "allow" and decision["tool_id"] == "pull_credit_report"
    execution = next(r for r in records if (r.get("execution") or {}).get("decision_id") == decision["decision_id"])
    e = execution["execution"]
    assert (e["server"], e["upstream_tool"], e["status"]) == ("credit-bureau", "get_credit_report", "succeeded")
    assert e["removed_paths"] == ["raw_fico_model"] and e["result_hash"].startswith("sha256:")
    assert execution["reasons"][0]["code"] == "executed"
    assert "FICO 10T" not in json.dumps(records)
    explained = gateway.run("audit", "explain", decision["decision_id"])
    assert "get_credit_report" in explained and "raw_fico_model" in explained and "succeeded" in explained


async def test_a_denied_call_is_explained_to_the_model_and_never_forwarded(gateway, upstream):
    before = upstream.stats()["executions"]
    async with gateway.client(gateway.agent("agent-support-1"), gateway.user("lee", "support_agent")) as c:
        not_granted = await c.call_tool("search_logs", {"query": "timeout"})
        unknown = await c.call_tool("export_all_customers", {})
        bad_args = await c.call_tool("search_kb", {"query": "x", "debug": True})
    assert not_granted.is_error and "tool_not_granted" in text(not_granted)
    assert meta(not_granted)["decision_id"] in text(not_granted)
    assert unknown.is_error and meta(unknown)["reasons"] == ["unknown_tool"]
    assert bad_args.is_error and meta(bad_args)["reasons"] == ["invalid_arguments"]
    assert upstream.stats()["executions"] == before
    # Calls to tools outside the registry are counted.
    status, _, body = http(f"{gateway.base}/metrics")
    assert status == 200
    assert 'governance_denials_total{reason="unknown_tool"}' in body.decode()


async def test_approval_then_the_same_call_again_executes_once(gateway, upstream):
    agent, user = gateway.agent("agent-treasury-1"), gateway.user("tom", "treasury_operator")
    transfer = {"amount": 250.0, "currency": "EUR", "to_account": "DE89370400440532013000"}
    links = len(gateway.links())
    async with gateway.client(agent, user) as c:
        waiting = await c.call_tool("transfer_funds", transfer)
        approval = meta(waiting)["approval"]
        assert waiting.is_error and meta(waiting)["decision"] == "pending_approval"
        assert approval["approver_group"] == "treasury-approvers" and approval["expires_at"]
        assert approval["approval_id"] in text(waiting) and "repeat exactly the same call" in text(waiting)
        # Asking again while it waits starts no second approval.
        again = await c.call_tool("transfer_funds", transfer)
        assert meta(again)["approval"]["approval_id"] == approval["approval_id"]
        # The grant is bound to these arguments.
        gateway.approve(links, "treasury-approvers")
        other = await c.call_tool("transfer_funds", dict(transfer, amount=251.0))
        assert meta(other)["decision"] == "pending_approval"
        assert meta(other)["approval"]["approval_id"] != approval["approval_id"]
        done = await c.call_tool("transfer_funds", transfer)
        assert not done.is_error, text(done)
        assert done.structured_content["amount"] == 250.0
        assert meta(done)["reasons"] == ["approved_call"]
        # Used once: the next identical call asks a human again.
        next_call = await c.call_tool("transfer_funds", transfer)
        assert meta(next_call)["decision"] == "pending_approval"
        assert meta(next_call)["approval"]["approval_id"] != approval["approval_id"]
    assert upstream.executions("transfer_funds") == 1


async def test_a_call_with_progress_is_held_open_until_its_approval_is_granted(gateway, upstream):
    agent, user = gateway.agent("agent-treasury-1"), gateway.user("tom", "treasury_operator")
    transfer = {"amount": 75.0, "currency": "EUR", "to_account": "FR7630006000011234567890189"}
    links = len(gateway.links())
    before = upstream.executions("transfer_funds")
    updates = []

    async def on_progress(progress, total, message):
        updates.append((progress, total, message))

    async with gateway.client(agent, user) as c:
        held = asyncio.create_task(c.call_tool("transfer_funds", transfer, progress_callback=on_progress))
        await asyncio.to_thread(wait_for, "the approvers' link", lambda: len(gateway.links()) > links)
        # Still open, and told so, while nobody has answered.
        await asyncio.to_thread(wait_for, "a progress update", lambda: updates, 15)
        assert not held.done()
        assert updates[0][1] == 60 and "waiting for approval" in updates[0][2]
        assert "treasury-approvers" in updates[0][2]
        assert upstream.executions("transfer_funds") == before
        await asyncio.to_thread(gateway.approve, links, "treasury-approvers")
        done = await asyncio.wait_for(held, 20)
    assert not done.is_error, text(done)
    assert done.structured_content["amount"] == 75.0
    assert meta(done)["reasons"] == ["approved_call"]
    assert upstream.executions("transfer_funds") == before + 1


async def test_limits_apply_on_the_call_path(gateway):
    agent = gateway.agent("agent-ops-1")
    user = gateway.user("ops", "sre")
    async with gateway.client(agent, user) as c:
        results = [await c.call_tool("open_incident", {"title": f"disk {i}", "severity": 2}) for i in range(11)]
    assert [r.is_error for r in results] == [False] * 10 + [True]
    assert meta(results[-1])["reasons"] == ["rate_limited"]
    assert meta(results[-1])["retry_after_seconds"] > 0
    # The operations server is a stdio child process of the gateway.
    assert results[0].structured_content["incident"].startswith("INC-")
    # An agent with run limits must name its run.
    async with gateway.client(gateway.agent("meridian-loan-agent"), gateway.user("ana", "underwriter", org=MERIDIAN)) as c:
        no_run = await c.call_tool("lookup_regulatory_requirements", {"state": "NY", "product": "auto"})
    assert meta(no_run)["reasons"] == ["run_id_required"]


async def test_concurrent_duplicates_of_an_exactly_once_call_execute_once(gateway, upstream):
    agent = gateway.agent("meridian-loan-agent")
    user = gateway.user("sam", "senior_underwriter", org=MERIDIAN)
    args = {"application_id": "APP-2291", "recommendation": "approve at 6.1% APR"}
    before = upstream.executions("generate_recommendation")
    links = len(gateway.links())
    async with gateway.client(agent, user, run_id="run-dup-1") as c:
        waiting = await c.call_tool("generate_recommendation", args)
    assert meta(waiting)["decision"] == "pending_approval"
    gateway.approve(links, "senior-underwriters")

    async def once(i):
        async with gateway.client(agent, user, run_id=f"run-dup-{i}") as c:
            return await c.call_tool("generate_recommendation", args)

    results = await asyncio.gather(*(once(i) for i in range(20)))
    executed = [r for r in results if not r.is_error and "replay_of" not in meta(r)]
    assert len(executed) == 1, [text(r) for r in results]
    others = [r for r in results if r is not executed[0]]
    assert all(meta(r)["reasons"] == ["duplicate_call"] for r in others)
    assert upstream.executions("generate_recommendation") == before + 1
    # Later, even with other text for the same application: the first result.
    async with gateway.client(agent, user, run_id="run-dup-late") as c:
        later = await c.call_tool("generate_recommendation", dict(args, recommendation="decline"))
    assert later.structured_content == executed[0].structured_content
    assert meta(later)["replay_of"] == meta(executed[0])["decision_id"]
    assert upstream.executions("generate_recommendation") == before + 1


async def test_a_dev_control_plane_never_reaches_a_production_endpoint(gateway, prod_upstream):
    # `privacy` has only a prod endpoint in the test registry.
    async with gateway.client(gateway.agent("agent-privacy-1"), gateway.user("pia", "privacy_officer")) as c:
        names = [t.name for t in (await c.list_tools()).tools]
        result = await c.call_tool("delete_customer_record", {"customer_id": "C-1"})
    assert names == ["search_kb"]
    assert result.is_error and meta(result)["reasons"] == ["environment_mismatch"]
    assert prod_upstream.stats()["requests"] == 0


async def test_the_agents_credentials_never_reach_an_upstream(gateway, upstream):
    agent = gateway.agent("meridian-loan-agent")
    user = gateway.user("ana", "underwriter", org=MERIDIAN)
    async with gateway.client(agent, user, run_id="run-creds") as c:
        await c.call_tool("pull_credit_report", {"applicant_id": "APL-2"})
        await c.call_tool("calculate_risk_score", {"application_id": "APP-1"})
    stats = upstream.stats()
    # Only the bureau's configured secret (from the environment, or the data
    # directory's file that another test writes), for the bureau's server;
    # no user token at all.
    assert f"Bearer {BUREAU_SECRET}" in stats["authorization"]
    assert set(stats["authorization"]) <= {f"Bearer {BUREAU_SECRET}", "Bearer bureau-secret-from-a-file"}
    assert stats["on_behalf_of"] == []
    assert agent not in json.dumps(stats) and user not in json.dumps(stats)


async def test_the_initialize_handshake_revisions_work_too(gateway):
    user = gateway.user("lee", "support_agent")
    async with gateway.client(gateway.agent("agent-support-1"), user, mode="legacy") as c:
        names = sorted(t.name for t in (await c.list_tools()).tools)
        result = await c.call_tool("get_ticket", {"ticket_id": "T-1"})
    assert names == ["get_ticket", "search_kb"]
    # The registry strips the customer's payment method before the agent sees it.
    assert "payment_method" not in result.structured_content["customer"]
    assert result.structured_content["customer"]["name"] == "Dana Smith"


async def test_a_servers_question_reaches_the_client_in_every_revision(gateway, upstream):
    """A server that asks the user something mid-call: a 2026-07-28 client
    gets its InputRequiredResult and repeats the call with the answer (each
    round decided and recorded); a client of a revision with sessions gets
    the server's elicitation request relayed during the one call."""
    agent = gateway.agent("meridian-loan-agent")
    user = gateway.user("ana", "underwriter", org=MERIDIAN)
    asked = []

    async def answer(context, params):
        asked.append(params.message)
        return ElicitResult(action="accept", content={"reason": "income does not match the payslips"})

    def records_for(application_id):
        return [r for r in decision_records(gateway)
                if r.get("tool_id") == "flag_for_review" and application_id in json.dumps(r.get("arguments"))]

    for mode, application_id in (("auto", "APP-ASK-1"), ("legacy", "APP-ASK-2")):
        before = upstream.executions("flag_for_review")
        async with gateway.client(agent, user, run_id=f"run-ask-{mode}", mode=mode,
                                  elicitation_callback=answer) as c:
            result = await c.call_tool("flag_for_review", {"application_id": application_id})
        assert not result.is_error, text(result)
        assert result.structured_content["reason"] == "income does not match the payslips"
        assert asked[-1] == f"Why should {application_id} be reviewed?"
        assert upstream.executions("flag_for_review") == before + 1

        def executions():
            return sorted((r.get("execution") or {}).get("status") for r in records_for(application_id)
                          if r.get("execution"))

        if mode == "auto":
            # Two rounds, two decisions; the first round's execution asked.
            expected = ["input_required", "succeeded"]
        else:
            expected = ["succeeded"]
        wait_for(f"{mode} executions recorded", lambda: executions() == expected, timeout=10)
        decisions = [r for r in records_for(application_id) if not r.get("execution")]
        assert len(decisions) == len(expected) and all(d["decision"] == "allow" for d in decisions)
    assert len(asked) == 2


def test_mcp_refuses_callers_without_credentials_and_names_its_metadata(gateway):
    status, headers, _ = http(
        gateway.url,
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"Accept": "application/json, text/event-stream"},
    )
    assert status == 401
    challenge = {k.lower(): v for k, v in headers.items()}["www-authenticate"]
    assert "resource_metadata=" in challenge and "/.well-known/oauth-protected-resource/mcp" in challenge
    status, _, body = http(f"{gateway.base}/.well-known/oauth-protected-resource/mcp")
    assert status == 200 and json.loads(body)["resource"].endswith("/mcp")
    # A user token is required, as on /v1/authorize.
    status, _, body = http(
        gateway.url,
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {gateway.agent('agent-support-1')}"},
    )
    assert status == 401 and json.loads(body)["error"]["code"] == "missing_user_token"


def test_registry_import_proposes_entries_from_the_servers_own_list(gateway, tmp, upstream):
    # The credential from the data directory's secrets folder, this time.
    secrets = gateway.data / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "credit-bureau").write_text("bureau-secret-from-a-file\n")
    out = gateway.run("registry", "import", "--server", "credit-bureau", "--policy", str(tmp / "policies"))
    assert "already registered: get_credit_report (registry id `pull_credit_report`)" in out
    proposal = out[out.index("\ntools:\n"):]
    # Annotated read-only upstream: a low-risk read to review.
    lookup = proposal[proposal.index("  - id: lookup_regulatory_requirements"):]
    assert "category: read" in lookup.split("  - id:", 2)[1]
    # Unannotated: destructive, high risk, waiting for a human; nobody may call it yet.
    export = proposal[proposal.index("  - id: export_all_customers"):]
    assert "category: delete" in export and "risk: high" in export
    assert "approval: { approver_group: REVIEW-ME }" in export and "allowed_roles: []" in export
    assert "Bearer bureau-secret-from-a-file" in upstream.stats()["authorization"]
