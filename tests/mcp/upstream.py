#!/usr/bin/env python3
"""An upstream MCP server for the gateway's tests and for trying it out.

Written with the official MCP Python SDK (PyPI `mcp`), it implements every
tool of the example registry (`infra/policies/registry.yaml`) under the
names its servers give them, plus one tool the registry does not know
(`export_all_customers`, which the gateway must hide and deny). It counts
how often each tool runs and keeps the credentials it was sent, which
`GET /stats` returns, so that tests can check what reached it.

usage: upstream.py [--port 8931] [--name NAME] [--stdio]
"""

import argparse
import asyncio
import json
import os
import sys
import threading
from typing import Any

from pydantic import BaseModel

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult, ToolAnnotations

# Read tools say so; the rest say nothing (MCP's default: destructive), but
# for one that says it only adds.
READ_ONLY = ToolAnnotations(readOnlyHint=True)
NOT_DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=False)

class Reason(BaseModel):
    reason: str


REASON_SCHEMA = {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]}

STATS: dict[str, Any] = {"executions": {}, "authorization": [], "on_behalf_of": [], "requests": 0}
LOCK = threading.Lock()


def ran(tool: str) -> int:
    with LOCK:
        n = STATS["executions"].get(tool, 0) + 1
        STATS["executions"][tool] = n
        return n


def build(name: str) -> MCPServer:
    app = MCPServer(name, instructions="Example tools for agent-governance's MCP gateway.")

    @app.tool(description="Search the support knowledge base", annotations=READ_ONLY)
    def search_kb(query: str, limit: int = 3) -> dict[str, Any]:
        ran("search_kb")
        return {"query": query, "articles": [f"KB-{i}: about {query}" for i in range(1, limit + 1)], "server": name}

    @app.tool(description="Read one support ticket", annotations=READ_ONLY)
    def get_ticket(ticket_id: str) -> dict[str, Any]:
        ran("get_ticket")
        return {
            "ticket_id": ticket_id,
            "subject": "Card declined",
            "customer": {"name": "Dana Smith", "email": "dana@example.com", "payment_method": {"iban": "DE89370400440532013000"}},
        }

    @app.tool(description="Search production logs", annotations=READ_ONLY)
    def search_logs(query: str, service: str = "all") -> dict[str, Any]:
        ran("search_logs")
        return {"query": query, "service": service, "lines": ["12:00:01 error timeout"]}

    @app.tool(description="Open an incident and page the on-call engineer")
    def open_incident(title: str, severity: int) -> dict[str, Any]:
        return {"incident": f"INC-{ran('open_incident')}", "title": title, "severity": severity}

    @app.tool(description="Publish an update on the public status page")
    def publish_status_page(message: str) -> str:
        ran("publish_status_page")
        return f"published: {message}"

    @app.tool(description="The bureau's credit report of an applicant, with its scoring model's internals", annotations=READ_ONLY)
    def get_credit_report(applicant_id: str) -> dict[str, Any]:
        ran("get_credit_report")
        return {
            "applicant_id": applicant_id,
            "score": 712,
            "tradelines": 9,
            "raw_fico_model": {"version": "FICO 10T", "weights": [0.35, 0.30, 0.15, 0.10, 0.10], "reason_codes": ["D4", "K1"]},
        }

    @app.tool(description="Compute an application's credit risk score", annotations=READ_ONLY)
    def calculate_risk_score(application_id: str) -> dict[str, Any]:
        ran("calculate_risk_score")
        return {"application_id": application_id, "risk_score": 0.18, "band": "B"}

    @app.tool(description="Look up the lending rules that apply in a state", annotations=READ_ONLY)
    def lookup_regulatory_requirements(state: str, product: str) -> dict[str, Any]:
        ran("lookup_regulatory_requirements")
        return {"state": state, "product": product, "max_apr": 36.0, "disclosures": ["TILA"]}

    @app.tool(description="Write an underwriting recommendation to the loan management system")
    async def generate_recommendation(application_id: str, recommendation: str) -> dict[str, Any]:
        # A slow write, so that concurrent duplicates overlap.
        await asyncio.sleep(0.5)
        return {"application_id": application_id, "recommendation": recommendation, "write": ran("generate_recommendation")}

    @app.tool(description="Flag an application for manual review; without a reason, asks the user for one", annotations=NOT_DESTRUCTIVE)
    async def flag_for_review(application_id: str, ctx: Context, reason: str = "") -> dict[str, Any] | InputRequiredResult:
        if not reason:
            question = f"Why should {application_id} be reviewed?"
            if ctx.session.protocol_version >= "2026-07-28":
                # Stateless: the question is a result; the client repeats
                # the call with its answer (SEP-2322).
                answer = (ctx.input_responses or {}).get("reason")
                if not isinstance(answer, ElicitResult):
                    return InputRequiredResult(input_requests={"reason": ElicitRequest(
                        params=ElicitRequestFormParams(message=question, requested_schema=REASON_SCHEMA))})
                reason = (answer.content or {}).get("reason", "") if answer.action == "accept" else ""
            else:
                # A session: the question is a request to the client during the call.
                answer = await ctx.elicit(message=question, schema=Reason)
                reason = answer.data.reason if answer.action == "accept" else ""
        return {"application_id": application_id, "task": f"REV-{ran('flag_for_review')}", "reason": reason}

    @app.tool(description="Erase a customer's record")
    def delete_customer_record(customer_id: str) -> str:
        ran("delete_customer_record")
        return f"erased {customer_id}"

    @app.tool(description="Move money between accounts")
    def transfer_funds(amount: float, currency: str, to_account: str) -> dict[str, Any]:
        return {"transfer": f"TR-{ran('transfer_funds')}", "amount": amount, "currency": currency, "to_account": to_account}

    @app.tool(description="Export every customer record (not in the registry: never offered)")
    def export_all_customers() -> str:
        ran("export_all_customers")
        return "all customers"

    return app


class Recorder:
    """ASGI middleware: counts requests and keeps the credentials they carried."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/mcp"):
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            with LOCK:
                STATS["requests"] += 1
                for header, key in (("authorization", "authorization"), ("x-on-behalf-of", "on_behalf_of")):
                    if header in headers and headers[header] not in STATS[key]:
                        STATS[key].append(headers[header])
        if scope["type"] == "http" and scope["path"] == "/stats":
            with LOCK:
                body = json.dumps(STATS).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def main():
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--port", type=int, default=8931)
    args.add_argument("--name", default="example-upstream")
    args.add_argument("--stdio", action="store_true", help="speak over stdin and stdout instead of HTTP")
    args.add_argument("--exit-with-stdin", action="store_true", help="exit when stdin closes (its parent is gone)")
    opts = args.parse_args()
    app = build(opts.name)
    if opts.stdio:
        app.run(transport="stdio")
        return
    import uvicorn

    if opts.exit_with_stdin:
        def watch():
            sys.stdin.read()
            os._exit(0)

        threading.Thread(target=watch, daemon=True).start()
    uvicorn.run(Recorder(app.streamable_http_app()), host="127.0.0.1", port=opts.port, log_level="warning")


if __name__ == "__main__":
    main()
