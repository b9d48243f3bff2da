"""The governor: decides when an endpoint runs next (DESIGN.md section 4).

Pure policy. `plan(now, state)` takes the current time as an argument and returns a frozen `Plan`; it reads no
clock, does no I/O and has no randomness, so the same inputs always give the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeAlias, assert_never

from pacer_common.backoff import backoff_multiplier
from pacer_common.cron import next_cron_time

# Saturation points for absurd durations: "beyond any real schedule" instead of an OverflowError in the scheduler.
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)
_START_OF_TIME = datetime.min.replace(tzinfo=UTC)


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
    """The decision: run at `next_run_at` (None = not until something changes), and the rule that chose it."""

    next_run_at: datetime | None
    source: Source


@dataclass(frozen=True)
class _Candidate:
    """A time under consideration, carried with the rule that produced it."""

    at: datetime
    source: Source


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
    """
    if is_paused(now, state):
        return _plan_paused(now, state)
    return _plan_active(now, state)


def _plan_active(now: datetime, state: EndpointState) -> Plan:
    candidate = _hint_or_baseline(now, state)
    candidate = _earlier_one_shot(now, state, candidate)
    candidate = _not_before_now(now, candidate)
    candidate = _clamp_max(now, state, candidate)
    candidate = _clamp_min(state, candidate)
    return Plan(candidate.at, candidate.source)


def _plan_paused(now: datetime, state: EndpointState) -> Plan:
    candidate = _pause_end_or_one_shot(now, state)
    if candidate is None:
        return Plan(None, Source.PAUSED)
    # The min clamp is a cooldown, so it holds even for a run the pause itself allows; the max clamp does not apply
    # because holding runs back is the point of a pause.
    candidate = _clamp_min(state, _not_before_now(now, candidate))
    return Plan(candidate.at, candidate.source)


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


def _not_before_now(now: datetime, candidate: _Candidate) -> _Candidate:
    """Missed slots coalesce into one run now; the source still names the rule that wanted the run."""
    if candidate.at < now:
        return _Candidate(now, candidate.source)
    return candidate


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
