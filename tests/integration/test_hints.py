"""Steering over time with the fake clock: interval hints (tighten, relax, clear, expiry), failure backoff and its
reset, pause and resume, and one-shot runs while paused (DESIGN section 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import dt, ts

SECOND = timedelta(seconds=1)


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 1, 5, hour, minute, second, tzinfo=UTC)


def new_job(client) -> str:
    return client.CreateJob(pb.CreateJobRequest(name="Flash Sale")).job_id


def new_endpoint(client, job_id: str, interval_ms: int = 60_000, clamp: pb.Clamp | None = None, **fields) -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id,
        name=fields.pop("name", "check_checkout"),
        url="https://shop.example.com/checkout/health",
        baseline=fields.pop("baseline", pb.Baseline(interval_ms=interval_ms)),
        clamp=clamp or pb.Clamp(),
        **fields,
    )
    return client.AddEndpointToJob(request).endpoint_id


def row(client, job_id: str, endpoint_id: str) -> pb.EndpointSummary:
    listed = client.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints
    return next(r for r in listed if r.endpoint_id == endpoint_id)


def hint(client, endpoint_id: str, interval_ms: int, ttl_minutes: int | None = None) -> pb.ApplyIntervalHintResponse:
    request = pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=interval_ms, reason="steering")
    if ttl_minutes is not None:
        request.ttl_minutes = ttl_minutes
    return client.ApplyIntervalHint(request)


def one_shot(client, endpoint_id: str, run_at: datetime) -> pb.ScheduleOneShotRunResponse:
    return client.ScheduleOneShotRun(pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id, run_at=ts(run_at)))


def pause(client, endpoint_id: str, until: datetime | None = None) -> pb.PauseOrResumeEndpointResponse:
    request = pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, reason="cool down")
    if until is not None:
        request.pause_until.CopyFrom(ts(until))
    return client.PauseOrResumeEndpoint(request)


def resume(client, endpoint_id: str) -> pb.PauseOrResumeEndpointResponse:
    return client.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, resume=True))


def run(client, run_id: str) -> pb.Run:
    return client.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run


def runs_of(client, endpoint_id: str) -> int:
    return client.ListRuns(pb.ListRunsRequest(endpoint_id=endpoint_id)).total


@pytest.fixture
def endpoint(harness) -> tuple[str, str]:
    """(job_id, endpoint_id) of a 60 s interval endpoint created at 10:00:00."""
    job_id = new_job(harness.a)
    return job_id, new_endpoint(harness.a, job_id, interval_ms=60_000)


# Interval hints


def test_tightening_hint_moves_the_next_run_earlier_at_once(harness, endpoint):
    job_id, endpoint_id = endpoint
    harness.fire(endpoint_id)  # 10:01:00; the baseline would run next at 10:02:00

    response = hint(harness.a, endpoint_id, interval_ms=20_000)

    assert dt(response.next_run_at) == at(10, 1, 20)
    assert dt(row(harness.a, job_id, endpoint_id).next_run_at) == at(10, 1, 20)
    tightened = run(harness.a, harness.fire(endpoint_id))
    assert dt(tightened.scheduled_for) == at(10, 1, 20)
    assert tightened.source == pb.RUN_SOURCE_AI_INTERVAL
    assert dt(row(harness.a, job_id, endpoint_id).next_run_at) == at(10, 1, 40)


def test_relaxing_hint_moves_the_next_run_later(harness, endpoint):
    job_id, endpoint_id = endpoint
    harness.fire(endpoint_id)  # 10:01:00

    response = hint(harness.a, endpoint_id, interval_ms=300_000)

    assert dt(response.next_run_at) == at(10, 6)
    listed = row(harness.a, job_id, endpoint_id)
    assert dt(listed.next_run_at) == at(10, 6)
    assert listed.next_run_source == pb.RUN_SOURCE_AI_INTERVAL
    relaxed = run(harness.a, harness.fire(endpoint_id))
    assert (dt(relaxed.scheduled_for), relaxed.source) == (at(10, 6), pb.RUN_SOURCE_AI_INTERVAL)


def test_clearing_hints_returns_to_the_baseline_cadence(harness, endpoint):
    job_id, endpoint_id = endpoint
    hint(harness.a, endpoint_id, interval_ms=20_000)
    harness.fire(endpoint_id)  # 10:00:20 under the hint

    response = harness.a.ClearAdaptiveHints(pb.ClearAdaptiveHintsRequest(endpoint_id=endpoint_id, reason="sale over"))

    assert dt(response.next_run_at) == at(10, 1, 20)
    baseline = run(harness.a, harness.fire(endpoint_id))
    assert (dt(baseline.scheduled_for), baseline.source) == (at(10, 1, 20), pb.RUN_SOURCE_BASELINE_INTERVAL)
    assert dt(row(harness.a, job_id, endpoint_id).next_run_at) == at(10, 2, 20)


def test_list_job_endpoints_shows_the_hints_cadence_and_end_until_it_is_cleared(harness, endpoint):
    job_id, endpoint_id = endpoint
    assert not row(harness.a, job_id, endpoint_id).HasField("hint_expires_at")

    response = hint(harness.a, endpoint_id, interval_ms=20_000)

    listed = row(harness.a, job_id, endpoint_id)
    assert listed.hint_interval_ms == 20_000
    assert listed.hint_expires_at == response.hint_expires_at
    harness.a.ClearAdaptiveHints(pb.ClearAdaptiveHintsRequest(endpoint_id=endpoint_id, reason="sale over"))
    cleared = row(harness.a, job_id, endpoint_id)
    assert (cleared.hint_interval_ms, cleared.HasField("hint_expires_at")) == (0, False)


def test_expired_hint_gives_way_to_the_baseline(harness, endpoint):
    job_id, endpoint_id = endpoint
    response = hint(harness.a, endpoint_id, interval_ms=20_000, ttl_minutes=1)
    assert dt(response.hint_expires_at) == at(10, 1)

    under_hint = [run(harness.a, harness.fire(endpoint_id)) for _ in range(3)]

    assert [dt(r.scheduled_for) for r in under_hint] == [at(10, 0, 20), at(10, 0, 40), at(10, 1)]
    assert {r.source for r in under_hint} == {pb.RUN_SOURCE_AI_INTERVAL}
    listed = row(harness.a, job_id, endpoint_id)
    assert dt(listed.next_run_at) == at(10, 2)
    assert listed.next_run_source == pb.RUN_SOURCE_BASELINE_INTERVAL
    after = run(harness.a, harness.fire(endpoint_id))
    assert (dt(after.scheduled_for), after.source) == (at(10, 2), pb.RUN_SOURCE_BASELINE_INTERVAL)


def test_a_new_hint_replaces_the_previous_one(harness, endpoint):
    job_id, endpoint_id = endpoint
    hint(harness.a, endpoint_id, interval_ms=20_000)

    response = hint(harness.a, endpoint_id, interval_ms=40_000, ttl_minutes=5)

    assert dt(response.next_run_at) == at(10, 0, 40)
    assert dt(response.hint_expires_at) == at(10, 5)
    assert dt(row(harness.a, job_id, endpoint_id).next_run_at) == at(10, 0, 40)


def test_tightening_hint_stops_at_the_min_clamp(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=60_000, clamp=pb.Clamp(min_interval_ms=30_000))
    harness.fire(endpoint_id)  # started 10:01:00

    response = hint(harness.a, endpoint_id, interval_ms=5_000)

    assert dt(response.next_run_at) == at(10, 1, 30)
    assert row(harness.a, job_id, endpoint_id).next_run_source == pb.RUN_SOURCE_CLAMPED_MIN


def test_relaxing_hint_stops_at_the_max_clamp(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=60_000, clamp=pb.Clamp(max_interval_ms=120_000))
    harness.fire(endpoint_id)  # 10:01:00

    response = hint(harness.a, endpoint_id, interval_ms=600_000)

    assert dt(response.next_run_at) == at(10, 3)
    assert row(harness.a, job_id, endpoint_id).next_run_source == pb.RUN_SOURCE_CLAMPED_MAX


def test_hint_on_a_paused_endpoint_waits_for_the_pause_end(harness, endpoint):
    _, endpoint_id = endpoint
    until = harness.clock.now() + timedelta(hours=2)
    pause(harness.a, endpoint_id, until)

    response = hint(harness.a, endpoint_id, interval_ms=20_000)

    assert dt(response.next_run_at) == until


# Failure backoff


@pytest.mark.parametrize("failure", ["FAILURE", "TIMEOUT", "LOST", "BLOCKED"])
def test_consecutive_failures_back_the_baseline_interval_off(harness, endpoint, failure):
    job_id, endpoint_id = endpoint
    gaps, counts = [], []
    for _ in range(6):
        started = dt(run(harness.a, harness.fire(endpoint_id, status=failure, http_status=0)).scheduled_for)
        listed = row(harness.a, job_id, endpoint_id)
        gaps.append((dt(listed.next_run_at) - started) // SECOND)
        counts.append(listed.failure_count)

    assert counts == [1, 2, 3, 4, 5, 6]
    assert gaps == [120, 240, 480, 960, 1920, 1920]  # 60 s x 2^min(n, 5)


def test_a_success_ends_the_backoff(harness, endpoint):
    job_id, endpoint_id = endpoint
    for _ in range(3):
        harness.fire(endpoint_id, status="FAILURE", http_status=500)

    success = run(harness.a, harness.fire(endpoint_id))

    listed = row(harness.a, job_id, endpoint_id)
    assert listed.failure_count == 0
    assert dt(listed.next_run_at) - dt(success.scheduled_for) == timedelta(seconds=60)


def test_reset_failure_count_removes_the_backoff(harness, endpoint):
    job_id, endpoint_id = endpoint
    for _ in range(3):  # 10:01, 10:03, 10:07; backed off to 10:15
        harness.fire(endpoint_id, status="FAILURE", http_status=500)
    assert dt(row(harness.a, job_id, endpoint_id).next_run_at) == at(10, 15)

    response = harness.a.ResetFailureCount(pb.ResetFailureCountRequest(endpoint_id=endpoint_id, reason="fixed"))

    assert response.failure_count == 0
    assert dt(response.next_run_at) == at(10, 8)
    listed = row(harness.a, job_id, endpoint_id)
    assert (listed.failure_count, dt(listed.next_run_at)) == (0, at(10, 8))
    fresh = run(harness.a, harness.fire(endpoint_id))
    assert (dt(fresh.scheduled_for), fresh.attempt) == (at(10, 8), 1)


def test_backoff_does_not_stretch_a_cron_baseline(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, baseline=pb.Baseline(cron=pb.CronSchedule(expression="* * * * *")))

    harness.fire(endpoint_id, status="FAILURE", http_status=500)  # 10:01
    harness.fire(endpoint_id, status="FAILURE", http_status=500)  # 10:02

    listed = row(harness.a, job_id, endpoint_id)
    assert (listed.failure_count, dt(listed.next_run_at)) == (2, at(10, 3))


def test_backoff_does_not_stretch_an_interval_hint(harness, endpoint):
    job_id, endpoint_id = endpoint
    hint(harness.a, endpoint_id, interval_ms=20_000)

    harness.fire(endpoint_id, status="FAILURE", http_status=500)  # 10:00:20
    harness.fire(endpoint_id, status="FAILURE", http_status=500)  # 10:00:40

    listed = row(harness.a, job_id, endpoint_id)
    assert (listed.failure_count, dt(listed.next_run_at)) == (2, at(10, 1))


# Pause and resume


def test_paused_endpoint_does_not_fire(harness, endpoint):
    job_id, paused = endpoint
    live = new_endpoint(harness.a, job_id, interval_ms=60_000, name="live")
    pause(harness.a, paused)

    harness.fire(live)  # 10:01, when the paused endpoint would have been due
    harness.fire(live)

    assert runs_of(harness.a, paused) == 0
    listed = row(harness.a, job_id, paused)
    assert listed.paused is True
    assert dt(listed.next_run_at) is None


def test_timed_pause_ends_with_a_run_at_the_pause_end(harness, endpoint):
    job_id, endpoint_id = endpoint
    until = at(10, 30)
    pause(harness.a, endpoint_id, until)

    ended = run(harness.a, harness.fire(endpoint_id))

    assert (dt(ended.scheduled_for), ended.source) == (until, pb.RUN_SOURCE_PAUSED)
    listed = row(harness.a, job_id, endpoint_id)
    assert listed.paused is False
    assert dt(listed.paused_until) is None
    assert dt(listed.next_run_at) == until + timedelta(seconds=60)


def test_resumed_endpoint_fires_one_interval_after_the_resume(harness, endpoint):
    job_id, endpoint_id = endpoint
    pause(harness.a, endpoint_id)
    harness.clock.advance(minutes=7)

    response = resume(harness.a, endpoint_id)

    assert dt(response.next_run_at) == at(10, 8)
    resumed = run(harness.a, harness.fire(endpoint_id))
    assert (dt(resumed.scheduled_for), resumed.source) == (at(10, 8), pb.RUN_SOURCE_BASELINE_INTERVAL)
    assert row(harness.a, job_id, endpoint_id).paused is False


# One-shot runs


def test_one_shot_fires_while_paused_and_the_pause_stays(harness, endpoint):
    job_id, endpoint_id = endpoint
    pause(harness.a, endpoint_id)
    run_at = harness.clock.now() + timedelta(seconds=30)

    response = one_shot(harness.a, endpoint_id, run_at)

    assert dt(response.scheduled_for) == run_at
    listed = row(harness.a, job_id, endpoint_id)
    assert (listed.paused, dt(listed.next_run_at), listed.next_run_source) == (True, run_at, pb.RUN_SOURCE_AI_ONESHOT)
    fired = run(harness.a, harness.fire(endpoint_id))
    assert (dt(fired.scheduled_for), fired.source) == (run_at, pb.RUN_SOURCE_AI_ONESHOT)
    listed = row(harness.a, job_id, endpoint_id)
    assert listed.paused is True
    assert dt(listed.paused_until) is None
    assert dt(listed.next_run_at) is None
    assert runs_of(harness.a, endpoint_id) == 1


def test_one_shot_during_a_timed_pause_then_back_to_the_pause_end(harness, endpoint):
    job_id, endpoint_id = endpoint
    until = at(12, 0)
    pause(harness.a, endpoint_id, until)

    one_shot(harness.a, endpoint_id, at(10, 10))
    fired = run(harness.a, harness.fire(endpoint_id))

    assert (dt(fired.scheduled_for), fired.source) == (at(10, 10), pb.RUN_SOURCE_AI_ONESHOT)
    listed = row(harness.a, job_id, endpoint_id)
    assert (listed.paused, dt(listed.paused_until), dt(listed.next_run_at)) == (True, until, until)


def test_one_shot_is_consumed_by_its_run(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=3_600_000)
    one_shot(harness.a, endpoint_id, at(10, 5))

    fired = run(harness.a, harness.fire(endpoint_id))

    assert (dt(fired.scheduled_for), fired.source) == (at(10, 5), pb.RUN_SOURCE_AI_ONESHOT)
    listed = row(harness.a, job_id, endpoint_id)
    assert listed.next_run_source != pb.RUN_SOURCE_AI_ONESHOT
    assert dt(listed.next_run_at) > at(10, 5)
    again = run(harness.a, harness.fire(endpoint_id))
    assert again.source != pb.RUN_SOURCE_AI_ONESHOT


def test_one_shot_is_held_back_by_the_min_clamp(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=3_600_000, clamp=pb.Clamp(min_interval_ms=300_000))
    harness.fire(endpoint_id)  # started 11:00

    response = one_shot(harness.a, endpoint_id, harness.clock.now())

    assert dt(response.scheduled_for) == at(11, 5)
    fired = run(harness.a, harness.fire(endpoint_id))
    assert dt(fired.scheduled_for) == at(11, 5)


def test_one_shot_while_paused_is_held_back_by_the_min_clamp(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=60_000, clamp=pb.Clamp(min_interval_ms=600_000))
    started = dt(run(harness.a, harness.fire(endpoint_id)).started_at)
    pause(harness.a, endpoint_id)

    response = one_shot(harness.a, endpoint_id, harness.clock.now())

    assert dt(response.scheduled_for) == started + timedelta(minutes=10)
    listed = row(harness.a, job_id, endpoint_id)
    assert (listed.paused, dt(listed.next_run_at)) == (True, started + timedelta(minutes=10))
