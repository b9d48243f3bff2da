"""The executor's egress policy end to end: refused destinations become BLOCKED runs and receive nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import ts
from tests.support.polling import wait_for
from tests.support.stack import Stack
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e


def one_run(stack: Stack, url: str) -> pb.Run:
    job = stack.job("egress")
    endpoint_id = stack.client.AddEndpointToJob(
        pb.AddEndpointToJobRequest(job_id=job, name="probe", url=url, baseline=pb.Baseline(interval_ms=3_600_000))
    ).endpoint_id
    stack.client.ScheduleOneShotRun(pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id, run_at=ts(datetime.now(UTC))))

    def settled() -> list[pb.RunSummary]:
        return [r for r in stack.runs(endpoint_id) if r.status != pb.RUN_STATUS_RUNNING]

    wait_for(settled, 15, f"the run against {url}")
    return stack.client.GetRunDetails(pb.GetRunDetailsRequest(run_id=settled()[0].run_id)).run


@pytest.fixture
def strict_stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """An executor with the production default policy: no loopback, no private ranges."""
    stack = Stack(tmp_path, database_url)
    stack.add_scheduler()
    stack.add_executor(egress_allow="")
    yield stack
    stack.close()


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[fd00:ec2::254]/"],
    ids=["metadata", "private", "metadata-v6"],
)
def test_metadata_and_private_addresses_are_blocked(strict_stack: Stack, url: str) -> None:
    run = one_run(strict_stack, url)
    assert run.status == pb.RUN_STATUS_BLOCKED
    assert run.http_status == 0
    assert "egress refused" in run.error_message


def test_loopback_is_blocked_unless_allowed(strict_stack: Stack, target: HttpTarget) -> None:
    run = one_run(strict_stack, target.url("/private"))
    assert run.status == pb.RUN_STATUS_BLOCKED
    assert target.hits == []


def test_a_redirect_to_a_blocked_address_is_not_followed(tmp_path: Path, database_url: str, target: HttpTarget) -> None:
    elsewhere = HttpTarget(host="127.0.0.2").start()
    target.respond("/hop", redirect_to=elsewhere.url("/landing"))
    stack = Stack(tmp_path, database_url)
    try:
        stack.add_scheduler()
        stack.add_executor(egress_allow="127.0.0.1/32")
        run = one_run(stack, target.url("/hop"))
    finally:
        stack.close()
        elsewhere.stop()
    assert run.status == pb.RUN_STATUS_BLOCKED
    assert len(target.hits_on("/hop")) == 1
    assert elsewhere.hits == []
