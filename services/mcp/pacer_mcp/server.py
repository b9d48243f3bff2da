"""The MCP server: the 17 tools and the scheduling-rules resource on the SDK's low-level `Server`.

Each caller brings its own API key. Over stdio that is the key of the person who started the process
(`PACER_API_KEY`, else `var/dev-api-key`); over streamable HTTP it is the `Authorization: Bearer <key>` header of
each HTTP request, with no fallback to any key of the server's own.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from starlette.requests import Request

from pacer_common.client import ApiError, api_key
from pacer_common.clock import Clock
from pacer_common.credentials import is_token_shaped, token_of
from pacer_common.guard import internal_message
from pacer_common.ids import new_id
from pacer_mcp import rules
from pacer_mcp.metrics import McpMetrics
from pacer_mcp.tools import Control, ToolOutcome, ToolSpec, refused, result_json, run_tool, tool_specs

log = logging.getLogger("pacer.mcp")
Ctx = TypeVar("Ctx")
P = TypeVar("P")
R = TypeVar("R")

UNKNOWN_NAME_CHARS = 100

KeySource = Callable[[object], str]
"""Given the transport's request (a Starlette Request over HTTP, None over stdio), the caller's key; raises ApiError."""

INSTRUCTIONS = (
    "Pacer is an adaptive scheduler for HTTP endpoints. Jobs group endpoints; each endpoint is an HTTP call with a "
    "cron or interval baseline. Steer endpoints at run time with applyIntervalHint, scheduleOneShotRun, "
    "pauseOrResumeEndpoint, clearAdaptiveHints and resetFailureCount; read outcomes with listRuns, getRunDetails and "
    "summarizeEndpointHealth. Read the resource pacer://scheduling-rules for the rules and recipes. Durations are "
    "milliseconds unless named Minutes or Hours; times are ISO 8601 UTC. Always give a reason when changing things."
)


class EnvironmentKey:
    """stdio: the key of whoever started the server, read at each call so a dev key written later is picked up."""

    def __init__(self, configured: str, var_dir: str) -> None:
        self._configured = configured
        self._var_dir = var_dir

    def __call__(self, request: object) -> str:
        key = api_key(self._configured, self._var_dir)
        if not key:
            raise ApiError(
                "UNAUTHENTICATED",
                "no API key: set PACER_API_KEY in the MCP server's environment (or PACER_VAR_DIR to the folder "
                "holding dev-api-key)",
            )
        if not is_token_shaped(key):
            raise ApiError("UNAUTHENTICATED", "the API key in the MCP server's environment is not a Pacer API key")
        return key


def bearer_key(request: object) -> str:
    """HTTP: the key in this request's `Authorization: Bearer <key>` header; raises ApiError(UNAUTHENTICATED)."""
    header = request.headers.get("authorization") if isinstance(request, Request) else None
    if not header:
        raise ApiError("UNAUTHENTICATED", "no API key: send 'Authorization: Bearer <key>' with every request")
    key = token_of(header)
    if key is None:
        raise ApiError("UNAUTHENTICATED", "the Authorization header must be 'Bearer <key>'")
    return key


class PacerTools:
    """The MCP request handlers: list and call the tools, list and read the rules resource."""

    def __init__(
        self,
        specs: tuple[ToolSpec, ...],
        control: Control,
        key_source: KeySource,
        clock: Clock,
        metrics: McpMetrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else McpMetrics()
        self._specs = {spec.name: spec for spec in specs}
        self._tools = [_mcp_tool(spec) for spec in specs]
        self._control = control
        self._key_source = key_source
        self._clock = clock

    def input_schema(self, name: str) -> dict[str, Any] | None:
        """A tool's input schema by name; None for an unknown tool."""
        spec = self._specs.get(name)
        return spec.input_schema if spec is not None else None

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """All 17 tools in one page."""
        return types.ListToolsResult(tools=self._tools)

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        """Run a tool. A refused or failed call is a tool error (isError); only an unknown tool name is a protocol
        error."""
        spec = self._specs.get(params.name)
        if spec is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name[:UNKNOWN_NAME_CHARS]!r}; see tools/list")
        started = time.monotonic()
        outcome = await self._outcome(spec, params.arguments or {}, ctx.request)
        elapsed_s = time.monotonic() - started
        code = outcome.text.partition(":")[0] if outcome.is_error else "OK"
        self._metrics.observe(spec.name, code, elapsed_s)
        log.info(
            "tool called",
            extra={
                "event": "mcp.tool_called",
                "tool": spec.name,
                "outcome": code,
                "duration_ms": round(elapsed_s * 1000),
            },
        )
        return _call_result(outcome)

    async def _outcome(self, spec: ToolSpec, arguments: Mapping[str, Any], request: object) -> ToolOutcome:
        try:
            return await run_tool(spec, arguments, self._control, lambda: self._key_source(request), self._clock.now())
        except Exception:  # a bug must cost one call, never the server or the caller's session
            error_id = new_id("err")
            log.exception("tool failed", extra={"event": "mcp.tool_failed", "tool": spec.name, "error_id": error_id})
            return refused(ApiError("INTERNAL", internal_message(error_id, "the MCP server")))

    async def list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        """The one resource: the scheduling rules."""
        rules_resource = types.Resource(
            uri=rules.RULES_URI,
            name=rules.RULES_NAME,
            title=rules.RULES_TITLE,
            description=rules.RULES_DESCRIPTION,
            mime_type=rules.RULES_MIME_TYPE,
        )
        return types.ListResourcesResult(resources=[rules_resource])

    async def read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        """The rules as markdown; any other URI is an INVALID_PARAMS protocol error."""
        if str(params.uri) != rules.RULES_URI:
            unknown = str(params.uri)[:UNKNOWN_NAME_CHARS]
            raise MCPError(types.INVALID_PARAMS, f"unknown resource {unknown!r}; try {rules.RULES_URI}")
        text = types.TextResourceContents(
            uri=rules.RULES_URI, mime_type=rules.RULES_MIME_TYPE, text=rules.RULES_MARKDOWN
        )
        return types.ReadResourceResult(contents=[text])


def _mcp_tool(spec: ToolSpec) -> types.Tool:
    hints = types.ToolAnnotations(
        read_only_hint=spec.read_only,
        destructive_hint=spec.destructive,
        idempotent_hint=spec.idempotent,
        open_world_hint=False,
    )
    return types.Tool(
        name=spec.name,
        description=spec.description,
        input_schema=spec.input_schema,
        output_schema=spec.output_schema,
        annotations=hints,
    )


def _call_result(outcome: ToolOutcome) -> types.CallToolResult:
    if outcome.structured is None:
        return types.CallToolResult(content=[types.TextContent(text=outcome.text)], is_error=outcome.is_error)
    # The JSON copy is for clients that show only text content (the MCP spec asks for it next to structuredContent).
    content: list[types.ContentBlock] = [
        types.TextContent(text=outcome.text),
        types.TextContent(text=result_json(outcome.structured)),
    ]
    return types.CallToolResult(content=content, structured_content=outcome.structured)


def build_server(
    control: Control,
    key_source: KeySource,
    clock: Clock,
    min_interval_ms: int = 1000,
    metrics: McpMetrics | None = None,
) -> Server[dict[str, Any]]:
    """The MCP server: 17 tools calling `control` with the key `key_source` finds, and the rules resource; tool calls
    are counted in `metrics` when given."""
    handlers = PacerTools(tool_specs(min_interval_ms), control, key_source, clock, metrics)
    return Server(
        "pacer",
        version=_version(),
        title="Pacer adaptive scheduler",
        instructions=INSTRUCTIONS,
        get_tool_input_schema=handlers.input_schema,
        on_list_tools=guarded(handlers.list_tools),
        on_call_tool=guarded(handlers.call_tool),
        on_list_resources=guarded(handlers.list_resources),
        on_read_resource=guarded(handlers.read_resource),
    )


def guarded(handler: Callable[[Ctx, P], Awaitable[R]]) -> Callable[[Ctx, P], Awaitable[R]]:
    """`handler`, with anything it raises besides an MCPError answered as an opaque INTERNAL_ERROR.

    The SDK would put `str(error)` of any other exception in the JSON-RPC error; this logs the traceback under an
    error id and gives the caller only the id.
    """

    @functools.wraps(handler)
    async def guard(ctx: Ctx, params: P) -> R:
        try:
            return await handler(ctx, params)
        except MCPError:
            raise
        except Exception:
            error_id = new_id("err")
            where = {"event": "mcp.request_failed", "handler": handler.__name__, "error_id": error_id}
            log.exception("request failed", extra=where)
            raise MCPError(types.INTERNAL_ERROR, internal_message(error_id, "the MCP server")) from None

    return guard


def _version() -> str:
    try:
        return version("pacer-mcp")
    except PackageNotFoundError:
        return "0"
