"""What happens to an endpoint's schedule when its runs are claimed and settled, and when it is steered.

Pure policy beside the governor: each transition takes an endpoint's `ScheduleState` and the current time (never a
clock), and returns the new state with whatever else the caller must record. The control plane's storage maps rows
to `ScheduleState` and back; the rules live here, once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from pacer_common import governor
from pacer_common.cron import CronError
from pacer_common.governor import Baseline, Plan, Source
from pacer_common.runs import RunStatus

# Why slots were missed (pacer_runs_missed_total{reason}): the run before them lasted longer than the step, or not.
MISSED_OVERRUN: Final = "overrun"
MISSED_OUTAGE: Final = "outage"


@dataclass(frozen=True)
class ScheduleState:
    """An endpoint as its schedule sees it: the governor's inputs, its last plan, its lease and its counters.

    Field names are the `endpoints` columns they map to. `live` is False once the endpoint is deleted or its job
    archived: it never runs again.
    """

    baseline: Baseline
    anchor_at: datetime  # the slot of the last claimed run, or when the cadence (re)started
    live: bool = True
    min_interval_ms: int = 0
    max_interval_ms: int = 0
    last_started_at: datetime | None = None
    last_status: RunStatus | None = None
    failure_count: int = 0
    paused: bool = False
    paused_until: datetime | None = None
    hint_interval_ms: int | None = None
    hint_expires_at: datetime | None = None
    oneshot_at: datetime | None = None
    oneshot_expires_at: datetime | None = None
    next_run_at: datetime | None = None
    next_run_source: Source = Source.PAUSED
    next_slot_at: datetime | None = None  # the grid slot the next run stands for; None on rows planned before 0005
    missed_slots: int = 0
    last_missed_at: datetime | None = None
    lease_run_id: str | None = None  # the run in flight: it alone may settle the endpoint
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class Claim:
    """A claimed run: the endpoint's state with its lease taken, and the run's own record."""

    state: ScheduleState
    run_id: str
    scheduled_for: datetime
    lease_expires_at: datetime
    source: Source
    attempt: int  # 1 + the failures before it
    start_at: datetime | None = None  # when the call starts (pacer_common.jitter); None: at scheduled_for


@dataclass(frozen=True)
class Outcome:
    """How a run ended, as far as its endpoint's schedule cares."""

    run_id: str
    status: RunStatus
    started_at: datetime | None  # None: it never started, or nobody knows (LOST)
    duration_ms: int | None = None  # None when the outcome is unknown (LOST) or it never ran

    @classmethod
    def lost(cls, run_id: str) -> Outcome:
        """A run whose lease expired or whose executor vanished: a failure nobody saw start or end."""
        return cls(run_id, RunStatus.LOST, None, None)


@dataclass(frozen=True)
class Missed:
    """Slots a re-plan found missed, and why (MISSED_OVERRUN or MISSED_OUTAGE)."""

    count: int
    reason: str


@dataclass(frozen=True)
class Replanned:
    """A state with its next run planned. `cron_refused` says why a stored cron expression stopped the endpoint
    (the caller logs it); `missed` is set only when settling a run found slots missed."""

    state: ScheduleState
    plan: Plan
    cron_refused: str | None = None
    missed: Missed | None = None


@dataclass(frozen=True)
class OneShotScheduled:
    """ScheduleOneShotRun's effect: the replanned endpoint and the time its one-shot run is due."""

    replanned: Replanned
    scheduled_for: datetime


def lease_expiry(now: datetime, scheduled_for: datetime, timeout_ms: int, grace_ms: int) -> datetime:
    """When a claimed run's lease lapses: timeout + grace after its slot, or after `now` for an overdue run (a late
    run gets its whole lease too)."""
    return max(now, scheduled_for) + timedelta(milliseconds=timeout_ms + grace_ms)


def on_claim(
    state: ScheduleState,
    run_id: str,
    now: datetime,
    timeout_ms: int,
    grace_ms: int,
    *,
    start_at: datetime | None = None,
) -> Claim:
    """Claim the endpoint's due run `run_id`: the lease fences every other run out, the anchor moves to the slot the
    run stands for (its own time, or for a coalesced run the grid point before it, keeping the endpoint's phase),
    and a one-shot due at or before the run is consumed by it. A claim never moves `next_run_at`.

    `start_at` (jitter, at or after the slot) is when the call starts: the lease covers the wait until then."""
    if state.next_run_at is None:
        raise ValueError("an endpoint with no next run cannot be claimed")
    scheduled_for = state.next_run_at
    expires_at = lease_expiry(now, max(scheduled_for, start_at or scheduled_for), timeout_ms, grace_ms)
    consumed = state.oneshot_at is not None and state.oneshot_at <= scheduled_for
    leased = replace(
        state,
        lease_run_id=run_id,
        lease_expires_at=expires_at,
        anchor_at=state.next_slot_at or scheduled_for,
        last_started_at=scheduled_for,
        oneshot_at=None if consumed else state.oneshot_at,
        oneshot_expires_at=None if consumed else state.oneshot_expires_at,
    )
    source, attempt = state.next_run_source, state.failure_count + 1
    return Claim(leased, run_id, scheduled_for, expires_at, source, attempt, start_at or scheduled_for)


def on_settle(state: ScheduleState, outcome: Outcome, now: datetime) -> Replanned | None:
    """Settle the run in flight with `outcome`: release the lease, reset the failure count on success or count one
    more failure, and re-plan, recording the slots the plan found missed. None when the run no longer holds the
    endpoint's lease (fenced: the schedule does not move)."""
    if state.lease_run_id != outcome.run_id:
        return None
    settled = replace(
        state,
        lease_run_id=None,
        lease_expires_at=None,
        failure_count=0 if outcome.status == RunStatus.SUCCESS else state.failure_count + 1,
        last_status=outcome.status,
        last_started_at=outcome.started_at if outcome.started_at is not None else state.last_started_at,
    )
    return _count_missed(replan(settled, now), outcome)


def _count_missed(replanned: Replanned, outcome: Outcome) -> Replanned:
    """Record on the endpoint the slots a settling re-plan found missed, with why they were missed."""
    plan = replanned.plan
    if not plan.missed:
        return replanned
    counted = replace(
        replanned.state, missed_slots=replanned.state.missed_slots + plan.missed, last_missed_at=plan.next_run_at
    )
    return replace(replanned, state=counted, missed=Missed(plan.missed, _miss_reason(outcome, plan)))


def on_lost(state: ScheduleState, run_id: str, now: datetime) -> Replanned | None:
    """Settle the run in flight as LOST (its lease expired, or its executor vanished): a failure whose start and
    duration nobody knows, and whose missed slots are Pacer's outage. None when fenced, as for `on_settle`."""
    return on_settle(state, Outcome.lost(run_id), now)


def on_release(state: ScheduleState) -> ScheduleState:
    """Undo the claim of a run that never began (its scheduler's session ended before any executor held it): the
    lease goes and nothing else moves, so the endpoint is due again at the same slot."""
    return replace(state, lease_run_id=None, lease_expires_at=None)


def on_one_shot(
    state: ScheduleState, run_at: datetime, ttl: timedelta, floor_ms: int, now: datetime
) -> OneShotScheduled:
    """Ask for one run at `run_at`, kept until `ttl` after it (or after `now` when it is already due).

    The request is held back to `floor_ms` (the service's and the tenant's interval floor) after the last start, or
    one-shots would be a way around the floor; the run it gives is due no sooner than the endpoint's own min clamp
    after the last start either.
    """
    wanted = not_sooner_than(run_at, state.last_started_at, floor_ms)
    asked = replace(state, oneshot_at=wanted, oneshot_expires_at=max(wanted, now) + ttl)
    due = not_sooner_than(max(wanted, now), state.last_started_at, state.min_interval_ms)
    return OneShotScheduled(replan(asked, now), due)


def on_interval_hint(state: ScheduleState, interval_ms: int, expires_at: datetime, now: datetime) -> Replanned:
    """ApplyIntervalHint: `interval_ms` replaces the baseline until `expires_at`, from the next plan on."""
    return replan(replace(state, hint_interval_ms=interval_ms, hint_expires_at=expires_at), now)


def on_pause(state: ScheduleState, until: datetime | None, now: datetime) -> Replanned:
    """Pause until `until` (None: until resumed); a one-shot asked for still fires."""
    return replan(replace(state, paused=True, paused_until=until), now)


def on_resume(state: ScheduleState, now: datetime) -> Replanned:
    """End a pause; the cadence restarts from the resume rather than catching up on the paused slots."""
    anchor_at = now if state.paused else state.anchor_at
    return replan(replace(state, paused=False, paused_until=None, anchor_at=anchor_at), now)


def on_clear_hints(state: ScheduleState, now: datetime) -> Replanned:
    """ClearAdaptiveHints: forget the interval hint and the one-shot; the baseline rules again."""
    cleared = replace(state, hint_interval_ms=None, hint_expires_at=None, oneshot_at=None, oneshot_expires_at=None)
    return replan(cleared, now)


def on_reset_failures(state: ScheduleState, now: datetime) -> Replanned:
    """ResetFailureCount: the backoff ends at once, and the next run comes on the baseline's own spacing."""
    return replan(replace(state, failure_count=0), now)


def replan(state: ScheduleState, now: datetime) -> Replanned:
    """Plan the endpoint's next run and the slot it stands for, then drop the steering that has run out.

    A state that is not `live` never runs again. A stored cron expression the cron rules of this release refuse
    (accepted by an older one) stops the endpoint instead of failing the caller's transaction; `cron_refused` says
    why. The plan's missed slots are left for the caller to count (only settling a run misses slots).
    """
    refused = None
    try:
        # Planned before stale state is dropped: the governor ignores expired hints itself, and a pause that has just
        # ended tells it that the slots since the anchor were paused, not missed.
        plan = governor.plan(now, governor_input(state)) if state.live else Plan(None, Source.PAUSED)
    except CronError as error:
        plan, refused = Plan(None, Source.PAUSED), str(error)
    planned = replace(
        without_stale_steering(state, now),
        next_run_at=plan.next_run_at,
        next_run_source=plan.source,
        next_slot_at=plan.slot_at,
    )
    return Replanned(planned, plan, refused)


def without_stale_steering(state: ScheduleState, now: datetime) -> ScheduleState:
    """Forget hints past their TTL and a timed pause that has ended: they no longer steer anything."""
    if state.hint_expires_at is not None and state.hint_expires_at <= now:
        state = replace(state, hint_interval_ms=None, hint_expires_at=None)
    if state.oneshot_expires_at is not None and state.oneshot_expires_at <= now:
        state = replace(state, oneshot_at=None, oneshot_expires_at=None)
    if state.paused and state.paused_until is not None and state.paused_until <= now:
        state = replace(state, paused=False, paused_until=None)
    return state


def governor_input(state: ScheduleState) -> governor.EndpointState:
    """The governor's view of an endpoint; a hint or one-shot missing half its fields does not exist."""
    hint = None
    if state.hint_interval_ms is not None and state.hint_expires_at is not None:
        hint = governor.IntervalHint(state.hint_interval_ms, state.hint_expires_at)
    one_shot = None
    if state.oneshot_at is not None and state.oneshot_expires_at is not None:
        one_shot = governor.OneShot(state.oneshot_at, state.oneshot_expires_at)
    return governor.EndpointState(
        baseline=state.baseline,
        anchor=state.anchor_at,
        last_start=state.last_started_at,
        failure_count=state.failure_count,
        min_interval_ms=state.min_interval_ms,
        max_interval_ms=state.max_interval_ms,
        paused=state.paused,
        paused_until=state.paused_until,
        interval_hint=hint,
        one_shot=one_shot,
    )


def not_sooner_than(wanted: datetime, last_start: datetime | None, spacing_ms: int) -> datetime:
    """`wanted`, held back to `spacing_ms` after the last start (the min clamp, or the interval floor)."""
    if spacing_ms and last_start is not None:
        return max(wanted, last_start + timedelta(milliseconds=spacing_ms))
    return wanted


def _miss_reason(outcome: Outcome, plan: Plan) -> str:
    """`overrun` when the settled run lasted longer than the step between slots: the endpoint is slower than its
    cadence. `outage` otherwise: Pacer could not keep up (late dispatch, delayed results, a lost run)."""
    if (
        outcome.duration_ms is not None
        and plan.step is not None
        and timedelta(milliseconds=outcome.duration_ms) > plan.step
    ):
        return MISSED_OVERRUN
    return MISSED_OUTAGE
