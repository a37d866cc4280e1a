#!/usr/bin/env python3
"""An upstream for the MCP conformance suite (`@modelcontextprotocol/conformance`).

Written with the official MCP Python SDK (PyPI `mcp`), it serves the tools,
resources and prompts that the suite's server scenarios call by name
(`test_simple_text`, `test://static-text`, `test_simple_prompt`, ...), so
that the suite can be run against it directly and through the gateway
(`run.py` beside this file), and the two results compared.

usage: everything.py [--port 8940]
"""

import argparse
import asyncio
import base64
import itertools
import json
import logging
from typing import Annotated, Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer, RequestStateSecurity
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.server.mcpserver.tools import Tool
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    Completion,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    JSONRPCMessage,
    ListRootsRequest,
    ListRootsResult,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)

log = logging.getLogger("everything")

# A 1x1 PNG and a WAV file with a single silent sample.
PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_SILENCE = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

# The tool whose input schema exercises JSON Schema 2020-12 (SEP-1613, SEP-2106).
SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


class MemoryEvents(EventStore):
    """Every SSE event in memory, so that a client can resume a stream the
    server closed (SEP-1699 polling)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, JSONRPCMessage | None]] = []
        self.ids = itertools.count(1)

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        event_id = str(next(self.ids))
        self.events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        stream = next((s for s, e, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        for s, e, message in self.events:
            if s == stream and int(e) > int(last_event_id) and message is not None:
                await send_callback(EventMessage(message, e))
        return stream


def elicit_name(message: str = "What is your name?") -> ElicitRequest:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def elicit_confirmation() -> ElicitRequest:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    return ElicitRequest(params=ElicitRequestFormParams(message="Please confirm", requested_schema=schema))


def sample(text: str, max_tokens: int) -> CreateMessageRequest:
    return CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))],
            max_tokens=max_tokens,
        )
    )


def answered(ctx: Context, *keys: str) -> dict[str, Any] | None:
    """The client's answers to this call's input requests, if all `keys` are there."""
    responses = ctx.input_responses or {}
    return dict(responses) if all(k in responses for k in keys) else None


class Contact(BaseModel):
    username: str = Field(description="User's response")
    email: str = Field(description="User's email address")


class Defaults(BaseModel):
    """SEP-1034: a default for every primitive type."""

    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: str = Field(default="active", description="User status", json_schema_extra={"enum": ["active", "inactive", "pending"]})
    verified: bool = Field(default=True, description="Verification status")


class Enums(BaseModel):
    """SEP-1330: the five ways to offer a choice."""

    untitledSingle: str = Field(description="Plain enum", json_schema_extra={"enum": ["option1", "option2", "option3"]})
    titledSingle: str = Field(
        description="Titled options",
        json_schema_extra={"oneOf": [{"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"}, {"const": "value3", "title": "Third Option"}]},
    )
    legacyEnum: str = Field(
        description="Deprecated enumNames",
        json_schema_extra={"enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
    )
    untitledMulti: list[str] = Field(description="Plain multi-select", json_schema_extra={"items": {"type": "string", "enum": ["option1", "option2", "option3"]}})
    titledMulti: list[str] = Field(
        description="Titled multi-select",
        json_schema_extra={"items": {"anyOf": [{"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"}, {"const": "value3", "title": "Third Choice"}]}},
    )


async def elicited(ctx: Context, message: str, schema: type[BaseModel], prefix: str) -> str:
    try:
        result = await ctx.elicit(message=message, schema=schema)
    except Exception as e:  # a client without elicitation
        return f"Elicitation not supported: {e}"
    content = result.data.model_dump_json() if result.action == "accept" else "{}"
    return f"{prefix}: action={result.action}, content={content}"


def build() -> MCPServer:
    def json_schema_2020_12_tool() -> str:
        """Declares an input schema with JSON Schema 2020-12 keywords"""
        return "json_schema_2020_12_tool"

    schema_tool = Tool.from_function(json_schema_2020_12_tool).model_copy(update={"parameters": SCHEMA_2020_12})
    app = MCPServer(
        "agent-governance-conformance-upstream",
        version="1.0.0",
        instructions="The fixtures of the MCP conformance suite's server scenarios.",
        tools=[schema_tool],
        # A fixed key: every run of the suite talks to one process anyway.
        request_state_security=RequestStateSecurity(keys=[b"agent-governance-conformance-state-key-0123"]),
    )
    subscriptions: set[str] = set()

    # --- content of every kind ---------------------------------------------
    @app.tool(description="Returns one text block")
    def test_simple_text() -> str:
        return "This is a simple text response for testing."

    @app.tool(description="Returns one PNG image")
    def test_image_content() -> list[ImageContent]:
        return [ImageContent(type="image", data=PNG_1X1, mime_type="image/png")]

    @app.tool(description="Returns one WAV clip")
    def test_audio_content() -> list[AudioContent]:
        return [AudioContent(type="audio", data=WAV_SILENCE, mime_type="audio/wav")]

    @app.tool(description="Returns an embedded text resource")
    def test_embedded_resource() -> list[EmbeddedResource]:
        resource = TextResourceContents(uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content.")
        return [EmbeddedResource(type="resource", resource=resource)]

    @app.tool(description="Returns text, an image and an embedded resource")
    def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        resource = TextResourceContents(uri="test://mixed-content-resource", mime_type="application/json", text=json.dumps({"test": "data", "value": 123}))
        return [
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=PNG_1X1, mime_type="image/png"),
            EmbeddedResource(type="resource", resource=resource),
        ]

    @app.tool(description="Always fails")
    def test_error_handling() -> str:
        raise RuntimeError("This tool intentionally returns an error for testing")

    # --- notifications during a call ---------------------------------------
    @app.tool(description="Logs three messages while it runs")
    async def test_tool_with_logging(ctx: Context) -> str:
        for i, message in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
            if i:
                await asyncio.sleep(0.05)
            await ctx.info(message)
        return "Tool with logging executed successfully"

    @app.tool(description="Logs one message (stateless logging checks)")
    async def test_logging_tool(ctx: Context) -> str:
        await ctx.info("test_logging_tool ran")
        return "logged"

    @app.tool(description="Reports progress 0, 50 and 100 of 100")
    async def test_tool_with_progress(ctx: Context) -> str:
        for i, step in enumerate((0, 50, 100)):
            if i:
                await asyncio.sleep(0.05)
            await ctx.report_progress(progress=step, total=100, message=f"step {step} of 100")
        return "Tool with progress executed successfully"

    @app.tool(description="Closes its SSE stream mid-call; the client resumes it (SEP-1699)")
    async def test_reconnection(ctx: Context) -> str:
        await ctx.info("Before disconnect")
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        await ctx.info("After reconnect")
        return "Reconnection test completed"

    # --- requests to the client during a call --------------------------------
    @app.tool(description="Asks the client's model to answer a prompt")
    async def test_sampling(prompt: str, ctx: Context) -> str:
        try:
            result = await ctx.session.create_message(
                messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
                max_tokens=100,
                related_request_id=ctx.request_id,
            )
        except Exception as e:  # a client without sampling
            return f"Sampling not supported: {e}"
        text = result.content.text if result.content.type == "text" else "(not text)"
        return f"LLM response: {text}"

    @app.tool(description="Asks the user for a username and an email address")
    async def test_elicitation(message: str, ctx: Context) -> str:
        return await elicited(ctx, message, Contact, "User response")

    @app.tool(description="Asks the user with defaults for every primitive type (SEP-1034)")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        return await elicited(ctx, "Please provide user information", Defaults, "Elicitation completed")

    @app.tool(description="Asks the user with every kind of enum (SEP-1330)")
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        return await elicited(ctx, "Please choose", Enums, "Elicitation completed")

    @app.tool(description="Needs the client's sampling capability")
    async def test_missing_capability(ctx: Context) -> str:
        caps = ctx.client_capabilities
        if caps is None or caps.sampling is None:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="this tool needs the client's sampling capability",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        return "sampling declared"

    @app.tool(description="Mirrors an argument in the Mcp-Param-Region header (SEP-2243)")
    def test_x_mcp_header(
        region: Annotated[str, Field(description="The region", json_schema_extra={"x-mcp-header": "Region"})] = "<none>",
    ) -> str:
        return f"region={region}"

    # --- multi round-trip results (SEP-2322, 2026-07-28) ---------------------
    @app.tool(description="Asks for a name through an input_required result")
    async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
        if (got := answered(ctx, "user_name")) is None:
            return InputRequiredResult(input_requests={"user_name": elicit_name()})
        answer = got["user_name"]
        name = (answer.content or {}).get("name", "stranger") if isinstance(answer, ElicitResult) else "stranger"
        return f"Hello, {name}!"

    @app.tool(description="Asks the client's model a question through an input_required result")
    async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
        if (got := answered(ctx, "capital_question")) is None:
            return InputRequiredResult(input_requests={"capital_question": sample("What is the capital of France?", 100)})
        answer = got["capital_question"]
        text = answer.content.text if isinstance(answer, CreateMessageResult) and answer.content.type == "text" else "?"
        return f"The model answered: {text}"

    @app.tool(description="Asks for the client's roots through an input_required result")
    async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
        if (got := answered(ctx, "client_roots")) is None:
            return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})
        roots = got["client_roots"]
        uris = [str(r.uri) for r in roots.roots] if isinstance(roots, ListRootsResult) else []
        return f"Roots: {', '.join(uris) or 'none'}"

    @app.tool(description="Round-trips an opaque requestState")
    async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
        if answered(ctx, "confirm") is not None and ctx.request_state == "awaiting-confirmation":
            return "state-ok: confirmed"
        return InputRequiredResult(input_requests={"confirm": elicit_confirmation()}, request_state="awaiting-confirmation")

    @app.tool(description="Asks for elicitation, sampling and roots at once")
    async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
        if answered(ctx, "user_name", "greeting", "client_roots") is not None:
            return "All three inputs received."
        return InputRequiredResult(
            input_requests={"user_name": elicit_name(), "greeting": sample("Generate a greeting", 50), "client_roots": ListRootsRequest()},
            request_state="three-inputs",
        )

    @app.tool(description="Three rounds, the state changing in each")
    async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
        state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
        responses = ctx.input_responses or {}
        if state.get("round") == 1 and "step1" in responses:
            step1 = responses["step1"]
            name = (step1.content or {}).get("name") if isinstance(step1, ElicitResult) else None
            schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
            step2 = ElicitRequest(params=ElicitRequestFormParams(message="Step 2: What is your favorite color?", requested_schema=schema))
            return InputRequiredResult(input_requests={"step2": step2}, request_state=json.dumps({"round": 2, "name": name}))
        if state.get("round") == 2 and "step2" in responses:
            step2 = responses["step2"]
            color = (step2.content or {}).get("color") if isinstance(step2, ElicitResult) else None
            return f"{state.get('name')} likes {color}."
        return InputRequiredResult(
            input_requests={"step1": elicit_name("Step 1: What is your name?")}, request_state=json.dumps({"round": 1})
        )

    @app.tool(description="Its requestState is signed; a tampered one is refused by the SDK")
    async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
        if ctx.request_state is None:
            return InputRequiredResult(input_requests={"confirm": elicit_confirmation()}, request_state="first-round")
        return f"state-ok: {ctx.request_state}"

    @app.tool(description="Asks only for what the client declared it can answer")
    async def test_input_required_result_capabilities(ctx: Context) -> InputRequiredResult:
        caps = ctx.client_capabilities
        requests: dict[str, InputRequest] = {}
        if caps is None or caps.sampling is not None:
            requests["sample"] = sample("Say hello", 50)
        if caps is None or caps.elicitation is not None:
            requests["ask"] = elicit_name()
        return InputRequiredResult(input_requests=requests, request_state="capability-gated")

    # --- list changes (subscriptions/listen, 2026-07-28) ---------------------
    def dynamic() -> str:
        """Exists only for a moment"""
        return "dynamic"

    @app.tool(description="Adds and removes a tool, then says the list changed")
    async def test_trigger_tool_change(ctx: Context) -> str:
        app.add_tool(dynamic, name="test_dynamic_tool")
        app.remove_tool("test_dynamic_tool")
        await ctx.notify_tools_changed()
        return "tool list changed"

    @app.tool(description="Adds and removes a prompt, then says the list changed")
    async def test_trigger_prompt_change(ctx: Context) -> str:
        app.add_prompt(Prompt.from_function(dynamic, name="test_dynamic_prompt", description="dynamic"))
        app.remove_prompt("test_dynamic_prompt")
        await ctx.notify_prompts_changed()
        return "prompt list changed"

    # --- resources -----------------------------------------------------------
    @app.resource("test://static-text", description="A static text resource", mime_type="text/plain")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @app.resource("test://static-binary", description="A static binary resource (a PNG)", mime_type="image/png")
    def static_binary() -> bytes:
        return base64.b64decode(PNG_1X1)

    @app.resource("test://template/{id}/data", description="Data for an id", mime_type="application/json")
    def template_data(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @app.resource("test://watched-resource", description="A resource to subscribe to", mime_type="text/plain")
    def watched() -> str:
        return "Watched resource content"

    # --- prompts -------------------------------------------------------------
    @app.prompt(description="A prompt without arguments")
    def test_simple_prompt() -> list[UserMessage]:
        return [UserMessage(role="user", content=TextContent(type="text", text="This is a simple prompt for testing."))]

    @app.prompt(description="A prompt with two arguments")
    def test_prompt_with_arguments(
        arg1: Annotated[str, Field(description="First test argument")],
        arg2: Annotated[str, Field(description="Second test argument")],
    ) -> list[UserMessage]:
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(role="user", content=TextContent(type="text", text=text))]

    @app.prompt(description="A prompt embedding a resource")
    def test_prompt_with_embedded_resource(
        resourceUri: Annotated[str, Field(description="URI of the resource to embed")],
    ) -> list[UserMessage]:
        resource = TextResourceContents(uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing.")
        return [
            UserMessage(role="user", content=EmbeddedResource(type="resource", resource=resource)),
            UserMessage(role="user", content=TextContent(type="text", text="Please process the embedded resource above.")),
        ]

    @app.prompt(description="A prompt with an image")
    def test_prompt_with_image() -> list[UserMessage]:
        return [
            UserMessage(role="user", content=ImageContent(type="image", data=PNG_1X1, mime_type="image/png")),
            UserMessage(role="user", content=TextContent(type="text", text="Please analyze the image above.")),
        ]

    @app.prompt(description="A prompt that first asks the user for context (SEP-2322)")
    async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
        if (got := answered(ctx, "user_context")) is None:
            schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
            ask = ElicitRequest(params=ElicitRequestFormParams(message="What context should the prompt use?", requested_schema=schema))
            return InputRequiredResult(input_requests={"user_context": ask})
        answer = got["user_context"]
        context = (answer.content or {}).get("context", "?") if isinstance(answer, ElicitResult) else "?"
        return [UserMessage(role="user", content=TextContent(type="text", text=f"Use this context: {context}"))]

    # --- the remaining methods of the 2025 revisions --------------------------
    async def set_level(ctx: ServerRequestContext, params: SetLevelRequestParams) -> EmptyResult:
        log.info("log level %s", params.level)
        return EmptyResult()

    async def subscribe(ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
        subscriptions.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
        subscriptions.discard(str(params.uri))
        return EmptyResult()

    # MCPServer has no public registration for these three yet.
    lowlevel = app._lowlevel_server  # noqa: SLF001
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)

    @app.completion()
    async def complete(ref, argument, context) -> Completion:
        options = {"arg1": ["paris", "park", "party"], "arg2": ["world", "word"]}.get(argument.name, [])
        values = [v for v in options if v.startswith(argument.value or "")]
        return Completion(values=values, total=len(values), has_more=False)

    @app.custom_route("/healthz", methods=["GET"])
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return app


def main():
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--port", type=int, default=8940)
    opts = args.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import uvicorn

    app = build().streamable_http_app(event_store=MemoryEvents(), retry_interval=100)
    uvicorn.run(app, host="127.0.0.1", port=opts.port, log_level="warning")


if __name__ == "__main__":
    main()
