"""The execution pipeline end to end: control, scheduler and executor processes calling a real local HTTP target."""

from __future__ import annotations

import itertools
import os
import signal
from datetime import UTC, datetime, timedelta

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import dt, ts
from tests.support.polling import wait_for
from tests.support.stack import Stack
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e


def add(stack: Stack, target: HttpTarget, path: str, *, interval_ms: int = 1000, **fields: object) -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=stack.job(),
        name=path.strip("/") or "root",
        url=target.url(path),
        baseline=pb.Baseline(interval_ms=interval_ms) if "baseline" not in fields else fields.pop("baseline"),
        **fields,
    )
    return str(stack.client.AddEndpointToJob(request).endpoint_id)


def finished(stack: Stack, endpoint_id: str) -> list[pb.RunSummary]:
    return [r for r in stack.runs(endpoint_id) if r.status != pb.RUN_STATUS_RUNNING]


def detail(stack: Stack, run_id: str) -> pb.Run:
    return stack.client.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run


def test_an_interval_endpoint_fires_at_its_cadence(stack: Stack, target: HttpTarget) -> None:
    endpoint_id = add(stack, target, "/tick", interval_ms=1000)
    wait_for(lambda: len(finished(stack, endpoint_id)) >= 4, 15, "four runs")
    runs = finished(stack, endpoint_id)[:4]
    gaps = [dt(b.scheduled_for) - dt(a.scheduled_for) for a, b in itertools.pairwise(runs)]
    assert gaps == [timedelta(seconds=1)] * 3
    assert all(r.status == pb.RUN_STATUS_SUCCESS for r in runs)
    hits = {h.run_id: h for h in target.hits_on("/tick")}
    for run in runs:
        hit = hits[run.run_id]
        assert hit.headers["X-Pacer-Endpoint-Id"] == endpoint_id
        assert abs(hit.scheduled_for - dt(run.scheduled_for)) < timedelta(milliseconds=1)  # header has ms precision
        assert hit.received_at - hit.scheduled_for < timedelta(milliseconds=500)


def test_a_six_field_cron_endpoint_fires_on_its_slots_once_each(stack: Stack, target: HttpTarget) -> None:
    baseline = pb.Baseline(cron=pb.CronSchedule(expression="*/2 * * * * *"))
    endpoint_id = add(stack, target, "/cron", baseline=baseline)
    wait_for(lambda: len(finished(stack, endpoint_id)) >= 3, 15, "three cron runs")
    slots = [dt(r.scheduled_for) for r in finished(stack, endpoint_id)]
    assert all(s.second % 2 == 0 and s.microsecond == 0 for s in slots)
    assert len(set(slots)) == len(slots)
    assert len({h.run_id for h in target.hits_on("/cron")}) == len(target.hits_on("/cron"))


def test_a_tightening_hint_takes_effect_within_about_a_second(stack: Stack, target: HttpTarget) -> None:
    endpoint_id = add(stack, target, "/hinted", interval_ms=60_000)
    applied_at = datetime.now(UTC)
    stack.client.ApplyIntervalHint(
        pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=1000, reason="surge")
    )
    wait_for(lambda: target.hits_on("/hinted"), 10, "the hinted run")
    assert target.hits_on("/hinted")[0].received_at - applied_at < timedelta(milliseconds=1500)
    wait_for(lambda: len(finished(stack, endpoint_id)) >= 3, 10, "runs at the hinted cadence")
    assert {r.source for r in finished(stack, endpoint_id)} == {pb.RUN_SOURCE_AI_INTERVAL}


def test_a_one_shot_fires_at_run_at_and_only_once(stack: Stack, target: HttpTarget) -> None:
    endpoint_id = add(stack, target, "/once", interval_ms=60_000)
    stack.client.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, reason="until needed"))
    run_at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    stack.client.ScheduleOneShotRun(pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id, run_at=ts(run_at)))
    wait_for(lambda: finished(stack, endpoint_id), 10, "the one-shot")
    (run,) = finished(stack, endpoint_id)
    assert (dt(run.scheduled_for), run.source) == (run_at, pb.RUN_SOURCE_AI_ONESHOT)
    summary = stack.client.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_of(stack, endpoint_id))).endpoints[0]
    assert summary.paused
    assert not summary.HasField("next_run_at")
    assert len(target.hits_on("/once")) == 1


def job_of(stack: Stack, endpoint_id: str) -> str:
    return str(stack.client.ListRuns(pb.ListRunsRequest(endpoint_id=endpoint_id, limit=1)).runs[0].job_id)


def test_pause_stops_runs_and_resume_restarts_them(stack: Stack, target: HttpTarget) -> None:
    endpoint_id = add(stack, target, "/pausable", interval_ms=1000)
    wait_for(lambda: len(finished(stack, endpoint_id)) >= 2, 10, "runs before the pause")
    stack.client.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, reason="noisy"))
    wait_for(lambda: not any(r.status == pb.RUN_STATUS_RUNNING for r in stack.runs(endpoint_id)), 5, "no run in flight")
    paused_count = len(target.hits_on("/pausable"))
    resume_after = datetime.now(UTC) + timedelta(seconds=2.5)
    wait_for(lambda: datetime.now(UTC) > resume_after, 5, "a paused stretch")  # nothing may fire meanwhile
    assert len(target.hits_on("/pausable")) == paused_count
    stack.client.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, resume=True))
    wait_for(lambda: len(target.hits_on("/pausable")) >= paused_count + 2, 10, "runs after resume")


def test_failures_back_off_and_reset_restores_the_cadence(stack: Stack, target: HttpTarget) -> None:
    target.respond("/failing", status=503)
    endpoint_id = add(stack, target, "/failing", interval_ms=1000)
    wait_for(lambda: len(finished(stack, endpoint_id)) >= 4, 20, "four failed runs")
    runs = finished(stack, endpoint_id)[:4]
    gaps = [dt(b.scheduled_for) - dt(a.scheduled_for) for a, b in itertools.pairwise(runs)]
    assert gaps == [timedelta(seconds=2), timedelta(seconds=4), timedelta(seconds=8)]
    assert detail(stack, runs[0].run_id).http_status == 503
    target.respond("/failing", status=200)
    reset = stack.client.ResetFailureCount(pb.ResetFailureCountRequest(endpoint_id=endpoint_id, reason="fixed"))
    assert reset.failure_count == 0
    before = len(finished(stack, endpoint_id))
    wait_for(lambda: len(finished(stack, endpoint_id)) >= before + 3, 15, "runs after the reset")
    recent = finished(stack, endpoint_id)[-2:]
    assert dt(recent[1].scheduled_for) - dt(recent[0].scheduled_for) == timedelta(seconds=1)


def test_a_transient_failure_is_retried_within_the_run_and_the_schedule_moves_once(
    stack: Stack, target: HttpTarget
) -> None:
    target.respond("/flaky", status=503, fail_first=2)
    retry = pb.RetryPolicy(max_attempts=3, backoff_ms=200)
    endpoint_id = add(stack, target, "/flaky", interval_ms=60_000, retry=retry)
    stack.client.ScheduleOneShotRun(pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id, run_at=ts(datetime.now(UTC))))
    wait_for(lambda: finished(stack, endpoint_id), 15, "the retried run")

    (summary,) = finished(stack, endpoint_id)
    run = detail(stack, summary.run_id)
    assert run.status == pb.RUN_STATUS_SUCCESS
    assert [(a.number, a.http_status) for a in run.attempts] == [(1, 503), (2, 503), (3, 200)]
    hits = target.hits_on("/flaky")
    assert [(h.run_id, h.headers["X-Pacer-Attempt"]) for h in hits] == [(run.run_id, str(n)) for n in (1, 2, 3)]
    # The waits were 200 ms, then 400 ms: the target saw them.
    assert hits[2].received_at - hits[0].received_at >= timedelta(milliseconds=600)
    assert run.duration_ms >= 600
    summaries = stack.client.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=run.job_id)).endpoints
    (endpoint,) = [e for e in summaries if e.endpoint_id == endpoint_id]
    assert endpoint.failure_count == 0


def test_a_slow_target_times_out_and_a_large_body_is_truncated(stack: Stack, target: HttpTarget) -> None:
    target.respond("/slow", delay_ms=5000)
    target.respond("/big", body_bytes=1_000_000)
    slow = add(stack, target, "/slow", interval_ms=60_000, timeout_ms=300)
    big = add(stack, target, "/big", interval_ms=60_000)
    for endpoint_id in (slow, big):
        stack.client.ScheduleOneShotRun(
            pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id, run_at=ts(datetime.now(UTC)))
        )
    wait_for(lambda: finished(stack, slow) and finished(stack, big), 15, "both runs")
    assert finished(stack, slow)[0].status == pb.RUN_STATUS_TIMEOUT
    run = detail(stack, finished(stack, big)[0].run_id)
    assert (run.status, run.response_truncated, len(run.response_body)) == (pb.RUN_STATUS_SUCCESS, True, 65536)


def test_kill_9_of_an_executor_mid_run_loses_the_run_and_the_endpoint_keeps_firing(
    stack: Stack, target: HttpTarget
) -> None:
    target.respond("/stuck", delay_ms=10_000)
    endpoint_id = add(stack, target, "/stuck", interval_ms=1000, timeout_ms=2000)
    wait_for(lambda: target.hits_on("/stuck"), 10, "the first call")
    os.kill(stack.executors["executor"].process.pid, signal.SIGKILL)
    stack.executors["executor"].process.wait()
    target.respond("/stuck", delay_ms=0)
    stack.add_executor("executor-2")
    wait_for(lambda: any(r.status == pb.RUN_STATUS_LOST for r in stack.runs(endpoint_id)), 15, "the LOST run")
    wait_for(
        lambda: any(r.status == pb.RUN_STATUS_SUCCESS for r in stack.runs(endpoint_id)), 15, "a run after the loss"
    )
