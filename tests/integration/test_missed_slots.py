"""Missed slots: a herd made overdue together returns to its own phases, and missed slots are counted and shown.

Runs are claimed through the pipeline store (as a scheduler's claim would be) and results reported through the real
LeaseService, so the control plane's metrics count what the reports did.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from pacer.control.v1 import control_service_pb2 as pb
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer.internal.v1 import lease_service_pb2_grpc as lease_grpc
from pacer_control.models import Endpoint
from pacer_control.pipeline import ClaimedRun
from tests.support.harness import LEASE_GRACE_MS, SERVICE_TOKEN, Harness, dt, ts

STEP_S = 10


def new_endpoint(harness: Harness, job_id: str, interval_s: float = STEP_S, timeout_ms: int = 1_000) -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id,
        name="check",
        url="https://api.example.com/health",
        baseline=pb.Baseline(interval_ms=int(interval_s * 1000)),
        timeout_ms=timeout_ms,
    )
    return harness.a.AddEndpointToJob(request).endpoint_id


def new_job(harness: Harness) -> str:
    return harness.a.CreateJob(pb.CreateJobRequest(name="fleet")).job_id


def claim(harness: Harness, horizon_ms: int = 0) -> list[ClaimedRun]:
    return harness.pipeline.claim_due(harness.clock.now(), horizon_ms, 1000, LEASE_GRACE_MS)


def report(harness: Harness, runs: list[ClaimedRun], duration_ms: int = 50) -> lease_pb.ReportResultsResponse:
    """Report every run as a SUCCESS that started on time and took `duration_ms`, through the LeaseService."""
    results = [
        lease_pb.RunResult(
            run_id=run.run_id,
            status=pb.RUN_STATUS_SUCCESS,
            started_at=ts(run.scheduled_for),
            finished_at=ts(run.scheduled_for + timedelta(milliseconds=duration_ms)),
            duration_ms=duration_ms,
            http_status=200,
        )
        for run in runs
    ]
    with grpc.insecure_channel(harness.address) as channel:
        stub = lease_grpc.LeaseServiceStub(channel)
        request = lease_pb.ReportResultsRequest(results=results)
        return stub.ReportResults(request, metadata=[("authorization", f"Bearer {SERVICE_TOKEN}")], timeout=10)


def next_runs(harness: Harness, job_id: str) -> dict[str, datetime | None]:
    endpoints = harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints
    return {e.endpoint_id: dt(e.next_run_at) for e in endpoints}


def health(harness: Harness, endpoint_id: str) -> pb.SummarizeEndpointHealthResponse:
    return harness.a.SummarizeEndpointHealth(pb.SummarizeEndpointHealthRequest(endpoint_id=endpoint_id))


def missed_metric(harness: Harness, reason: str) -> float | None:
    return harness.registry.get_sample_value("pacer_runs_missed_total", {"reason": reason})


def fire_once(harness: Harness, endpoint_id: str, duration_ms: int = 50) -> ClaimedRun:
    """Claim the endpoint's next run at its due time and report it done `duration_ms` later."""
    due = column(harness, endpoint_id, Endpoint.next_run_at)
    if due > harness.clock.now():
        harness.clock.set(due)
    (run,) = claim(harness)
    harness.clock.advance(duration_ms / 1000)
    report(harness, [run], duration_ms)
    return run


def column(harness: Harness, endpoint_id: str, attribute: Any) -> Any:
    """One column of the endpoint's row, read straight from the database."""
    with harness.engine.connect() as connection:
        value = connection.scalar(select(attribute).where(Endpoint.id == endpoint_id))
    assert value is not None
    return value


def next_run_of(harness: Harness, endpoint_id: str) -> datetime:
    return column(harness, endpoint_id, Endpoint.next_run_at)


# -- a herd returns to its phases --------------------------------------------------------------------------------


def test_endpoints_made_overdue_together_return_to_their_own_phases(harness: Harness) -> None:
    job_id = new_job(harness)
    start = harness.clock.now()
    created = {}
    for number in range(20):  # 20 endpoints every 10 s, half a second apart: 20 phases
        harness.clock.set(start + timedelta(milliseconds=500 * number))
        created[new_endpoint(harness, job_id)] = harness.clock.now()
    step = timedelta(seconds=STEP_S)

    # Each first run is claimed on time (a scheduler claims a horizon ahead) ...
    harness.clock.set(start + step)
    first = claim(harness, horizon_ms=STEP_S * 1000)
    assert sorted(run.scheduled_for for run in first) == sorted(at + step for at in created.values())
    # ... but the control plane is down until 45.2 s: the results arrive together, long after every next slot.
    outage_end = start + timedelta(seconds=45.2)
    harness.clock.set(outage_end)
    assert report(harness, first).applied == 20
    assert set(next_runs(harness, job_id).values()) == {outage_end}  # the herd fires together, once

    herd = claim(harness)
    assert len(herd) == 20
    harness.clock.advance(0.05)
    report(harness, herd)

    after = next_runs(harness, job_id)
    for endpoint_id, created_at in created.items():
        back = after[endpoint_id]
        assert back is not None
        assert outage_end < back <= outage_end + step  # within one interval ...
        assert (back - created_at) % step == timedelta(0)  # ... back on its own grid
    assert len(set(after.values())) == 20


def test_missed_slots_of_a_late_batch_are_counted_as_an_outage(harness: Harness) -> None:
    job_id = new_job(harness)
    early = new_endpoint(harness, job_id)  # created 10:00:00, first run 10:00:10
    harness.clock.advance(9.5)
    late = new_endpoint(harness, job_id)  # created 10:00:09.5, first run 10:00:19.5
    runs = claim(harness, horizon_ms=STEP_S * 1000)
    harness.clock.set(harness.clock.now() + timedelta(seconds=35.7))  # results at 10:00:45.2

    answer = report(harness, runs)

    assert answer.applied == 2
    # early: slots 10:00:20, :30 and :40 passed; the run now stands for :40, so two were missed.
    # late: slots 10:00:29.5 and :39.5 passed; the run now stands for :39.5, so one was missed.
    assert (health(harness, early).missed_slots, health(harness, late).missed_slots) == (2, 1)
    assert dt(health(harness, early).last_missed_at) == harness.clock.now()
    assert missed_metric(harness, "outage") == 3
    assert missed_metric(harness, "overrun") == 0


def test_a_run_slower_than_its_cadence_misses_slots_by_overrun(harness: Harness) -> None:
    endpoint_id = new_endpoint(harness, new_job(harness), interval_s=1)
    run = fire_once(harness, endpoint_id, duration_ms=2_500)  # due 10:00:01, done 10:00:03.5

    summary = health(harness, endpoint_id)

    assert summary.missed_slots == 1  # 10:00:02 had no run; the run at once stands for 10:00:03
    assert dt(summary.last_missed_at) == run.scheduled_for + timedelta(milliseconds=2_500)
    assert (missed_metric(harness, "overrun"), missed_metric(harness, "outage")) == (1, 0)
    assert next_run_of(harness, endpoint_id) == harness.clock.now()
    fire_once(harness, endpoint_id)  # quick this time (10:00:03.5 to :03.55): back on the grid at 10:00:04
    assert next_run_of(harness, endpoint_id) == run.scheduled_for + timedelta(seconds=3)


def test_an_endpoint_that_never_missed_a_slot_shows_none(harness: Harness) -> None:
    endpoint_id = new_endpoint(harness, new_job(harness))
    for _ in range(3):
        fire_once(harness, endpoint_id)

    summary = health(harness, endpoint_id)

    assert summary.missed_slots == 0
    assert not summary.HasField("last_missed_at")


# -- what is not missed ---------------------------------------------------------------------------------------------


def test_slots_stretched_away_by_failure_backoff_are_not_missed(harness: Harness) -> None:
    endpoint_id = new_endpoint(harness, new_job(harness))
    for _ in range(4):  # 10 s, then 20, 40, 80: all on time
        harness.fire(endpoint_id, status="FAILURE", http_status=500)

    assert health(harness, endpoint_id).missed_slots == 0


def test_a_lost_run_counts_only_the_slots_of_its_backed_off_grid(harness: Harness) -> None:
    endpoint_id = new_endpoint(harness, new_job(harness), timeout_ms=1_000)
    harness.clock.advance(STEP_S)
    (run,) = claim(harness)
    harness.clock.advance(65)  # the lease (1 s + 30 s grace) expired long ago

    (lost,) = harness.pipeline.reap_expired(harness.clock.now(), 100)

    # One failure doubles the step to 20 s: slots +20 and +40 were missed, and the run due now stands for +60. The
    # 10 s slots in between were stretched away by the backoff, not missed.
    assert lost.missed_slots == 2
    assert health(harness, endpoint_id).missed_slots == 2
    assert dt(health(harness, endpoint_id).last_missed_at) == harness.clock.now()
    assert next_run_of(harness, endpoint_id) == harness.clock.now()
    claim(harness)
    assert column(harness, endpoint_id, Endpoint.anchor_at) == run.scheduled_for + timedelta(seconds=60)


def test_paused_time_is_not_missed(harness: Harness) -> None:
    endpoint_id = new_endpoint(harness, new_job(harness))
    fire_once(harness, endpoint_id)
    pause_end = harness.clock.now() + timedelta(minutes=5)
    harness.a.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, pause_until=ts(pause_end)))
    fire_once(harness, endpoint_id)  # the run at the pause's end
    harness.a.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id))
    harness.clock.advance(minutes=30)
    harness.a.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, resume=True))
    fire_once(harness, endpoint_id)

    assert health(harness, endpoint_id).missed_slots == 0
    assert missed_metric(harness, "outage") == 0


def test_a_pause_that_began_and_ended_while_a_run_was_in_flight_misses_nothing(harness: Harness) -> None:
    endpoint_id = new_endpoint(harness, new_job(harness))
    harness.clock.advance(STEP_S)
    (run,) = claim(harness)
    pause_end = harness.clock.now() + timedelta(seconds=30)
    harness.a.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id, pause_until=ts(pause_end)))
    harness.clock.set(pause_end + timedelta(seconds=5))

    report(harness, [run], duration_ms=35_000)

    assert health(harness, endpoint_id).missed_slots == 0
    assert next_run_of(harness, endpoint_id) == harness.clock.now()  # the pause is over: it runs at once


def test_a_hint_making_an_endpoint_due_now_is_not_a_miss(harness: Harness) -> None:
    endpoint_id = new_endpoint(harness, new_job(harness), interval_s=60)
    harness.clock.advance(35)
    harness.a.ApplyIntervalHint(pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=10_000))
    assert next_run_of(harness, endpoint_id) == harness.clock.now()  # 10:00:10 and :20 are past: due at once

    fire_once(harness, endpoint_id)

    assert health(harness, endpoint_id).missed_slots == 0
    # The run at 10:00:35 stood for the hint's grid point 10:00:30: the next is 10:00:40.
    assert next_run_of(harness, endpoint_id) == harness.clock.now().replace(second=40, microsecond=0)


@pytest.mark.parametrize("reason", ["overrun", "outage"])
def test_every_reason_is_exported_from_the_start(harness: Harness, reason: str) -> None:
    assert missed_metric(harness, reason) == 0
