"""Adaptive scheduling control, one action at a time: what each steering action answers and what it changes.

ApplyIntervalHint, ScheduleOneShotRun, PauseOrResumeEndpoint, ClearAdaptiveHints and ResetFailureCount. The longer
scenarios over time (expiry, backoff, one-shot while paused) live in test_hints.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import dt, ts

MINUTE = timedelta(minutes=1)


def new_job(client) -> str:
    return client.CreateJob(pb.CreateJobRequest(name="Production Health")).job_id


def new_endpoint(client, job_id: str, interval_ms: int = 60_000) -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id,
        name="check_api_latency",
        url="https://api.example.com/health",
        baseline=pb.Baseline(interval_ms=interval_ms),
    )
    return client.AddEndpointToJob(request).endpoint_id


def row(client, job_id: str, endpoint_id: str) -> pb.EndpointSummary:
    listed = client.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints
    return next(r for r in listed if r.endpoint_id == endpoint_id)


@pytest.fixture
def endpoint(harness) -> tuple[str, str]:
    """(job_id, endpoint_id) of a 60 s interval endpoint created at 10:00:00."""
    job_id = new_job(harness.a)
    return job_id, new_endpoint(harness.a, job_id, interval_ms=60_000)


# ApplyIntervalHint


def test_interval_hint_answers_its_expiry_and_the_new_next_run(harness, endpoint):
    job_id, endpoint_id = endpoint
    harness.fire(endpoint_id)  # ran at 10:01:00, baseline says 10:02:00

    response = harness.a.ApplyIntervalHint(
        pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=20_000, ttl_minutes=15, reason="traffic 5x")
    )

    assert dt(response.hint_expires_at) == harness.clock.now() + 15 * MINUTE
    assert dt(response.next_run_at) == datetime(2026, 1, 5, 10, 1, 20, tzinfo=UTC)
    listed = row(harness.a, job_id, endpoint_id)
    assert dt(listed.next_run_at) == dt(response.next_run_at)
    assert listed.next_run_source == pb.RUN_SOURCE_AI_INTERVAL


def test_interval_hint_without_ttl_lasts_an_hour(harness, endpoint):
    _, endpoint_id = endpoint

    response = harness.a.ApplyIntervalHint(pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=30_000))

    assert dt(response.hint_expires_at) == harness.clock.now() + 60 * MINUTE
    assert dt(response.next_run_at) == harness.clock.now() + timedelta(seconds=30)


# ScheduleOneShotRun


def test_one_shot_in_the_future_is_scheduled_for_its_time(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=3_600_000)
    run_at = harness.clock.now() + 5 * MINUTE

    response = harness.a.ScheduleOneShotRun(
        pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id, run_at=ts(run_at), ttl_minutes=30, reason="warm cache")
    )

    assert dt(response.scheduled_for) == run_at
    listed = row(harness.a, job_id, endpoint_id)
    assert dt(listed.next_run_at) == run_at
    assert listed.next_run_source == pb.RUN_SOURCE_AI_ONESHOT


def test_one_shot_in_the_recent_past_runs_now(harness, endpoint):
    job_id, endpoint_id = endpoint
    harness.clock.advance(seconds=10)

    response = harness.a.ScheduleOneShotRun(
        pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id, run_at=ts(harness.clock.now() - 2 * MINUTE))
    )

    assert dt(response.scheduled_for) == harness.clock.now()
    assert dt(row(harness.a, job_id, endpoint_id).next_run_at) == harness.clock.now()


# PauseOrResumeEndpoint


def test_pause_without_end_pauses_indefinitely(harness, endpoint):
    job_id, endpoint_id = endpoint

    response = harness.a.PauseOrResumeEndpoint(
        pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, reason="until DB issues show up")
    )

    assert response.paused is True
    assert dt(response.paused_until) is None
    assert dt(response.next_run_at) is None
    listed = row(harness.a, job_id, endpoint_id)
    assert listed.paused is True
    assert dt(listed.paused_until) is None
    assert dt(listed.next_run_at) is None


def test_pause_until_a_time_runs_next_at_that_time(harness, endpoint):
    job_id, endpoint_id = endpoint
    until = harness.clock.now() + timedelta(hours=2)

    response = harness.a.PauseOrResumeEndpoint(
        pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, pause_until=ts(until), reason="noisy alert")
    )

    assert response.paused is True
    assert dt(response.paused_until) == until
    assert dt(response.next_run_at) == until
    listed = row(harness.a, job_id, endpoint_id)
    assert listed.paused is True
    assert dt(listed.paused_until) == until
    assert dt(listed.next_run_at) == until
    assert listed.next_run_source == pb.RUN_SOURCE_PAUSED


def test_resume_makes_the_endpoint_active_one_interval_from_now(harness, endpoint):
    job_id, endpoint_id = endpoint
    harness.a.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id))
    harness.clock.advance(minutes=5)

    response = harness.a.PauseOrResumeEndpoint(
        pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, resume=True, reason="DB degraded")
    )

    assert response.paused is False
    assert dt(response.paused_until) is None
    assert dt(response.next_run_at) == harness.clock.now() + MINUTE
    listed = row(harness.a, job_id, endpoint_id)
    assert listed.paused is False
    assert dt(listed.paused_until) is None
    assert dt(listed.next_run_at) == harness.clock.now() + MINUTE
    assert listed.next_run_source == pb.RUN_SOURCE_BASELINE_INTERVAL


# ClearAdaptiveHints


def test_clear_adaptive_hints_returns_to_the_baseline(harness, endpoint):
    job_id, endpoint_id = endpoint
    harness.fire(endpoint_id)  # ran at 10:01:00
    harness.a.ApplyIntervalHint(pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=10_000))

    response = harness.a.ClearAdaptiveHints(
        pb.ClearAdaptiveHintsRequest(endpoint_id=endpoint_id, reason="flash sale ended")
    )

    assert dt(response.cleared_at) == harness.clock.now()
    assert dt(response.next_run_at) == datetime(2026, 1, 5, 10, 2, tzinfo=UTC)
    listed = row(harness.a, job_id, endpoint_id)
    assert dt(listed.next_run_at) == datetime(2026, 1, 5, 10, 2, tzinfo=UTC)
    assert listed.next_run_source == pb.RUN_SOURCE_BASELINE_INTERVAL


def test_clear_adaptive_hints_drops_a_pending_one_shot(harness, endpoint):
    job_id, endpoint_id = endpoint
    harness.a.ScheduleOneShotRun(
        pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id, run_at=ts(harness.clock.now() + timedelta(seconds=10)))
    )

    response = harness.a.ClearAdaptiveHints(pb.ClearAdaptiveHintsRequest(endpoint_id=endpoint_id))

    assert dt(response.next_run_at) == datetime(2026, 1, 5, 10, 1, tzinfo=UTC)
    assert row(harness.a, job_id, endpoint_id).next_run_source == pb.RUN_SOURCE_BASELINE_INTERVAL


# ResetFailureCount


def test_reset_failure_count_answers_zero_and_the_replanned_run(harness, endpoint):
    job_id, endpoint_id = endpoint
    harness.fire(endpoint_id, status="FAILURE", http_status=500)  # 10:01:00 -> next 10:03:00
    harness.fire(endpoint_id, status="FAILURE", http_status=500)  # 10:03:00 -> next 10:07:00
    assert row(harness.a, job_id, endpoint_id).failure_count == 2

    response = harness.a.ResetFailureCount(
        pb.ResetFailureCountRequest(endpoint_id=endpoint_id, reason="deployed the fix")
    )

    assert response.failure_count == 0
    assert dt(response.next_run_at) == datetime(2026, 1, 5, 10, 4, tzinfo=UTC)
    listed = row(harness.a, job_id, endpoint_id)
    assert listed.failure_count == 0
    assert dt(listed.next_run_at) == datetime(2026, 1, 5, 10, 4, tzinfo=UTC)
