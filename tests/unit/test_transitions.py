"""What claims, results, lost and released runs, and one-shots do to an endpoint's schedule: table rows for the
rules, and properties that must hold for every state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common import runs
from pacer_common.governor import CronBaseline, IntervalBaseline, Source
from pacer_common.runs import FAILURES, RunStatus
from pacer_common.transitions import (
    MISSED_OUTAGE,
    MISSED_OVERRUN,
    Outcome,
    ScheduleState,
    lease_expiry,
    on_claim,
    on_clear_hints,
    on_interval_hint,
    on_lost,
    on_one_shot,
    on_pause,
    on_release,
    on_reset_failures,
    on_resume,
    on_settle,
    replan,
)

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
SECOND_MS = 1_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000
TIMEOUT_MS = 5_000
GRACE_MS = 30_000
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def every_minute(**changes: Any) -> ScheduleState:
    """An interval endpoint (one minute) anchored at T0 and planned for T0 + 1 min, with `changes` applied."""
    state = ScheduleState(
        baseline=IntervalBaseline(MINUTE_MS),
        anchor_at=T0,
        next_run_at=at(60),
        next_run_source=Source.BASELINE_INTERVAL,
        next_slot_at=at(60),
    )
    return replace(state, **changes)


def leased(run_id: str = "run_1", **changes: Any) -> ScheduleState:
    """`every_minute` with its 10:01 run claimed as `run_id`, then `changes` applied."""
    return replace(on_claim(every_minute(), run_id, at(60), TIMEOUT_MS, GRACE_MS).state, **changes)


# -- RunStatus ---------------------------------------------------------------------------------------------------


def test_every_run_status_has_one_wire_value_and_back() -> None:
    assert {status: runs.to_proto(status) for status in RunStatus} == {
        RunStatus.RUNNING: pb.RUN_STATUS_RUNNING,
        RunStatus.SUCCESS: pb.RUN_STATUS_SUCCESS,
        RunStatus.FAILURE: pb.RUN_STATUS_FAILURE,
        RunStatus.TIMEOUT: pb.RUN_STATUS_TIMEOUT,
        RunStatus.LOST: pb.RUN_STATUS_LOST,
        RunStatus.BLOCKED: pb.RUN_STATUS_BLOCKED,
    }
    assert all(runs.from_proto(runs.to_proto(status)) is status for status in RunStatus)
    known = set(pb.RunStatus.values()) - {pb.RUN_STATUS_UNSPECIFIED}
    assert {runs.to_proto(status) for status in RunStatus} == known


@pytest.mark.parametrize("number", [pb.RUN_STATUS_UNSPECIFIED, 99, -1])
def test_a_wire_value_that_names_no_status_is_refused(number: int) -> None:
    with pytest.raises(ValueError, match="not a run status"):
        runs.from_proto(number)


def test_failures_are_the_final_statuses_other_than_success() -> None:
    assert set(FAILURES) == {RunStatus.FAILURE, RunStatus.TIMEOUT, RunStatus.LOST, RunStatus.BLOCKED}
    assert RunStatus.LOST not in runs.REPORTABLE
    assert RunStatus.RUNNING not in runs.FINAL


# -- claims ------------------------------------------------------------------------------------------------------


def test_a_claim_leases_the_endpoint_and_anchors_it_at_the_run_it_takes() -> None:
    claim = on_claim(every_minute(failure_count=2), "run_1", at(59), TIMEOUT_MS, GRACE_MS)
    assert (claim.run_id, claim.scheduled_for, claim.source, claim.attempt) == (
        "run_1",
        at(60),
        Source.BASELINE_INTERVAL,
        3,
    )
    assert claim.lease_expires_at == at(60 + 35)
    assert (claim.state.lease_run_id, claim.state.lease_expires_at) == ("run_1", at(95))
    assert (claim.state.anchor_at, claim.state.last_started_at) == (at(60), at(60))
    assert claim.state.next_run_at == at(60)  # a claim never moves the plan


def test_an_overdue_run_gets_its_whole_lease_from_the_claim() -> None:
    assert on_claim(every_minute(), "run_1", at(600), TIMEOUT_MS, GRACE_MS).lease_expires_at == at(600 + 35)
    assert lease_expiry(at(600), at(60), TIMEOUT_MS, GRACE_MS) == at(635)


def test_a_coalesced_run_anchors_at_its_grid_slot_so_the_endpoint_keeps_its_phase() -> None:
    state = every_minute(next_run_at=at(250), next_slot_at=at(240))
    assert on_claim(state, "run_1", at(250), TIMEOUT_MS, GRACE_MS).state.anchor_at == at(240)


def test_a_row_planned_before_slots_were_stored_anchors_at_the_run() -> None:
    state = every_minute(next_slot_at=None)
    assert on_claim(state, "run_1", at(60), TIMEOUT_MS, GRACE_MS).state.anchor_at == at(60)


@pytest.mark.parametrize(
    ("oneshot_s", "consumed"),
    [(30, True), (60, True), (61, False)],
    ids=["before the run", "at the run", "after the run"],
)
def test_the_run_at_or_after_a_one_shot_consumes_it(oneshot_s: int, consumed: bool) -> None:
    state = every_minute(oneshot_at=at(oneshot_s), oneshot_expires_at=at(3600))
    claimed = on_claim(state, "run_1", at(60), TIMEOUT_MS, GRACE_MS).state
    expected = (None, None) if consumed else (at(oneshot_s), at(3600))
    assert (claimed.oneshot_at, claimed.oneshot_expires_at) == expected


def test_an_endpoint_with_no_next_run_cannot_be_claimed() -> None:
    with pytest.raises(ValueError, match="no next run"):
        on_claim(every_minute(next_run_at=None), "run_1", T0, TIMEOUT_MS, GRACE_MS)


# -- results -----------------------------------------------------------------------------------------------------


def test_success_releases_the_lease_resets_failures_and_plans_the_next_slot() -> None:
    settled = on_settle(leased(failure_count=3), Outcome("run_1", RunStatus.SUCCESS, at(60.2), 50), at(61))
    assert settled is not None
    state = settled.state
    assert (state.lease_run_id, state.lease_expires_at, state.failure_count) == (None, None, 0)
    assert (state.last_status, state.last_started_at) == (RunStatus.SUCCESS, at(60.2))
    assert (state.next_run_at, state.next_slot_at) == (at(120), at(120))
    assert state.next_run_source == Source.BASELINE_INTERVAL
    assert settled.missed is None


@pytest.mark.parametrize("status", FAILURES)
def test_every_failure_counts_and_stretches_the_baseline(status: RunStatus) -> None:
    settled = on_settle(leased(failure_count=1), Outcome("run_1", status, at(60), 50), at(61))
    assert settled is not None
    assert (settled.state.failure_count, settled.state.last_status) == (2, status)
    assert settled.state.next_run_at == at(60 + 4 * 60)  # backoff 2^2


def test_a_result_for_a_run_that_no_longer_holds_the_lease_moves_nothing() -> None:
    assert on_settle(leased("run_2"), Outcome("run_1", RunStatus.SUCCESS, at(60), 50), at(61)) is None
    assert on_settle(every_minute(), Outcome("run_1", RunStatus.SUCCESS, at(60), 50), at(61)) is None


@pytest.mark.parametrize(
    ("duration_ms", "reason"),
    [(50, MISSED_OUTAGE), (200_000, MISSED_OVERRUN), (None, MISSED_OUTAGE)],
    ids=["short run: outage", "run longer than the step: overrun", "unknown duration: outage"],
)
def test_slots_missed_while_a_run_settled_late_are_counted_with_their_reason(
    duration_ms: int | None, reason: str
) -> None:
    state = leased(missed_slots=4)
    settled = on_settle(state, Outcome("run_1", RunStatus.SUCCESS, at(60), duration_ms), at(60 + 250))
    assert settled is not None
    assert settled.missed is not None
    # The grid after the 10:01 anchor: 10:02 ... 10:05 passed; the run now stands for 10:05, the other three missed.
    assert (settled.missed.count, settled.missed.reason) == (3, reason)
    assert (settled.state.missed_slots, settled.state.last_missed_at) == (7, at(310))
    assert (settled.state.next_run_at, settled.state.next_slot_at) == (at(310), at(300))


def test_a_run_of_a_deleted_endpoint_settles_and_plans_nothing() -> None:
    settled = on_settle(leased(live=False), Outcome("run_1", RunStatus.SUCCESS, at(60), 50), at(61))
    assert settled is not None
    assert (settled.state.next_run_at, settled.state.next_run_source) == (None, Source.PAUSED)
    assert settled.state.lease_run_id is None


def test_settling_drops_hints_one_shots_and_pauses_that_have_run_out() -> None:
    state = leased(
        hint_interval_ms=10 * SECOND_MS,
        hint_expires_at=at(61),
        oneshot_at=at(3000),
        oneshot_expires_at=at(61),
        paused=True,
        paused_until=at(61),
    )
    settled = on_settle(state, Outcome("run_1", RunStatus.SUCCESS, at(60), 50), at(61))
    assert settled is not None
    dropped = settled.state
    assert (dropped.hint_interval_ms, dropped.hint_expires_at, dropped.oneshot_at, dropped.oneshot_expires_at) == (
        None,
        None,
        None,
        None,
    )
    assert (dropped.paused, dropped.paused_until) == (False, None)


def test_a_stored_cron_this_release_refuses_stops_the_endpoint_and_says_why() -> None:
    state = leased(baseline=CronBaseline("59-0 * * * *"))
    settled = on_settle(state, Outcome("run_1", RunStatus.SUCCESS, at(60), 50), at(61))
    assert settled is not None
    assert (settled.state.next_run_at, settled.state.next_run_source) == (None, Source.PAUSED)
    assert settled.cron_refused


# -- lost and released runs -------------------------------------------------------------------------------------


def test_a_lost_run_is_a_failure_whose_start_nobody_knows() -> None:
    settled = on_lost(leased(failure_count=0), "run_1", at(100))
    assert settled is not None
    state = settled.state
    assert (state.last_status, state.failure_count, state.last_started_at) == (RunStatus.LOST, 1, at(60))
    assert state.lease_run_id is None
    assert state.next_run_at == at(180)  # anchor 10:01 + 2 min (backoff after one failure)


def test_a_lost_run_that_missed_slots_blames_the_outage() -> None:
    settled = on_lost(leased(), "run_1", at(60 + 600))
    assert settled is not None
    assert settled.missed is not None
    assert settled.missed.reason == MISSED_OUTAGE


def test_a_lost_run_that_no_longer_holds_the_lease_moves_nothing() -> None:
    assert on_lost(leased("run_2"), "run_1", at(100)) is None


def test_a_released_run_leaves_the_endpoint_due_at_the_same_slot() -> None:
    state = leased()
    released = on_release(state)
    assert (released.lease_run_id, released.lease_expires_at) == (None, None)
    assert released == replace(state, lease_run_id=None, lease_expires_at=None)
    assert released.next_run_at == at(60)


# -- one-shots ---------------------------------------------------------------------------------------------------


def test_a_one_shot_earlier_than_the_baseline_wins() -> None:
    asked = on_one_shot(every_minute(), at(30), timedelta(minutes=10), SECOND_MS, at(10))
    state = asked.replanned.state
    assert (state.oneshot_at, state.oneshot_expires_at) == (at(30), at(30 + 600))
    assert (state.next_run_at, state.next_run_source) == (at(30), Source.AI_ONESHOT)
    assert asked.scheduled_for == at(30)


def test_a_one_shot_is_held_to_the_interval_floor_after_the_last_start() -> None:
    asked = on_one_shot(every_minute(last_started_at=at(0)), at(5), timedelta(minutes=10), 20 * SECOND_MS, at(1))
    assert asked.replanned.state.oneshot_at == at(20)
    assert asked.scheduled_for == at(20)


def test_a_one_shot_runs_no_sooner_than_the_min_clamp_after_the_last_start() -> None:
    state = every_minute(last_started_at=at(0), min_interval_ms=40 * SECOND_MS)
    asked = on_one_shot(state, at(5), timedelta(minutes=10), SECOND_MS, at(1))
    assert asked.replanned.state.oneshot_at == at(5)  # the request as asked: the clamp is the governor's
    assert asked.scheduled_for == at(40)
    assert (asked.replanned.state.next_run_at, asked.replanned.state.next_run_source) == (at(40), Source.CLAMPED_MIN)


def test_a_one_shot_asked_for_the_past_runs_now_and_lives_its_ttl_from_now() -> None:
    asked = on_one_shot(every_minute(), T0 - timedelta(hours=1), timedelta(minutes=10), SECOND_MS, at(10))
    assert asked.replanned.state.oneshot_expires_at == at(10 + 600)
    assert asked.scheduled_for == at(10)
    assert asked.replanned.state.next_run_at == at(10)


def test_a_one_shot_fires_while_paused_and_the_pause_stays() -> None:
    state = every_minute(paused=True, paused_until=None, next_run_at=None)
    asked = on_one_shot(state, at(30), timedelta(minutes=10), SECOND_MS, at(10))
    assert (asked.replanned.state.next_run_at, asked.replanned.state.paused) == (at(30), True)


# -- steering ----------------------------------------------------------------------------------------------------


def test_an_interval_hint_replaces_the_baseline_at_once() -> None:
    hinted = on_interval_hint(every_minute(), 10 * SECOND_MS, at(3600), at(5)).state
    assert (hinted.hint_interval_ms, hinted.hint_expires_at) == (10 * SECOND_MS, at(3600))
    assert (hinted.next_run_at, hinted.next_run_source) == (at(10), Source.AI_INTERVAL)


def test_a_pause_stops_the_endpoint_until_it_ends() -> None:
    assert on_pause(every_minute(), None, at(5)).state.next_run_at is None
    until = on_pause(every_minute(), at(3600), at(5)).state
    assert (until.paused, until.paused_until, until.next_run_at) == (True, at(3600), at(3600))


def test_a_resume_restarts_the_cadence_from_the_resume() -> None:
    resumed = on_resume(every_minute(paused=True, next_run_at=None), at(500)).state
    assert (resumed.paused, resumed.anchor_at, resumed.next_run_at) == (False, at(500), at(560))
    # Resuming an endpoint that was not paused keeps its phase.
    assert on_resume(every_minute(), at(5)).state.anchor_at == T0


def test_clearing_hints_forgets_the_interval_hint_and_the_one_shot() -> None:
    steered = every_minute(hint_interval_ms=10 * SECOND_MS, hint_expires_at=at(3600), oneshot_at=at(20))
    cleared = on_clear_hints(replace(steered, oneshot_expires_at=at(3600)), at(5)).state
    assert (cleared.hint_interval_ms, cleared.hint_expires_at, cleared.oneshot_at, cleared.oneshot_expires_at) == (
        None,
        None,
        None,
        None,
    )
    assert (cleared.next_run_at, cleared.next_run_source) == (at(60), Source.BASELINE_INTERVAL)


def test_resetting_failures_ends_the_backoff() -> None:
    reset = on_reset_failures(every_minute(failure_count=4, next_run_at=at(960)), at(5)).state
    assert (reset.failure_count, reset.next_run_at) == (0, at(60))


# -- properties --------------------------------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))
baselines = st.one_of(
    st.integers(SECOND_MS, DAY_MS).map(IntervalBaseline),
    st.sampled_from([CronBaseline("*/15 * * * *"), CronBaseline("0 9 * * MON-FRI", "Europe/Berlin")]),
)


def around(moment: datetime, before: timedelta, after: timedelta) -> st.SearchStrategy[datetime]:
    return st.timedeltas(-before, after).map(lambda offset: moment + offset)


@st.composite
def planned(draw: st.DrawFn) -> tuple[datetime, ScheduleState]:
    """A `now` and a state the governor has just planned at `now`, with random clamps, steering and counters."""
    anchor = draw(moments)
    now = draw(around(anchor, timedelta(hours=1), timedelta(days=2)))
    soon = around(now, timedelta(days=1), timedelta(days=1))
    hint = draw(st.none() | st.tuples(st.integers(SECOND_MS, DAY_MS), soon))
    shot = draw(st.none() | st.tuples(soon, soon))
    pause = draw(st.sampled_from([(False, None), (True, None), (True, now + timedelta(hours=1))]))
    state = ScheduleState(
        baseline=draw(baselines),
        anchor_at=anchor,
        live=draw(st.booleans()),
        min_interval_ms=draw(st.sampled_from([0, 30 * SECOND_MS, 3_600_000])),
        max_interval_ms=draw(st.sampled_from([0, DAY_MS])),
        last_started_at=draw(st.none() | around(anchor, timedelta(hours=1), timedelta(0))),
        failure_count=draw(st.integers(0, 8)),
        paused=pause[0],
        paused_until=pause[1],
        hint_interval_ms=hint[0] if hint else None,
        hint_expires_at=hint[1] if hint else None,
        oneshot_at=shot[0] if shot else None,
        oneshot_expires_at=shot[1] if shot else None,
        missed_slots=draw(st.integers(0, 1000)),
    )
    return now, replan(state, now).state


def claimed(now: datetime, state: ScheduleState) -> ScheduleState | None:
    if state.next_run_at is None:
        return None
    return on_claim(state, "run_x", now, TIMEOUT_MS, GRACE_MS).state


@PROPERTY_SETTINGS
@given(planned(), st.sampled_from(list(RunStatus)), st.timedeltas(timedelta(0), timedelta(days=3)))
def test_settling_a_claimed_run_releases_it_and_plans_no_earlier_than_now(
    scenario: tuple[datetime, ScheduleState], status: RunStatus, later: timedelta
) -> None:
    now, state = scenario
    leased_state = claimed(now, state)
    if leased_state is None or status is RunStatus.RUNNING:
        return
    settled = on_settle(leased_state, Outcome("run_x", status, None, 10), now + later)
    assert settled is not None
    after = settled.state
    assert (after.lease_run_id, after.lease_expires_at, after.last_status) == (None, None, status)
    assert after.failure_count == (0 if status is RunStatus.SUCCESS else state.failure_count + 1)
    assert after.next_run_at is None or after.next_run_at >= now + later
    assert after.missed_slots == state.missed_slots + (settled.missed.count if settled.missed else 0)
    assert after.anchor_at == leased_state.anchor_at  # only a claim moves the anchor


@PROPERTY_SETTINGS
@given(planned())
def test_a_claim_keeps_the_plan_and_anchors_no_later_than_its_run(scenario: tuple[datetime, ScheduleState]) -> None:
    now, state = scenario
    if state.next_run_at is None:
        return
    claim = on_claim(state, "run_x", now, TIMEOUT_MS, GRACE_MS)
    after = claim.state
    assert (after.next_run_at, after.next_run_source, after.next_slot_at) == (
        state.next_run_at,
        state.next_run_source,
        state.next_slot_at,
    )
    assert after.anchor_at <= claim.scheduled_for
    assert claim.lease_expires_at > max(now, claim.scheduled_for)
    if after.oneshot_at is not None:
        assert after.oneshot_at > claim.scheduled_for  # a one-shot left is one still to come


@PROPERTY_SETTINGS
@given(planned(), st.text(min_size=1, max_size=8))
def test_only_the_run_holding_the_lease_settles_the_endpoint(
    scenario: tuple[datetime, ScheduleState], other: str
) -> None:
    now, state = scenario
    leased_state = claimed(now, state)
    if leased_state is None or other == "run_x":
        return
    assert on_settle(leased_state, Outcome(other, RunStatus.SUCCESS, now, 10), now) is None
    assert on_lost(leased_state, other, now) is None


@PROPERTY_SETTINGS
@given(planned())
def test_releasing_a_claim_changes_nothing_but_the_lease(scenario: tuple[datetime, ScheduleState]) -> None:
    now, state = scenario
    leased_state = claimed(now, state)
    if leased_state is None:
        return
    released = on_release(leased_state)
    assert released == replace(leased_state, lease_run_id=None, lease_expires_at=None)
    assert released.next_run_at == state.next_run_at


@PROPERTY_SETTINGS
@given(
    planned(),
    st.timedeltas(-timedelta(days=1), timedelta(days=1)),
    st.integers(1, 1440),
    st.sampled_from([0, SECOND_MS, 60 * SECOND_MS]),
)
def test_a_one_shot_is_due_after_every_floor_and_no_later_than_promised(
    scenario: tuple[datetime, ScheduleState], offset: timedelta, ttl_minutes: int, floor_ms: int
) -> None:
    now, state = scenario
    state = replace(state, live=True)
    asked = on_one_shot(state, now + offset, timedelta(minutes=ttl_minutes), floor_ms, now)
    assert asked.scheduled_for >= max(now, now + offset)
    spacing_ms = max(floor_ms, state.min_interval_ms)
    if state.last_started_at is not None and spacing_ms:
        assert asked.scheduled_for >= state.last_started_at + timedelta(milliseconds=spacing_ms)
    after = asked.replanned.state
    assert after.oneshot_expires_at is not None
    assert after.oneshot_expires_at > now
    if asked.replanned.cron_refused is None:
        assert after.next_run_at is not None
        assert after.next_run_at <= asked.scheduled_for
