"""What an MCP caller sees when its key cannot be a key, its arguments are out of range, or something fails.

The MCP server runs in-process behind the SDK's own client, over a fake control plane that refuses or fails each
call as told: a refusal reads as the control plane wrote it, a failure shows only a fixed sentence or an opaque error
id (also in the log), never a class name, an address or SQL. `test_mcp.py` covers the same over real processes.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.client import ApiError
from pacer_common.clock import FakeClock
from pacer_mcp.server import EnvironmentKey, build_server, guarded

pytestmark = pytest.mark.timeout(30)

KEY = "pk_abcdefgh_" + "k" * 40
ERROR_ID = "err_01jdz8k2m3n4p5q6r7s8t9v0wx"


class ScriptedControl:
    """Fails every call with `failure` (an ApiError or any exception) or answers it empty; records the keys sent."""

    def __init__(self) -> None:
        self.failure: BaseException | None = None
        self.keys: list[str | None] = []

    async def call(self, rpc: str, request: Any, key: str | None) -> Any:
        self.keys.append(key)
        if self.failure is not None:
            raise self.failure
        return getattr(pb, f"{rpc}Response")()


@pytest.fixture
def control() -> ScriptedControl:
    return ScriptedControl()


def connect(control: ScriptedControl) -> Client:
    """The SDK's client on the server in-process (entered in each test: anyio scopes cannot span fixture tasks)."""
    return Client(build_server(control, lambda request: KEY, FakeClock()))


async def refusal(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    assert result.is_error
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@pytest.mark.parametrize(
    ("failure", "shown"),
    [
        (ApiError("INTERNAL", f"internal error {ERROR_ID} (logged by the server)"), f"internal error {ERROR_ID}"),
        (
            ApiError("INTERNAL", 'psycopg.errors.UndefinedTable: relation "jobs" does not exist\nSELECT * FROM jobs'),
            "the Pacer control plane failed to handle the call",
        ),
        (ApiError("INTERNAL", f"internal error {ERROR_ID}: KeyError"), "the Pacer control plane failed"),
        (ApiError("UNKNOWN", "Unexpected <class 'KeyError'>: 'tenant'"), "the Pacer control plane failed"),
        (
            ApiError("UNAVAILABLE", "failed to connect to all addresses; last error: ipv4:10.0.0.5:50051", (), (), 2),
            "the Pacer control plane is unavailable",
        ),
        (ApiError("DEADLINE_EXCEEDED", "Deadline Exceeded"), "the Pacer control plane did not answer in time"),
        (ApiError("DATA_LOSS", "checksum mismatch in segment 7"), "the Pacer control plane failed"),
    ],
    ids=["internal-opaque", "internal-sql", "internal-id-and-more", "unknown", "unavailable", "deadline", "data-loss"],
)
@pytest.mark.asyncio
async def test_a_failure_of_the_control_plane_shows_none_of_its_text(control, failure, shown):
    control.failure = failure
    async with connect(control) as client:
        text = await refusal(client, "getJob", jobId="job_1")

    code = failure.code
    assert text.startswith(f"{code}: {shown}"), text
    for inside in ("psycopg", "SELECT", "KeyError", "<class", "10.0.0.5", "ipv4", "checksum"):
        assert inside not in text, inside
    if failure.retry_after_s is not None:
        assert "Retry after 2 seconds." in text


@pytest.mark.asyncio
async def test_a_refusal_reads_as_the_control_plane_wrote_it(control):
    control.failure = ApiError("NOT_FOUND", "job 'job_1' not found")
    async with connect(control) as client:
        text = await refusal(client, "getJob", jobId="job_1")
    assert text.startswith("NOT_FOUND: job 'job_1' not found")


@pytest.mark.asyncio
async def test_a_bug_costs_one_call_and_shows_only_an_error_id_that_is_logged(control, caplog):
    control.failure = RuntimeError("SELECT secret FROM api_keys")
    async with connect(control) as client:
        text = await refusal(client, "getJob", jobId="job_1")
        control.failure = None
        assert not (await client.call_tool("listJobs", {})).is_error  # the session lives on

    [logged] = [r for r in caplog.records if getattr(r, "event", None) == "mcp.tool_failed"]
    assert logged.exc_info is not None  # the traceback is in the log, and only there
    assert text.startswith(f"INTERNAL: internal error {logged.error_id} (logged by the MCP server)")
    assert "RuntimeError" not in text
    assert "SELECT" not in text


@pytest.mark.parametrize(
    "key",
    [f"pk_\u00fc{KEY}", f"pk_\u212a{KEY}", "pk_a\udcffb", "pk_a\tb", "pk_a\x01b", "pk_a\x7fb", "k" * 300],
    ids=["utf8", "kelvin", "not-utf8", "tab", "ctrl-01", "ctrl-7f", "too-long"],
)
@pytest.mark.asyncio
async def test_an_environment_key_that_cannot_be_a_key_is_unauthenticated(control, key):
    server = build_server(control, EnvironmentKey(key, "var"), FakeClock())
    async with Client(server) as client:
        text = await refusal(client, "listJobs")
    assert text.startswith("UNAUTHENTICATED: the API key in the MCP server's environment is not a Pacer API key")
    assert control.keys == []


@pytest.mark.asyncio
async def test_a_status_filter_out_of_range_is_invalid_argument_naming_it(control):
    async with connect(control) as client:
        jobs = await refusal(client, "listJobs", status="99")
        runs_number = await refusal(client, "listRuns", status=99)
        runs_name = await refusal(client, "listRuns", status="RUN_STATUS_FILTER_FAILURE")
    assert jobs.startswith("INVALID_ARGUMENT")
    assert "- status: must be one of: active, archived, all" in jobs
    assert "- status: must be of type string" in runs_number
    assert "- status: must be one of: success, failure, running, all" in runs_name
    assert control.keys == []


@pytest.mark.asyncio
async def test_a_handler_that_raises_is_an_opaque_internal_error(caplog):
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        raise KeyError("SELECT secret FROM api_keys")

    server: Server[Any] = Server("broken", on_list_tools=guarded(list_tools))
    async with Client(server) as client:
        with pytest.raises(MCPError) as raised:
            await client.list_tools()

    assert raised.value.code == types.INTERNAL_ERROR
    [logged] = [r for r in caplog.records if getattr(r, "event", None) == "mcp.request_failed"]
    assert raised.value.error.message == f"internal error {logged.error_id} (logged by the MCP server)"
    assert logged.exc_info is not None


@pytest.mark.asyncio
async def test_an_unknown_tool_name_is_not_echoed_whole(control):
    async with connect(control) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("x" * 10_000, {})
    assert raised.value.code == types.INVALID_PARAMS
    assert len(raised.value.error.message) < 200
