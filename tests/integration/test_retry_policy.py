"""An endpoint's retry policy through the public API and the lease path, on both backends: stored and listed, checked
(the field at fault named), handed to the executor with a lease covering every attempt, and a retried run recorded
once, with its attempts, counting once for the failure backoff."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from pacer.control.v1 import control_service_pb2 as pb
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_control.codec import ts
from tests.integration.test_leases import Leases, next_run, result
from tests.support.harness import Harness, dt, status_of, violations

MINUTE_MS = 60_000
GRACE_MS = 30_000  # the harness's lease grace


def add(harness: Harness, **fields: object) -> str:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="flaky")).job_id
    request = pb.AddEndpointToJobRequest(
        job_id=job,
        name="report",
        url="https://reports.example.com/build",
        method="POST",
        baseline=pb.Baseline(interval_ms=MINUTE_MS),
        timeout_ms=5_000,
        **fields,  # type: ignore[arg-type]
    )
    return str(harness.a.AddEndpointToJob(request).endpoint_id)


def attempt(number: int, status: int, http_status: int, started: object) -> pb.RunAttempt:
    return pb.RunAttempt(number=number, status=status, started_at=started, duration_ms=20, http_status=http_status)  # type: ignore[arg-type]


def test_an_endpoint_without_a_policy_makes_one_attempt_and_says_so(harness: Harness) -> None:
    endpoint_id = add(harness)

    listed = next_run(harness, endpoint_id).retry
    assert (listed.max_attempts, listed.backoff_ms) == (1, 1000)
    harness.clock.advance(60)
    (item,) = Leases(harness).claim().items
    assert not item.HasField("retry")
    assert dt(item.lease_expires_at) == harness.clock.now() + timedelta(milliseconds=5_000 + GRACE_MS)


def test_the_policy_is_stored_listed_and_the_lease_covers_every_attempt(harness: Harness) -> None:
    endpoint_id = add(harness, retry=pb.RetryPolicy(max_attempts=3, backoff_ms=2_000))

    listed = next_run(harness, endpoint_id).retry
    assert (listed.max_attempts, listed.backoff_ms) == (3, 2_000)
    harness.clock.advance(60)
    (item,) = Leases(harness).claim().items
    assert (item.retry.max_attempts, item.retry.backoff_ms) == (3, 2_000)
    # Three attempts of 5 s, and waits of 2 s and 4 s between them, then the grace.
    budget_ms = 3 * 5_000 + 2_000 + 4_000
    assert dt(item.lease_expires_at) == harness.clock.now() + timedelta(milliseconds=budget_ms + GRACE_MS)


def test_an_update_replaces_the_policy_and_one_attempt_stops_retrying(harness: Harness) -> None:
    endpoint_id = add(harness, retry=pb.RetryPolicy(max_attempts=3))
    assert next_run(harness, endpoint_id).retry.backoff_ms == 1000  # zero means the default

    harness.a.UpdateEndpointConfig(
        pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, retry=pb.RetryPolicy(max_attempts=5, backoff_ms=500))
    )
    assert next_run(harness, endpoint_id).retry.max_attempts == 5
    harness.a.UpdateEndpointConfig(pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, name="renamed"))
    assert next_run(harness, endpoint_id).retry.max_attempts == 5  # unset: kept
    harness.a.UpdateEndpointConfig(
        pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, retry=pb.RetryPolicy(max_attempts=1))
    )
    assert next_run(harness, endpoint_id).retry.max_attempts == 1


@pytest.mark.parametrize(
    ("retry", "field"),
    [
        (pb.RetryPolicy(max_attempts=6), "retry.max_attempts"),
        (pb.RetryPolicy(max_attempts=-1), "retry.max_attempts"),
        (pb.RetryPolicy(max_attempts=3, backoff_ms=99), "retry.backoff_ms"),
        (pb.RetryPolicy(max_attempts=3, backoff_ms=60_001), "retry.backoff_ms"),
    ],
)
def test_a_policy_out_of_range_is_refused_naming_the_field(harness: Harness, retry: pb.RetryPolicy, field: str) -> None:
    with pytest.raises(grpc.RpcError) as error:
        add(harness, retry=retry)
    assert status_of(error.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(error.value)
    endpoint_id = add(harness)
    with pytest.raises(grpc.RpcError) as error:
        harness.a.UpdateEndpointConfig(pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, retry=retry))
    assert field in violations(error.value)


def test_a_retried_run_is_recorded_once_with_its_attempts_and_counts_once_for_backoff(harness: Harness) -> None:
    endpoint_id = add(harness, retry=pb.RetryPolicy(max_attempts=3, backoff_ms=100))
    leases = Leases(harness)
    harness.clock.advance(60)
    (item,) = leases.claim().items
    start = dt(item.scheduled_for)
    assert start is not None
    attempts = [
        attempt(1, pb.RUN_STATUS_FAILURE, 503, ts(start)),
        attempt(2, pb.RUN_STATUS_FAILURE, 503, ts(start + timedelta(milliseconds=120))),
        attempt(3, pb.RUN_STATUS_FAILURE, 502, ts(start + timedelta(milliseconds=340))),
    ]
    leases.report(result(item, pb.RUN_STATUS_FAILURE, attempts=attempts, error_message="HTTP 502 (attempt 3 of 3)"))

    run = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=item.run_id)).run
    assert [(a.number, a.http_status) for a in run.attempts] == [(1, 503), (2, 503), (3, 502)]
    assert dt(run.attempts[1].started_at) == start + timedelta(milliseconds=120)
    assert run.status == pb.RUN_STATUS_FAILURE
    assert next_run(harness, endpoint_id).failure_count == 1  # one run, one failure, whatever its attempts
    runs = harness.a.ListRuns(pb.ListRunsRequest(endpoint_id=endpoint_id)).runs
    assert [r.run_id for r in runs] == [item.run_id]


def test_a_report_with_a_bad_attempt_is_refused_naming_it(harness: Harness) -> None:
    add(harness, retry=pb.RetryPolicy(max_attempts=2))
    leases = Leases(harness)
    harness.clock.advance(60)
    (item,) = leases.claim().items
    bad = lease_pb.RunResult(
        run_id=item.run_id,
        status=pb.RUN_STATUS_SUCCESS,
        finished_at=item.scheduled_for,
        attempts=[pb.RunAttempt(number=1, status=pb.RUN_STATUS_RUNNING)],
    )
    with pytest.raises(grpc.RpcError) as error:
        leases.report(bad)
    assert "results[0].attempts[0].status" in violations(error.value)
