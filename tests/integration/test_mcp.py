"""The MCP server against the real control plane, driven by the official MCP SDK client.

`pacer-mcp` runs as a real process: over stdio (the key comes from its environment) and over streamable HTTP (the key
comes from each request's Authorization header). The control plane is the in-process harness on a fresh SQLite and
PostgreSQL database, with a fake clock: times sent to it are computed from `harness.clock`.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent, TextResourceContents
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from prometheus_client.parser import text_string_to_metric_families

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.ports import parse_addr
from pacer_common.settings import process_environment
from tests.support.harness import Harness
from tests.support.polling import eventually
from tests.support.processes import BIN, free_addr, free_port

pytestmark = pytest.mark.timeout(60)

ADDITIONS = {"listAuditRecords"}  # beside the 17 actions
SEED_ACTIONS = {
    "createJob",
    "getJob",
    "listJobs",
    "updateJob",
    "archiveJob",
    "addEndpointToJob",
    "updateEndpointConfig",
    "deleteEndpoint",
    "listJobEndpoints",
    "applyIntervalHint",
    "scheduleOneShotRun",
    "pauseOrResumeEndpoint",
    "clearAdaptiveHints",
    "resetFailureCount",
    "listRuns",
    "getRunDetails",
    "summarizeEndpointHealth",
}
START_DEADLINE_S = 20.0


# -- helpers -------------------------------------------------------------------------------------------------------


def _env(harness: Harness, **extra: str) -> dict[str, str]:
    return {"PACER_CONTROL_ADDR": harness.address, "PACER_LOG_LEVEL": "WARNING", **extra}


@asynccontextmanager
async def stdio_session(harness: Harness, log_path: Path) -> AsyncIterator[ClientSession]:
    """`pacer-mcp --transport stdio` as a subprocess with tenant a's key, behind an initialized ClientSession."""
    params = StdioServerParameters(
        command=str(BIN / "pacer-mcp"),
        args=["--transport", "stdio"],
        env=process_environment(_env(harness, PACER_API_KEY=harness.a.key or "")),  # started as a person would
    )
    with log_path.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def _wait_listening(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll until something accepts connections on `port`; fail early if the process exits."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"pacer-mcp exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
            continue
        return
    raise AssertionError(f"pacer-mcp did not listen on {port} within {START_DEADLINE_S} s:\n{log_path.read_text()}")


@pytest.fixture
def metrics_addr() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def mcp_url(harness: Harness, tmp_path: Path, metrics_addr: str) -> Iterator[str]:
    """`pacer-mcp --transport http` on a free port, listening, its metrics at `metrics_addr`; its /mcp URL.

    The server's own environment holds tenant a's key, which it must never use for HTTP callers.
    """
    port, log_path = free_port(), tmp_path / "mcp-http.log"
    addrs = {"PACER_MCP_ADDR": f"127.0.0.1:{port}", "PACER_METRICS_ADDR": metrics_addr}
    env = process_environment(_env(harness, **addrs, PACER_API_KEY=harness.a.key or ""))
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(BIN / "pacer-mcp"), "--transport", "http"], env=env, stdout=log, stderr=log)
    try:
        _wait_listening(port, process, log_path)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def http_session(url: str, key: str | None) -> AsyncIterator[ClientSession]:
    """An initialized ClientSession over streamable HTTP, sending `Authorization: Bearer <key>` unless key is None."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def _text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def ok(session: ClientSession | Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structured result (the client checked it against the output schema)."""
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    assert not result.is_error, _text(result)
    assert isinstance(result.structured_content, dict)
    assert _text(result)  # the short summary
    return result.structured_content


async def refused(session: ClientSession | Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must be refused; the error text."""
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    assert result.is_error, result.structured_content
    return _text(result)


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def clock_iso(harness: Harness, **delta: float) -> str:
    """The harness's (fake) control-plane time moved by `delta`, as the tools take it."""
    return iso(harness.clock.now() + timedelta(**delta))


# -- stdio ---------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stdio_lists_exactly_the_seed_actions_with_schemas(harness: Harness, tmp_path: Path) -> None:
    async with stdio_session(harness, tmp_path / "mcp.log") as session:
        tools = (await session.list_tools()).tools

    assert {tool.name for tool in tools} == SEED_ACTIONS | ADDITIONS
    assert len(tools) == 18
    for tool in tools:
        assert tool.input_schema["type"] == "object", tool.name
        assert (tool.output_schema or {}).get("type") == "object", tool.name
        assert len(tool.description or "") > 100, tool.name
    hint = next(tool for tool in tools if tool.name == "applyIntervalHint")
    assert hint.input_schema["required"] == ["endpointId", "intervalMs"]
    assert hint.input_schema["properties"]["intervalMs"]["minimum"] == 1000
    assert "20000 ms for 20 minutes" in (hint.description or "")


@pytest.mark.asyncio
async def test_stdio_drives_a_job_from_creation_to_archive(harness: Harness, tmp_path: Path) -> None:
    clock = harness.clock
    async with stdio_session(harness, tmp_path / "mcp.log") as session:
        job_id = (await ok(session, "createJob", name="Production Health Monitor"))["jobId"]
        assert (await ok(session, "getJob", jobId=job_id))["job"]["status"] == "JOB_STATUS_ACTIVE"
        await ok(session, "updateJob", jobId=job_id, description="API health", reason="document the job")
        listed = await ok(session, "listJobs", status="active")
        assert [job["jobId"] for job in listed["jobs"]] == [job_id]

        added = await ok(
            session,
            "addEndpointToJob",
            jobId=job_id,
            name="check_error_rate",
            url="https://api.example.com/health/errors",
            headers={"Accept": "application/json"},
            baseline={"intervalMs": 60_000},
            clamp={"maxIntervalMs": 600_000},
        )
        endpoint_id = added["endpointId"]
        assert at(added["nextRunAt"]) == clock.now() + timedelta(minutes=1)
        updated = await ok(session, "updateEndpointConfig", endpointId=endpoint_id, timeoutMs=5000, reason="slow API")
        assert at(updated["nextRunAt"]) == clock.now() + timedelta(minutes=1)

        # Traffic spiked 5x: every 20 s for 20 minutes.
        hint = await ok(
            session, "applyIntervalHint", endpointId=endpoint_id, intervalMs=20_000, ttlMinutes=20, reason="5x"
        )
        assert at(hint["hintExpiresAt"]) == clock.now() + timedelta(minutes=20)
        assert at(hint["nextRunAt"]) == clock.now() + timedelta(seconds=20)

        paused = await ok(session, "pauseOrResumeEndpoint", endpointId=endpoint_id, reason="investigate later")
        assert paused["paused"] is True
        assert "nextRunAt" not in paused

        # Fire once while paused; the pause stays.
        run_at = clock.now() + timedelta(seconds=30)
        shot = await ok(session, "scheduleOneShotRun", endpointId=endpoint_id, runAt=iso(run_at), reason="slow pages")
        assert at(shot["scheduledFor"]) == run_at
        [row] = (await ok(session, "listJobEndpoints", jobId=job_id))["endpoints"]
        assert (row["paused"], row["nextRunSource"], at(row["nextRunAt"])) == (True, "RUN_SOURCE_AI_ONESHOT", run_at)

        run_id = harness.fire(endpoint_id, status="FAILURE", http_status=503, error_message="upstream down")
        [row] = (await ok(session, "listJobEndpoints", jobId=job_id))["endpoints"]
        assert (row["paused"], row["failureCount"], "nextRunAt" in row) == (True, 1, False)

        resumed = await ok(session, "pauseOrResumeEndpoint", endpointId=endpoint_id, resume=True)
        assert resumed["paused"] is False
        assert "nextRunAt" in resumed

        runs = await ok(session, "listRuns", endpointId=endpoint_id)
        assert runs["total"] == 1
        [run] = runs["runs"]
        assert (run["runId"], run["jobId"], run["status"]) == (run_id, job_id, "RUN_STATUS_FAILURE")
        assert (run["source"], run["durationMs"], at(run["scheduledFor"])) == ("RUN_SOURCE_AI_ONESHOT", 50, run_at)
        assert (await ok(session, "listRuns", jobId=job_id, status="failure"))["total"] == 1
        assert (await ok(session, "listRuns", jobId=job_id, status="success"))["total"] == 0
        details = (await ok(session, "getRunDetails", runId=run_id))["run"]
        assert (details["httpStatus"], details["errorMessage"], details["attempt"]) == (503, "upstream down", 1)

        health = await ok(session, "summarizeEndpointHealth", endpointId=endpoint_id, windowHours=1)
        assert (health["successCount"], health["failureCount"], health["failureStreak"]) == (0, 1, 1)
        assert health["lastRun"]["status"] == "RUN_STATUS_FAILURE"
        assert (health["missedSlots"], health.get("lastMissedAt")) == (0, None)

        cleared = await ok(session, "clearAdaptiveHints", endpointId=endpoint_id, reason="surge over")
        assert at(cleared["clearedAt"]) == clock.now()
        [row] = (await ok(session, "listJobEndpoints", jobId=job_id))["endpoints"]
        assert row["nextRunSource"] in ("RUN_SOURCE_BASELINE_INTERVAL", "RUN_SOURCE_CLAMPED_MAX")
        assert (await ok(session, "resetFailureCount", endpointId=endpoint_id, reason="fixed"))["failureCount"] == 0

        await ok(session, "deleteEndpoint", endpointId=endpoint_id, reason="replaced")
        assert (await ok(session, "listJobEndpoints", jobId=job_id))["endpoints"] == []
        await ok(session, "archiveJob", jobId=job_id, reason="done")
        assert (await ok(session, "getJob", jobId=job_id))["job"]["status"] == "JOB_STATUS_ARCHIVED"
        assert (await refused(session, "updateJob", jobId=job_id, name="again")).startswith("FAILED_PRECONDITION")

    assert [entry["reason"] for entry in harness.audit() if entry["action"] == "ApplyIntervalHint"] == ["5x"]


@pytest.mark.asyncio
async def test_stdio_bad_arguments_are_tool_errors_naming_the_argument(harness: Harness, tmp_path: Path) -> None:
    async with stdio_session(harness, tmp_path / "mcp.log") as session:
        job_id = (await ok(session, "createJob", name="checks"))["jobId"]
        endpoint = {"jobId": job_id, "name": "probe", "url": "https://example.com/"}

        # Caught by the tool's schema.
        too_short = await refused(session, "applyIntervalHint", endpointId="ep_x", intervalMs=10)
        assert too_short.startswith("INVALID_ARGUMENT")
        assert "- intervalMs: must be at least 1000 ms" in too_short
        unknown = await refused(session, "createJob", name="x", userId="u1")
        assert "- userId: is not an argument here" in unknown
        assert "- runAt: must be an ISO 8601 time" in await refused(
            session, "scheduleOneShotRun", endpointId="ep_x", runAt="tomorrow"
        )
        missing = await refused(session, "addEndpointToJob", jobId=job_id, name="probe")
        assert "- url: is required" in missing
        assert "- baseline: is required" in missing

        # Refused by the control plane, its field paths translated to argument names.
        bad_cron = await refused(
            session, "addEndpointToJob", **endpoint, baseline={"cron": {"expression": "not a cron"}}
        )
        assert bad_cron.startswith("INVALID_ARGUMENT")
        assert "- baseline.cron.expression:" in bad_cron
        bad_clamp = await refused(
            session, "addEndpointToJob", **endpoint, baseline={"intervalMs": 5000}, clamp={"minIntervalMs": 10}
        )
        assert "- clamp.minIntervalMs: must be at least 1000 ms" in bad_clamp
        endpoint_id = (await ok(session, "addEndpointToJob", **endpoint, baseline={"intervalMs": 60_000}))["endpointId"]
        stale = await refused(
            session, "scheduleOneShotRun", endpointId=endpoint_id, runAt=clock_iso(harness, minutes=-30)
        )
        assert "- runAt: is more than 5 minutes in the past" in stale
        assert (await refused(session, "getJob", jobId="job_does_not_exist")).startswith("NOT_FOUND")

        # The server is still there after all of that.
        assert len((await session.list_tools()).tools) == 18


SURGE = {
    "name": "surge",
    "when": "has(body.ratio) && body.ratio > 5.0",
    "then": [
        {"intervalHint": {"intervalMs": 30_000, "ttlMs": 3_600_000}},
        {"endpoint": "inventory-check", "resume": {}},
    ],
    "cooldownMs": 600_000,
}


@pytest.mark.asyncio
async def test_stdio_installs_rules_that_steer_without_an_agent(harness: Harness, tmp_path: Path) -> None:
    async with stdio_session(harness, tmp_path / "mcp.log") as session:
        job_id = (await ok(session, "createJob", name="Black Friday Flash Sale"))["jobId"]
        site = {"jobId": job_id, "url": "https://shop.example.com/metrics"}
        checker = await ok(
            session, "addEndpointToJob", **site, name="inventory-check", baseline={"intervalMs": 180_000}
        )
        await ok(session, "pauseOrResumeEndpoint", endpointId=checker["endpointId"], reason="until the surge")
        monitor = await ok(
            session,
            "addEndpointToJob",
            **site,
            name="traffic-monitor",
            baseline={"intervalMs": 60_000},
            jitterMs=5000,
            signingSecret="s" * 40,
            policies=[SURGE],
        )
        rows = {row["name"]: row for row in (await ok(session, "listJobEndpoints", jobId=job_id))["endpoints"]}
        held = rows["traffic-monitor"]
        assert (held["jitterMs"], held["signed"]) == (5000, True)
        assert "s" * 40 not in json.dumps(held)
        [rule] = held["policies"]
        assert (rule["name"], rule["when"], rule["cooldownMs"]) == ("surge", SURGE["when"], 600_000)
        assert rule["then"][0]["intervalHint"] == {"intervalMs": 30_000, "ttlMs": 3_600_000}
        assert (rule["then"][1]["endpoint"], rule["then"][1]["resume"]) == ("inventory-check", {})

        # A run reports a surge: the rule tightens the monitor and starts the checker, with no agent in the loop.
        run_id = harness.fire(monitor["endpointId"], response_body='{"ratio": 6.2}')

        async def fired() -> list[dict[str, Any]]:
            return list((await ok(session, "getRunDetails", runId=run_id))["run"]["policyFirings"])

        await eventually(fired, "the rule's firing on the run")
        firings = await fired()
        [firing] = firings
        assert (firing["rule"], firing["outcome"]) == ("surge", "POLICY_OUTCOME_FIRED")
        assert len(firing["effects"]) == 2
        rows = {row["name"]: row for row in (await ok(session, "listJobEndpoints", jobId=job_id))["endpoints"]}
        assert rows["traffic-monitor"]["nextRunSource"] == "RUN_SOURCE_AI_INTERVAL"
        assert rows["inventory-check"]["paused"] is False
        health = await ok(session, "summarizeEndpointHealth", endpointId=monitor["endpointId"], windowHours=1)
        assert [(c["rule"], c["fired"]) for c in health["policyCounts"]] == [("surge", 1)]

        # Bad rules are refused naming the argument, on add and on update.
        bad = {**SURGE, "when": "body.ratio >"}
        text = await refused(session, "updateEndpointConfig", endpointId=monitor["endpointId"], policies=[bad])
        assert text.startswith("INVALID_ARGUMENT")
        assert "- policies[0].when:" in text
        two = {**SURGE, "then": [{"resume": {}, "pause": {}}]}
        assert "- policies.0.then.0: set exactly one of" in await refused(
            session, "addEndpointToJob", **site, name="x", baseline={"intervalMs": 60_000}, policies=[two]
        )

        # Every rule removed and signing stopped.
        await ok(session, "updateEndpointConfig", endpointId=monitor["endpointId"], policies=[], signingSecret="")
        rows = {row["name"]: row for row in (await ok(session, "listJobEndpoints", jobId=job_id))["endpoints"]}
        assert (rows["traffic-monitor"]["policies"], rows["traffic-monitor"]["signed"]) == ([], False)

    trail = harness.a.ListAuditRecords(pb.ListAuditRecordsRequest(job_id=job_id)).records
    assert {r.actor for r in trail if r.action in ("ApplyIntervalHint", "PauseOrResumeEndpoint")} >= {"policy:surge"}
    assert {r.actor for r in trail if r.action == "ApplyIntervalHint"} == {"policy:surge"}


@pytest.mark.asyncio
async def test_stdio_rate_limit_is_a_tool_error_with_retry_after(harness: Harness, tmp_path: Path) -> None:
    harness.catalog.set_tenant_quota(harness.tenants["acme"], {"rate_per_s": 0.5, "burst": 1}, harness.clock.now())
    async with stdio_session(harness, tmp_path / "mcp.log") as session:
        await ok(session, "listJobs")
        limited = await refused(session, "listJobs")

    assert limited.startswith("RESOURCE_EXHAUSTED")
    assert "Retry after 2 seconds." in limited
    assert f"- quota tenant:{harness.tenants['acme']}/rate:" in limited


@pytest.mark.asyncio
async def test_stdio_serves_the_scheduling_rules_resource(harness: Harness, tmp_path: Path) -> None:
    async with stdio_session(harness, tmp_path / "mcp.log") as session:
        [resource] = (await session.list_resources()).resources
        read = await session.read_resource(resource.uri)

    assert (str(resource.uri), resource.mime_type) == ("pacer://scheduling-rules", "text/markdown")
    [contents] = read.contents
    assert isinstance(contents, TextResourceContents)
    for rule in ("2^min(failureCount, 5)", "the min clamp wins", "fire once, then", "coalesced", "ttlMinutes"):
        assert rule in contents.text, rule


# -- streamable HTTP -----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_http_tool_calls_are_counted_by_tool_and_outcome(
    harness: Harness, mcp_url: str, metrics_addr: str
) -> None:
    async with http_session(mcp_url, harness.a.key) as session:
        job_id = (await ok(session, "createJob", name="measured"))["jobId"]
        await refused(session, "getJob", jobId="job_00000000000000000000000000")

    with urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10) as answer:
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.read().decode())
            for sample in family.samples
        }
    assert job_id
    assert samples[("pacer_mcp_tool_calls_total", (("outcome", "OK"), ("tool", "createJob")))] == 1
    assert samples[("pacer_mcp_tool_calls_total", (("outcome", "NOT_FOUND"), ("tool", "getJob")))] == 1
    assert samples[("pacer_mcp_tool_call_duration_seconds_count", (("tool", "createJob"),))] == 1


@pytest.mark.asyncio
async def test_http_acts_with_the_callers_bearer_key_only(harness: Harness, mcp_url: str) -> None:
    url = mcp_url
    async with http_session(url, harness.a.key) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} == SEED_ACTIONS | ADDITIONS
        job_id = (await ok(session, "createJob", name="flash sale"))["jobId"]
        assert (await ok(session, "getJob", jobId=job_id))["job"]["name"] == "flash sale"

    async with http_session(url, None) as anonymous:
        # The server's own environment holds a valid key: it must not be used for HTTP callers.
        assert (await refused(anonymous, "getJob", jobId=job_id)).startswith("UNAUTHENTICATED")
    async with http_session(url, "pk_not_a_real_key") as stranger:
        assert (await refused(stranger, "listJobs")).startswith("UNAUTHENTICATED")
    async with http_session(url, harness.b.key) as other_tenant:
        assert (await refused(other_tenant, "getJob", jobId=job_id)).startswith("NOT_FOUND")
        assert (await ok(other_tenant, "listJobs"))["jobs"] == []


@pytest.mark.asyncio
async def test_http_serves_modern_protocol_clients(harness: Harness, mcp_url: str) -> None:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {harness.a.key}"}) as http,
        Client(streamable_http_client(mcp_url, http_client=http)) as client,
    ):
        assert client.protocol_version in MODERN_PROTOCOL_VERSIONS
        job_id = (await ok(client, "createJob", name="modern"))["jobId"]
        assert (await ok(client, "getJob", jobId=job_id))["job"]["jobId"] == job_id
        resources = await client.list_resources()
        assert [str(r.uri) for r in resources.resources] == ["pacer://scheduling-rules"]


# -- keys and failures the caller must not see the inside of ---------------------------------------------------------


def _raw_post(url: str, body: bytes, authorization: bytes | None) -> tuple[int, bytes]:
    """POST `body` to the MCP endpoint with exactly these Authorization bytes; (HTTP status, response body)."""
    host_port = url.split("/")[2]
    host, port = parse_addr(host_port)
    head = (
        b"POST /mcp HTTP/1.1\r\nHost: " + host_port.encode() + b"\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        + (b"Authorization: " + authorization + b"\r\n" if authorization is not None else b"")
        + b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection((host, int(port)), timeout=20) as connection:
        connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _tool_result(body: bytes) -> dict[str, Any]:
    """The JSON-RPC message in a streamed (SSE) answer."""
    [data] = re.findall(rb"^data: (.*)$", body, flags=re.MULTILINE)
    message: dict[str, Any] = json.loads(data)
    return message


NOT_KEYS = {
    "utf8": b"Bearer pk_\xc3\xbc" + b"u" * 40,
    "kelvin": b"Bearer pk_\xe2\x84\xaa" + b"k" * 40,  # U+212A, which a case-insensitive match would take for 'k'
    "not-utf8": b"Bearer pk_\xff\xfe",
    "tab": b"Bearer pk_a\tb",
    "ctrl-01": b"Bearer pk_a\x01b",
    "ctrl-7f": b"Bearer pk_a\x7fb",
    "too-long": b"Bearer " + b"k" * 300,
}


@pytest.mark.asyncio
async def test_http_a_token_that_cannot_be_a_key_is_unauthenticated(mcp_url: str, tmp_path: Path) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "listJobs", "arguments": {}}}
    for name, authorization in NOT_KEYS.items():
        status, body = _raw_post(mcp_url, json.dumps(call).encode(), authorization)
        assert status == 200, (name, body)
        result = _tool_result(body)["result"]
        assert result["isError"] is True, name
        assert result["content"][0]["text"].startswith("UNAUTHENTICATED: "), (name, result)
    logs = (tmp_path / "mcp-http.log").read_text()
    assert "Traceback" not in logs
    assert "mcp.tool_failed" not in logs


@pytest.mark.asyncio
async def test_http_a_body_that_is_not_json_rpc_is_refused_without_library_text(mcp_url: str) -> None:
    bad = {"jsonrpc": "2.0", "id": 1, "method": 5, "params": "<script>alert(1)</script>"}
    status, body = _raw_post(mcp_url, json.dumps(bad).encode(), b"Bearer pk_whatever")
    assert status == 400
    error = json.loads(body)["error"]
    assert error["code"] == -32602
    assert error["message"].startswith("Invalid request: the body must be one JSON-RPC 2.0")
    for inside in (b"jsonrpcrequest", b"<script>", b"pydantic", b"input_value", b"validation error"):
        assert inside not in body.lower(), inside


@pytest.mark.asyncio
async def test_stdio_an_environment_key_that_cannot_be_a_key_is_unauthenticated(
    harness: Harness, tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=str(BIN / "pacer-mcp"),
        args=["--transport", "stdio"],
        env=_env(harness, PACER_API_KEY=f"pk_\u212a{harness.a.key}"),
    )
    with (tmp_path / "mcp.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            text = await refused(session, "listJobs")
    assert text.startswith("UNAUTHENTICATED: the API key in the MCP server's environment is not a Pacer API key")
    assert "Traceback" not in (tmp_path / "mcp.log").read_text()


@pytest.mark.asyncio
async def test_stdio_an_unreachable_control_plane_is_unavailable_without_its_address(tmp_path: Path) -> None:
    unreachable = free_addr()
    params = StdioServerParameters(
        command=str(BIN / "pacer-mcp"),
        args=["--transport", "stdio"],
        env={"PACER_CONTROL_ADDR": unreachable, "PACER_LOG_LEVEL": "WARNING", "PACER_API_KEY": "pk_abcdefgh_key"},
    )
    with (tmp_path / "mcp.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            text = await refused(session, "listJobs")
    assert text.startswith("UNAVAILABLE: the Pacer control plane is unavailable")
    assert unreachable not in text
    assert "ipv4" not in text


@pytest.mark.asyncio
async def test_stdio_list_audit_records_reads_the_trail_of_a_job_and_an_endpoint(
    harness: Harness, tmp_path: Path
) -> None:
    async with stdio_session(harness, tmp_path / "mcp.log") as session:
        job_id = (await ok(session, "createJob", name="Checkout"))["jobId"]
        endpoint_id = (
            await ok(
                session,
                "addEndpointToJob",
                jobId=job_id,
                name="stock",
                url="https://api.example.com/stock",
                baseline={"intervalMs": 60_000},
            )
        )["endpointId"]
        await ok(session, "applyIntervalHint", endpointId=endpoint_id, intervalMs=20_000, reason="flash sale")

        trail = await ok(session, "listAuditRecords", endpointId=endpoint_id)
        newest = trail["records"][0]
        assert (newest["action"], newest["reason"]) == ("ApplyIntervalHint", "flash sale")
        whole = await ok(session, "listAuditRecords", jobId=job_id)
        assert {r["action"] for r in whole["records"]} >= {"CreateJob", "AddEndpointToJob", "ApplyIntervalHint"}
        both = await refused(session, "listAuditRecords", jobId=job_id, endpointId=endpoint_id)
        assert both.startswith("INVALID_ARGUMENT")
