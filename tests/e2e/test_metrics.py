"""Prometheus metrics end to end: every service's `/metrics` scraped over HTTP while real runs happen."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.polling import wait_for
from tests.support.processes import health_status
from tests.support.stack import Stack
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e

GRPC = ("grpc_server_handled", "grpc_server_handling_seconds")
GRPC_CLIENT = ("grpc_client_handled", "grpc_client_handling_seconds")
FAMILIES = {
    "control": {
        *GRPC,
        "pacer_runs",
        "pacer_tenant_runs",
        "pacer_leases_expired",
        "pacer_db_pool_connections",
        "pacer_endpoints",
        "process_resident_memory_bytes",
    },
    "scheduler": {
        *GRPC,
        *GRPC_CLIENT,
        "pacer_dispatch_lateness_seconds",
        "pacer_tenant_dispatch_lateness_seconds",
        "pacer_claim_duration_seconds",
        "pacer_claim_batch_size",
        "pacer_executors_connected",
        "pacer_executor_credits",
        "pacer_runs_in_flight",
        "pacer_result_report_seconds",
    },
    "executor": {
        *GRPC_CLIENT,
        "pacer_runs_in_flight",
        "pacer_http_duration_seconds",
        "pacer_egress_refusals",
        "pacer_scheduler_streams_connected",
    },
}
METADATA_URL = "http://169.254.169.254/latest/meta-data/"  # refused even where loopback is allowed


class Scrape:
    """One scrape of a `/metrics` endpoint, parsed with prometheus_client's own text parser."""

    def __init__(self, addr: str) -> None:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as response:
            text = response.read().decode()
        families = list(text_string_to_metric_families(text))
        self.families = {family.name for family in families}
        self.samples: list[Sample] = [sample for family in families for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 when there is none)."""
        return sum(s.value for s in self._matching(name, labels))

    def has(self, name: str, **labels: str) -> bool:
        return any(True for _ in self._matching(name, labels))

    def _matching(self, name: str, labels: dict[str, str]) -> Iterable[Sample]:
        return (s for s in self.samples if s.name == name and labels.items() <= s.labels.items())


def add(stack: Stack, job_id: str, name: str, url: str) -> str:
    request = pb.AddEndpointToJobRequest(job_id=job_id, name=name, url=url, baseline=pb.Baseline(interval_ms=1000))
    return str(stack.client.AddEndpointToJob(request).endpoint_id)


def successes(stack: Stack, endpoint_id: str) -> int:
    return sum(r.status == pb.RUN_STATUS_SUCCESS for r in stack.runs(endpoint_id))


def executor_ready(stack: Stack, name: str = "executor") -> None:
    """Wait until the executor is up and streaming (the stack does not wait for executors)."""
    wait_for(lambda: health_status(stack.health_addrs[name]) == "SERVING", 20, f"{name} to be ready")


def test_every_service_serves_its_metrics_and_they_follow_the_runs(stack: Stack, target: HttpTarget) -> None:
    addrs = stack.metrics_addrs
    executor_ready(stack)
    before = {service: Scrape(addrs[service]) for service in ("control", "scheduler", "executor")}
    job_id = stack.job("metrics")
    ok = add(stack, job_id, "ok", target.url("/ok"))
    blocked = add(stack, job_id, "metadata", METADATA_URL)

    wait_for(lambda: successes(stack, ok) >= 3, 20, "three successful runs")
    wait_for(lambda: any(r.status == pb.RUN_STATUS_BLOCKED for r in stack.runs(blocked)), 10, "a blocked run")
    stack.client.DeleteEndpoint(pb.DeleteEndpointRequest(endpoint_id=blocked))
    control, scheduler, executor = (Scrape(addrs[s]) for s in ("control", "scheduler", "executor"))

    for service, scrape in (("control", control), ("scheduler", scheduler), ("executor", executor)):
        assert FAMILIES[service] <= scrape.families, (service, FAMILIES[service] - scrape.families)
    # Results are applied by the control plane a moment after the run, so the counters may be ahead of the API.
    assert (
        control.value("pacer_runs_total", status="SUCCESS")
        >= before["control"].value("pacer_runs_total", status="SUCCESS") + 3
    )
    assert control.value("pacer_runs_total", status="BLOCKED") >= 1
    lateness_count = "pacer_dispatch_lateness_seconds_count"
    assert scheduler.value(lateness_count) >= before["scheduler"].value(lateness_count) + 4
    assert scheduler.value("pacer_dispatch_lateness_seconds_bucket", le="10.0") == scheduler.value(lateness_count)
    assert control.has("pacer_db_pool_connections", state="in_use")
    assert control.has("pacer_db_pool_connections", state="idle")
    assert (
        control.value(
            "grpc_server_handled_total",
            grpc_service="pacer.control.v1.ControlService",
            grpc_method="AddEndpointToJob",
            grpc_code="OK",
        )
        == 2
    )
    assert control.value("grpc_server_handled_total", grpc_method="ClaimDueRuns", grpc_code="OK") >= 1
    assert scheduler.value("grpc_client_handled_total", grpc_method="ClaimDueRuns", grpc_code="OK") >= 1
    assert scheduler.value("grpc_client_handled_total", grpc_method="ReportResults", grpc_code="OK") >= 1
    assert scheduler.value("pacer_claim_batch_size_count") >= 1
    assert scheduler.value("pacer_result_report_seconds_count") >= 1
    assert scheduler.value("pacer_executors_connected") == 1
    assert executor.value("pacer_http_duration_seconds_count", outcome="SUCCESS") >= 3
    assert executor.value("pacer_egress_refusals_total", reason_category="cloud_metadata") >= 1
    assert executor.value("pacer_scheduler_streams_connected") == 1

    # Endpoint counts are cached for about 10 s at scrape time: the first scrape above counted none.
    wait_for(
        lambda: Scrape(addrs["control"]).value("pacer_endpoints", state="deleted") == 1,
        15,
        "the endpoint counts to be refreshed",
    )
    counts = Scrape(addrs["control"])
    assert (counts.value("pacer_endpoints", state="active"), counts.value("pacer_endpoints", state="paused")) == (1, 0)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_executor_stream_is_counted_when_it_ends(stack: Stack) -> None:
    scheduler_metrics = stack.metrics_addrs["scheduler"]
    executor_ready(stack)
    stack.add_executor("executor-2")
    wait_for(lambda: Scrape(scheduler_metrics).value("pacer_executors_connected") == 2, 10, "a second executor")
    assert Scrape(scheduler_metrics).value("grpc_server_handled_total", grpc_method="Connect") == 0

    assert stack.executors["executor-2"].stop() == 0  # a graceful leave ends its stream with OK

    wait_for(lambda: Scrape(scheduler_metrics).value("pacer_executors_connected") == 1, 10, "the executor gone")
    ended = Scrape(scheduler_metrics)
    assert ended.value("grpc_server_handled_total", grpc_method="Connect", grpc_code="OK") == 1
    assert ended.value("grpc_server_handling_seconds_count", grpc_method="Connect") == 1
