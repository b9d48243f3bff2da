"""The governor: decides when an endpoint runs next (DESIGN.md section 4).

Pure policy. `plan(now, state)` takes the current time as an argument and returns a frozen `Plan`; it reads no
clock, does no I/O and has no randomness, so the same inputs always give the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, TypeAlias, assert_never

from pacer_common.backoff import backoff_multiplier
from pacer_common.cron import next_cron_time

# Saturation points for absurd durations: "beyond any real schedule" instead of an OverflowError in the scheduler.
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)
_START_OF_TIME = datetime.min.replace(tzinfo=UTC)
# Counting the slots an overdue cron baseline missed steps through them one at a time (each step re-evaluates the
# expression, about a quarter of a millisecond). Past this many slots the rest are estimated from the mean spacing of
# those stepped: exact for evenly spaced expressions, and planning after a long outage stays cheap whatever the cron.
CRON_SLOTS_STEPPED: Final = 8


class Source(StrEnum):
    """Which rule produced a plan's time; stored with the run for explanation and metrics."""

    BASELINE_CRON = "baseline-cron"
    BASELINE_INTERVAL = "baseline-interval"
    AI_INTERVAL = "ai-interval"
    AI_ONESHOT = "ai-oneshot"
    CLAMPED_MIN = "clamped-min"
    CLAMPED_MAX = "clamped-max"
    PAUSED = "paused"


@dataclass(frozen=True)
class CronBaseline:
    """Run on the slots of a 5- or 6-field cron expression, evaluated in an IANA timezone ("" = UTC)."""

    expression: str
    timezone: str = ""


@dataclass(frozen=True)
class IntervalBaseline:
    """Run every `interval_ms` after the anchor, stretched by failure backoff."""

    interval_ms: int


Baseline: TypeAlias = CronBaseline | IntervalBaseline


@dataclass(frozen=True)
class IntervalHint:
    """An advisor's suggested interval; replaces the baseline until `expires_at`."""

    interval_ms: int
    expires_at: datetime


@dataclass(frozen=True)
class OneShot:
    """An advisor's request for one run at `run_at`; ignored once `expires_at` has passed."""

    run_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class EndpointState:
    """Everything the governor needs to know about one endpoint. All datetimes are aware UTC."""

    baseline: Baseline
    anchor: datetime  # scheduled_for of the last run, or the time created/resumed/reconfigured if not run since
    last_start: datetime | None = None  # actual start of the last run
    failure_count: int = 0
    min_interval_ms: int = 0  # 0 = no min clamp
    max_interval_ms: int = 0  # 0 = no max clamp
    paused: bool = False
    paused_until: datetime | None = None  # None with paused=True = indefinitely
    interval_hint: IntervalHint | None = None
    one_shot: OneShot | None = None


@dataclass(frozen=True)
class Plan:
    """The decision: run at `next_run_at` (None = not until something changes), and the rule that chose it.

    The other fields explain a run that coalesced missed slots (rule 5); two plans are equal when they make the same
    decision. `slot_at` is what the endpoint's anchor becomes once this run is claimed: `next_run_at`, except for a
    coalesced interval run (baseline or hint), which stands for the latest point of its grid (anchor + k x step) at
    or before now, so the run after it is back on the endpoint's own phase. `missed` counts the slots that passed
    without a run of their own; `step` is the spacing of those slots (the interval x backoff, the hint's interval,
    or from the anchor to the next cron slot), set only when the plan coalesced.
    """

    next_run_at: datetime | None
    source: Source
    slot_at: datetime | None = field(default=None, compare=False)
    missed: int = field(default=0, compare=False)
    step: timedelta | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.slot_at is None:
            object.__setattr__(self, "slot_at", self.next_run_at)


@dataclass(frozen=True)
class _Candidate:
    """A time under consideration, carried with the rule that produced it and, once coalesced, what it stands for."""

    at: datetime
    source: Source
    slot_at: datetime | None = None  # None: the candidate's own time
    missed: int = 0
    step: timedelta | None = None

    def plan(self) -> Plan:
        return Plan(self.at, self.source, self.slot_at, self.missed, self.step)


def is_paused(now: datetime, state: EndpointState) -> bool:
    """True while a pause is in force: paused indefinitely, or paused until a time still after `now`."""
    return state.paused and (state.paused_until is None or state.paused_until > now)


def fresh_interval_hint(now: datetime, state: EndpointState) -> IntervalHint | None:
    """The interval hint if it has not expired at `now` (expires_at > now), else None."""
    hint = state.interval_hint
    return hint if hint is not None and hint.expires_at > now else None


def fresh_one_shot(now: datetime, state: EndpointState) -> OneShot | None:
    """The one-shot hint if it has not expired at `now` (expires_at > now), else None."""
    shot = state.one_shot
    return shot if shot is not None and shot.expires_at > now else None


def plan(now: datetime, state: EndpointState) -> Plan:
    """Decide the next run of an endpoint at `now` (aware UTC).

    Not paused: the baseline (cron slot strictly after the anchor, or anchor + interval x backoff) or, replacing it,
    a fresh interval hint (anchor + hint); a fresh one-shot wins if earlier; an overdue time becomes `now`; then the
    max clamp, then the min clamp (the cooldown wins a conflict). Paused: only the pause end or a fresh one-shot,
    whichever is earlier, can fire, subject to the min clamp; paused indefinitely with no fresh one-shot gives
    `Plan(None, Source.PAUSED)`. Any returned time is at or after `now`. Raises CronError for an invalid cron
    baseline.

    An overdue baseline or interval-hint candidate that the clamps leave at `now` coalesces: the plan counts the
    slots it skips (`missed`: the slots at or before now, less the one the run stands for) and, for an interval,
    stands for the latest grid point at or before now (`slot_at`), so the endpoint keeps its phase. The grid is the
    one in force: slots that backoff stretched away are not missed. Overdue one-shots and pause ends (a timed pause
    that ended after the anchor included), and runs the min clamp holds back, just move to their time (`slot_at` =
    `next_run_at`, nothing missed).
    """
    if is_paused(now, state):
        return _plan_paused(now, state)
    return _plan_active(now, state)


def _plan_active(now: datetime, state: EndpointState) -> Plan:
    candidate = _hint_or_baseline(now, state)
    candidate = _earlier_one_shot(now, state, candidate)
    candidate = _not_before_now(now, state, candidate)
    candidate = _clamp_max(now, state, candidate)
    candidate = _clamp_min(state, candidate)
    return candidate.plan()


def _plan_paused(now: datetime, state: EndpointState) -> Plan:
    candidate = _pause_end_or_one_shot(now, state)
    if candidate is None:
        return Plan(None, Source.PAUSED)
    # The min clamp is a cooldown, so it holds even for a run the pause itself allows; the max clamp does not apply
    # because holding runs back is the point of a pause.
    candidate = _clamp_min(state, _not_before_now(now, state, candidate))
    return candidate.plan()


def _hint_or_baseline(now: datetime, state: EndpointState) -> _Candidate:
    """A fresh interval hint replaces the baseline outright, so it may both tighten and relax the schedule."""
    hint = fresh_interval_hint(now, state)
    if hint is not None:
        # Backoff stretches only the baseline: a hint is a deliberate choice that already accounts for failures.
        return _Candidate(_after_ms(state.anchor, hint.interval_ms), Source.AI_INTERVAL)
    return _baseline(state)


def _baseline(state: EndpointState) -> _Candidate:
    baseline = state.baseline
    match baseline:
        case CronBaseline():
            # Strictly after the anchor, so the slot that was just run is never chosen again.
            slot = next_cron_time(baseline.expression, baseline.timezone, state.anchor)
            return _Candidate(slot, Source.BASELINE_CRON)
        case IntervalBaseline():
            interval_ms = baseline.interval_ms * backoff_multiplier(state.failure_count)
            return _Candidate(_after_ms(state.anchor, interval_ms), Source.BASELINE_INTERVAL)
        case _:
            assert_never(baseline)


def _earlier_one_shot(now: datetime, state: EndpointState, candidate: _Candidate) -> _Candidate:
    """A fresh one-shot replaces the candidate only when strictly earlier."""
    shot = fresh_one_shot(now, state)
    if shot is not None and shot.run_at < candidate.at:
        return _Candidate(shot.run_at, Source.AI_ONESHOT)
    return candidate


def _pause_end_or_one_shot(now: datetime, state: EndpointState) -> _Candidate | None:
    """While paused only the pause end or a fresh one-shot may fire; None when neither exists."""
    if state.paused_until is not None:
        return _earlier_one_shot(now, state, _Candidate(state.paused_until, Source.PAUSED))
    shot = fresh_one_shot(now, state)
    return None if shot is None else _Candidate(shot.run_at, Source.AI_ONESHOT)


def _not_before_now(now: datetime, state: EndpointState, candidate: _Candidate) -> _Candidate:
    """Missed slots coalesce into one run now; the source still names the rule that wanted the run.

    A baseline or interval-hint candidate is the first slot after the anchor, so its distance from the anchor is
    the spacing of the slots it coalesces.
    """
    if candidate.at >= now:
        return candidate
    if state.paused and state.paused_until is not None and state.paused_until > state.anchor:
        # A timed pause ended after the anchor (its run was in flight when the pause began): a pause end.
        return _Candidate(now, candidate.source)
    step = candidate.at - state.anchor
    match candidate.source:
        case Source.BASELINE_INTERVAL | Source.AI_INTERVAL if step > timedelta(0):
            # The grid points anchor + k x step up to now: the run stands for the last, the others are missed.
            points = (now - state.anchor) // step
            return _Candidate(now, candidate.source, state.anchor + points * step, points - 1, step)
        case Source.BASELINE_CRON if isinstance(state.baseline, CronBaseline):
            # Cron slots keep their phase by themselves (the next one is strictly after the run), so the run
            # stands at its own time.
            slots = _cron_slots_until(state.baseline, candidate.at, now)
            return _Candidate(now, candidate.source, None, slots - 1, step)
        case _:
            return _Candidate(now, candidate.source)


def _cron_slots_until(baseline: CronBaseline, first: datetime, now: datetime) -> int:
    """The number of slots from the slot `first` up to `now` inclusive.

    Stepped one slot at a time up to CRON_SLOTS_STEPPED; beyond that the rest are estimated from the mean spacing
    of the stepped slots.
    """
    slots, last = 1, first
    while slots < CRON_SLOTS_STEPPED:
        following = next_cron_time(baseline.expression, baseline.timezone, last)
        if following > now:
            return slots
        slots, last = slots + 1, following
    spacing = (last - first) / (slots - 1)
    return slots + (now - last) // spacing


def _clamp_max(now: datetime, state: EndpointState, candidate: _Candidate) -> _Candidate:
    if state.max_interval_ms <= 0:
        return candidate
    # max(now, ...): a limit already in the past means "run now", never "run in the past".
    upper = max(now, _after_ms(state.anchor, state.max_interval_ms))
    if candidate.at > upper:
        return _Candidate(upper, Source.CLAMPED_MAX)
    return candidate


def _clamp_min(state: EndpointState, candidate: _Candidate) -> _Candidate:
    """Applied last so the cooldown after the last actual start wins over every other rule."""
    if state.min_interval_ms <= 0 or state.last_start is None:
        return candidate
    lower = _after_ms(state.last_start, state.min_interval_ms)
    if candidate.at < lower:
        return _Candidate(lower, Source.CLAMPED_MIN)
    return candidate


def _after_ms(moment: datetime, duration_ms: int) -> datetime:
    """`moment` + `duration_ms`, saturating at the end of representable time rather than raising."""
    try:
        return moment + timedelta(milliseconds=duration_ms)
    except OverflowError:
        return _END_OF_TIME if duration_ms > 0 else _START_OF_TIME
