"""Reporting results is idempotent: a repeated report changes nothing, and a real result fills in a LOST run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import grpc
import pytest

from pacer.control.v1 import control_service_pb2 as pb
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer.internal.v1 import lease_service_pb2_grpc as lease_grpc
from pacer_control.pipeline import EXPIRED_MESSAGE, ClaimedRun
from tests.support.harness import LEASE_GRACE_MS, SERVICE_TOKEN, Harness, dt, ts


@pytest.fixture
def leases(harness: Harness) -> Iterator[lease_grpc.LeaseServiceStub]:
    channel = grpc.insecure_channel(harness.address)
    yield lease_grpc.LeaseServiceStub(channel)
    channel.close()


def report(stub: lease_grpc.LeaseServiceStub, *results: lease_pb.RunResult) -> lease_pb.ReportResultsResponse:
    request = lease_pb.ReportResultsRequest(results=results)
    return stub.ReportResults(request, metadata=[("authorization", f"Bearer {SERVICE_TOKEN}")], timeout=10)


def claimed_run(harness: Harness) -> ClaimedRun:
    """The first run of a new 60 s endpoint with a 1 s timeout, claimed at its due time."""
    job_id = harness.a.CreateJob(pb.CreateJobRequest(name="reports")).job_id
    request = pb.AddEndpointToJobRequest(
        job_id=job_id,
        name="check",
        url="https://api.example.com/health",
        baseline=pb.Baseline(interval_ms=60_000),
        timeout_ms=1_000,
    )
    harness.a.AddEndpointToJob(request)
    harness.clock.advance(60)
    (run,) = harness.pipeline.claim_due(harness.clock.now(), 0, 10, LEASE_GRACE_MS)
    return run


def result(run: ClaimedRun, status: int = pb.RUN_STATUS_SUCCESS, **fields: object) -> lease_pb.RunResult:
    outcome: dict[str, object] = {
        "started_at": ts(run.scheduled_for),
        "finished_at": ts(run.scheduled_for + timedelta(milliseconds=40)),
        "duration_ms": 40,
        "http_status": 200,
        "response_body": "ok",
    }
    return lease_pb.RunResult(run_id=run.run_id, status=status, **{**outcome, **fields})


def details(harness: Harness, run_id: str) -> pb.Run:
    return harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run


def endpoint_row(harness: Harness, endpoint_id: str) -> pb.EndpointSummary:
    (job,) = harness.a.ListJobs(pb.ListJobsRequest()).jobs
    endpoints = harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job.job_id)).endpoints
    (row,) = [e for e in endpoints if e.endpoint_id == endpoint_id]
    return row


def settled_runs(harness: Harness, status: str) -> float | None:
    return harness.registry.get_sample_value("pacer_runs_total", {"status": status})


def test_the_same_result_reported_twice_changes_nothing(harness: Harness, leases) -> None:
    run = claimed_run(harness)
    assert (report(leases, result(run)).applied, settled_runs(harness, "SUCCESS")) == (1, 1)
    recorded, schedule = details(harness, run.run_id), endpoint_row(harness, run.endpoint_id)
    harness.clock.advance(5)  # the scheduler retries after its first reply was lost

    answer = report(leases, result(run))

    assert (answer.applied, answer.stale) == (0, 1)
    assert details(harness, run.run_id) == recorded
    assert recorded.error_message == ""
    assert endpoint_row(harness, run.endpoint_id) == schedule
    assert settled_runs(harness, "SUCCESS") == 1


def test_a_different_result_for_a_settled_run_changes_nothing(harness: Harness, leases) -> None:
    run = claimed_run(harness)
    report(leases, result(run))
    recorded, schedule = details(harness, run.run_id), endpoint_row(harness, run.endpoint_id)

    answer = report(leases, result(run, pb.RUN_STATUS_FAILURE, http_status=503, error_message="HTTP 503"))

    assert (answer.applied, answer.stale) == (0, 1)
    assert details(harness, run.run_id) == recorded
    assert endpoint_row(harness, run.endpoint_id) == schedule
    assert settled_runs(harness, "FAILURE") == 0


def test_a_real_result_fills_in_a_run_settled_lost(harness: Harness, leases) -> None:
    run = claimed_run(harness)
    harness.clock.advance(1 + LEASE_GRACE_MS / 1000 + 1)
    harness.pipeline.reap_expired(harness.clock.now(), 10)
    schedule = endpoint_row(harness, run.endpoint_id)
    failed = result(run, pb.RUN_STATUS_FAILURE, http_status=503, response_body="down", error_message="HTTP 503")

    answer = report(leases, failed)

    assert (answer.applied, answer.stale) == (0, 1)
    found = details(harness, run.run_id)
    assert (found.status, found.http_status, found.response_body, found.duration_ms) == (
        pb.RUN_STATUS_FAILURE,
        503,
        "down",
        40,
    )
    assert (dt(found.started_at), dt(found.finished_at)) == (
        run.scheduled_for,
        run.scheduled_for + timedelta(milliseconds=40),
    )
    assert found.error_message == f"HTTP 503; reported after the run had been settled as LOST ({EXPIRED_MESSAGE})"
    assert endpoint_row(harness, run.endpoint_id) == schedule  # the schedule moved once, when the run was lost
    assert settled_runs(harness, "FAILURE") == 0

    assert report(leases, failed).stale == 1  # and reporting it again changes nothing more
    assert details(harness, run.run_id) == found
