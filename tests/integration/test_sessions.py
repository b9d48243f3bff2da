"""Scheduler sessions on the real LeaseService: a scheduler that stops renewing its session gives back at once the
runs no executor began, an executor's word that it holds a run keeps it, and runs on a vanished executor are settled
LOST at once as "may have reached the target"."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from sqlalchemy import select

from pacer.control.v1 import control_service_pb2 as pb
from pacer_control.models import Run
from tests.integration.test_leases import Leases, endpoint, next_run, result
from tests.support.harness import Harness, dt, status_of, violations

TTL = timedelta(milliseconds=3000)


def run_ids(harness: Harness) -> set[str]:
    with harness.engine.connect() as connection:
        return set(connection.scalars(select(Run.id)))


def end_expired(harness: Harness) -> list[str]:
    return [s.session_id for s in harness.pipeline.end_expired_sessions(harness.clock.now(), 100)]


def test_a_claim_needs_an_open_session(harness: Harness) -> None:
    leases = Leases(harness, session_id="ss_never_opened")
    leases.session_id = ""
    with pytest.raises(grpc.RpcError) as missing:
        leases.claim()
    assert violations(missing.value).keys() == {"session_id"}
    leases.session_id = "ss_unknown"
    with pytest.raises(grpc.RpcError) as unknown:
        leases.claim()
    assert status_of(unknown.value) == grpc.StatusCode.FAILED_PRECONDITION


def test_a_silent_session_releases_runs_that_never_began_to_the_same_slot(harness: Harness) -> None:
    first = endpoint(harness)
    harness.clock.advance(minutes=1)
    leases = Leases(harness, session_id="ss_dies")
    (item,) = leases.claim().items
    slot = dt(item.scheduled_for)

    harness.clock.advance((TTL / 2).total_seconds())
    assert end_expired(harness) == []  # still within its TTL
    harness.clock.advance(TTL.total_seconds())
    assert end_expired(harness) == ["ss_dies"]

    assert item.run_id not in run_ids(harness)  # it never began: no trace
    assert dt(next_run(harness, first).next_run_at) == slot
    survivor = Leases(harness, session_id="ss_takes_over")
    (again,) = survivor.claim().items
    assert (again.endpoint_id, dt(again.scheduled_for)) == (first, slot)
    assert again.run_id != item.run_id

    with pytest.raises(grpc.RpcError) as ended:
        leases.heartbeat()
    assert status_of(ended.value) == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as no_claims:
        leases.claim()
    assert status_of(no_claims.value) == grpc.StatusCode.FAILED_PRECONDITION


def test_a_run_an_executor_holds_is_never_released_and_its_result_settles_it(harness: Harness) -> None:
    held_endpoint, other = endpoint(harness), endpoint(harness)
    harness.clock.advance(minutes=1)
    dying, survivor = Leases(harness, session_id="ss_dying"), Leases(harness, session_id="ss_alive")
    items = {item.endpoint_id: item for item in dying.claim().items}
    survivor.report(held=[items[held_endpoint].run_id])

    harness.clock.advance(3 * TTL.total_seconds())
    survivor.heartbeat()
    assert end_expired(harness) == ["ss_dying"]
    assert items[held_endpoint].run_id in run_ids(harness)
    assert items[other].run_id not in run_ids(harness)
    assert [i.endpoint_id for i in survivor.claim().items] == [other]

    survivor.report(result(items[held_endpoint]))
    run = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=items[held_endpoint].run_id)).run
    assert run.status == pb.RUN_STATUS_SUCCESS


def test_a_closing_heartbeat_releases_at_once(harness: Harness) -> None:
    target = endpoint(harness)
    harness.clock.advance(minutes=1)
    leases = Leases(harness, session_id="ss_drained")
    (item,) = leases.claim().items
    leases.heartbeat(closing=True)
    assert item.run_id not in run_ids(harness)
    assert [i.endpoint_id for i in Leases(harness, session_id="ss_next").claim().items] == [target]


def test_runs_on_a_vanished_executor_are_lost_at_once_unless_held(harness: Harness) -> None:
    gone, kept = endpoint(harness), endpoint(harness)
    harness.clock.advance(minutes=1)
    leases = Leases(harness)
    items = {item.endpoint_id: item for item in leases.claim().items}
    leases.report(held=[items[kept].run_id], vanished=[items[gone].run_id, items[kept].run_id])

    lost = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=items[gone].run_id)).run
    assert lost.status == pb.RUN_STATUS_LOST
    assert "may have reached the target" in lost.error_message
    assert next_run(harness, gone).failure_count == 1
    running = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=items[kept].run_id)).run
    assert running.status == pb.RUN_STATUS_RUNNING


def test_runs_given_back_as_never_begun_are_due_again_at_their_slot(harness: Harness) -> None:
    given_back, held = endpoint(harness), endpoint(harness)
    harness.clock.advance(minutes=1)
    leases = Leases(harness)
    items = {item.endpoint_id: item for item in leases.claim().items}
    leases.report(held=[items[held].run_id], released=[items[given_back].run_id, items[held].run_id])

    assert items[given_back].run_id not in run_ids(harness)
    assert items[held].run_id in run_ids(harness)  # an executor said it holds it: it may have begun
    (again,) = leases.claim().items
    assert (again.endpoint_id, again.scheduled_for) == (given_back, items[given_back].scheduled_for)


def test_a_claim_sent_again_after_a_lost_answer_gets_the_runs_it_took(harness: Harness) -> None:
    endpoints = {endpoint(harness), endpoint(harness)}
    harness.clock.advance(minutes=1)
    leases = Leases(harness)
    first = leases.claim(claim_id="cl_lost_answer").items
    assert {item.endpoint_id for item in first} == endpoints
    # The answer never reached the scheduler: it asks again with the same claim id.
    again = leases.claim(claim_id="cl_lost_answer").items
    assert [(i.run_id, i.headers["Authorization"]) for i in again] == [
        (i.run_id, i.headers["Authorization"]) for i in first
    ]
    assert leases.claim(claim_id="cl_next").items == []  # nothing else is due, and nothing was claimed twice
    assert len(run_ids(harness)) == 2
