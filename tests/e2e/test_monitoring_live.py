"""The alert rules and the dashboard against a live scrape: every metric a rule or a panel names is served by the
service whose job it selects (histograms and counters by their _bucket, _count, _total series), so no alert or
panel stays silent because a name is wrong."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import httpx2
import pytest
import yaml
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from pacer.control.v1 import control_service_pb2 as pb
from tests.deploy.manifests import ALERTS, JOBS, SYNTHETIC, dashboard_expressions, jobs_named, promql_metrics, rules
from tests.e2e.test_metrics import METADATA_URL, Scrape, add, executor_ready, successes
from tests.support.polling import wait_for
from tests.support.stack import Stack
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e

SERVICE_OF_JOB = {
    "pacer-control": "control",
    "pacer-scheduler": "scheduler",
    "pacer-executor": "executor",
    "pacer-gateway": "gateway",
    "pacer-mcp": "mcp",
}


def expressions() -> list[tuple[str, str]]:
    alerts = [(f"alert {rule['alert']}", rule["expr"]) for rule in rules(yaml.safe_load(ALERTS.read_text()))]
    return alerts + [(f"panel {title}", expr) for title, expr in dashboard_expressions()]


def rest_status(base_url: str, path: str, key: str) -> int:
    """The status the REST gateway answers a GET of `path` with."""
    request = urllib.request.Request(base_url + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


async def call_tool(url: str, key: str, tool: str) -> CallToolResult:
    """One MCP tool call over streamable HTTP, as an agent makes it."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await session.call_tool(tool, {})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_metric_of_the_rules_and_dashboard_is_in_a_live_scrape_of_its_job(
    stack: Stack, target: HttpTarget
) -> None:
    gateway, mcp = stack.add_gateway(), stack.add_mcp()
    key = (stack.var / "dev-api-key").read_text().strip()
    executor_ready(stack)
    job_id = stack.job("live")
    endpoint_id = add(stack, job_id, "live", target.url("/live"))
    # Labelled series appear once something is counted: a refused run gives the egress refusals their series.
    blocked = add(stack, job_id, "metadata", METADATA_URL)
    wait_for(lambda: successes(stack, endpoint_id) >= 2, 20, "two successful runs")
    wait_for(lambda: any(r.status == pb.RUN_STATUS_BLOCKED for r in stack.runs(blocked)), 10, "a blocked run")
    assert rest_status(gateway, f"/jobs/{job_id}", key) == 200
    assert not asyncio.run(call_tool(mcp, key, "listJobs")).is_error
    served = {
        job: {sample.name for sample in Scrape(stack.metrics_addrs[service]).samples}
        for job, service in SERVICE_OF_JOB.items()
    }
    # The control plane gone: the REST gateway and the MCP server count the calls it cannot answer.
    stack.stop_control()
    assert rest_status(gateway, f"/jobs/{job_id}", key) == 503
    assert asyncio.run(call_tool(mcp, key, "listJobs")).is_error
    for job in ("pacer-gateway", "pacer-mcp"):
        served[job] = {sample.name for sample in Scrape(stack.metrics_addrs[SERVICE_OF_JOB[job]]).samples}
    stack.start_control_again()  # so the scheduler drains into it at the end instead of waiting out its timeout

    checked = 0
    for where, expression in expressions():
        jobs = jobs_named(expression) or set(JOBS)
        names = promql_metrics(expression) - SYNTHETIC
        # One job selected: that service must serve the names; several (or none): one of them.
        serving = set().union(*(served[job] for job in jobs))
        assert names <= serving, f"{where}: {sorted(names - serving)} not served by {sorted(jobs)}"
        checked += len(names)
    assert checked >= 28
    gateway_scrape = Scrape(stack.metrics_addrs["gateway"])
    assert gateway_scrape.has("pacer_gateway_requests_total", route="/jobs/{jobId}", status="503")
    assert gateway_scrape.has("pacer_gateway_upstream_errors_total", code="UNAVAILABLE")
    assert Scrape(stack.metrics_addrs["mcp"]).has("pacer_mcp_upstream_errors_total", code="UNAVAILABLE")
