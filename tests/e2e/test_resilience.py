"""Delivery under churn: one call per run while executors come and go, and across a control restart."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.polling import wait_for
from tests.support.stack import Stack
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e


def add_many(stack: Stack, target: HttpTarget, count: int) -> list[str]:
    job = stack.job("churn")
    return [
        stack.client.AddEndpointToJob(
            pb.AddEndpointToJobRequest(
                job_id=job, name=f"ep-{n}", url=target.url(f"/ep/{n}"), baseline=pb.Baseline(interval_ms=1000)
            )
        ).endpoint_id
        for n in range(count)
    ]


def all_runs(stack: Stack) -> list[pb.RunSummary]:
    runs: list[pb.RunSummary] = []
    while True:
        page = stack.client.ListRuns(pb.ListRunsRequest(limit=500, offset=len(runs))).runs
        runs.extend(page)
        if len(page) < 500:
            return runs


def settle(stack: Stack, endpoint_ids: list[str]) -> list[pb.RunSummary]:
    """Pause every endpoint, wait until no run is in flight, and return all runs."""
    for endpoint_id in endpoint_ids:
        stack.client.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, reason="settle"))
    wait_for(lambda: all(r.status != pb.RUN_STATUS_RUNNING for r in all_runs(stack)), 30, "in-flight runs to finish")
    return all_runs(stack)


def assert_exactly_once(runs: list[pb.RunSummary], target: HttpTarget) -> None:
    statuses = Counter(pb.RunStatus.Name(r.status) for r in runs)
    assert statuses == Counter({"RUN_STATUS_SUCCESS": len(runs)})
    hits = Counter(h.run_id for h in target.hits)
    assert hits == Counter({r.run_id: 1 for r in runs})
    slots = Counter((r.endpoint_id, r.scheduled_for.ToDatetime()) for r in runs)
    assert max(slots.values()) == 1


def pause_for(seconds: float) -> None:
    until = time.monotonic() + seconds
    wait_for(lambda: time.monotonic() >= until, seconds + 1, "time to pass")


def test_two_schedulers_and_executors_that_come_and_go_run_everything_once(
    tmp_path: Path, database_url: str, target: HttpTarget
) -> None:
    stack = Stack(tmp_path, database_url)
    try:
        stack.add_scheduler("scheduler-a")
        stack.add_scheduler("scheduler-b")
        stack.add_executor("executor-1")
        stack.add_executor("executor-2")
        endpoint_ids = add_many(stack, target, 20)
        wait_for(lambda: len(target.hits) >= 40, 20, "the first runs")
        stack.add_executor("executor-3")
        pause_for(2)
        assert stack.executors["executor-1"].stop() == 0  # leaves gracefully: drains what it started
        pause_for(2)
        runs = settle(stack, endpoint_ids)
    finally:
        stack.close()
    assert len(runs) >= 80
    assert_exactly_once(runs, target)


def test_a_control_restart_loses_and_doubles_nothing(tmp_path: Path, database_url: str, target: HttpTarget) -> None:
    stack = Stack(tmp_path, database_url)
    try:
        stack.add_scheduler()
        stack.add_executor()
        endpoint_ids = add_many(stack, target, 10)
        wait_for(lambda: len(target.hits) >= 20, 20, "runs before the restart")
        stack.restart_control()
        hits_after_restart = len(target.hits)
        wait_for(lambda: len(target.hits) >= hits_after_restart + 20, 20, "runs after the restart")
        runs = settle(stack, endpoint_ids)
    finally:
        stack.close()
    assert_exactly_once(runs, target)
