"""Jitter: when within its slot's window a run starts. The one home of that rule.

An endpoint with `jitter_ms` starts each cadence run at `slot + offset`, the offset spread uniformly over
`[0, window]`. The offset is a hash of the endpoint id and the slot, never a random draw, so every claim of the same
slot (a claim sent again, a run released by a dead scheduler and claimed anew) picks the same start time.

Only the cadence jitters: a baseline or interval-hint run. A run at a time someone asked for (a one-shot, the end of a
pause) or forced by a clamp starts on its slot. The window shrinks so the max clamp still holds: a run never starts
more than `max_interval_ms` after the slot before it, which lies one step (the interval in force) before this one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Final

from pacer_common.backoff import backoff_multiplier
from pacer_common.cron import CronError, next_cron_time
from pacer_common.governor import CronBaseline, IntervalBaseline, Source
from pacer_common.transitions import ScheduleState

MAX_JITTER_MS: Final = 3_600_000
JITTERED: Final = frozenset({Source.BASELINE_CRON, Source.BASELINE_INTERVAL, Source.AI_INTERVAL})
# How many gaps of a cron expression `problem` looks at to find its shortest step.
_CRON_GAPS: Final = 32


def offset_ms(endpoint_id: str, slot: datetime, window_ms: int) -> int:
    """The offset in [0, window_ms] of `endpoint_id`'s run for `slot`: uniform over endpoints and slots, the same
    for the same pair."""
    if window_ms <= 0:
        return 0
    key = f"{endpoint_id}|{slot.isoformat(timespec='microseconds')}".encode()
    draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
    return draw % (window_ms + 1)


def window_ms(jitter_ms: int, max_interval_ms: int, step_ms: int) -> int:
    """How far past its slot a run may start: `jitter_ms`, less what the max clamp does not leave after a step of
    `step_ms` from the slot before (`max_interval_ms` 0: no max clamp)."""
    if jitter_ms <= 0:
        return 0
    if max_interval_ms <= 0:
        return jitter_ms
    return max(0, min(jitter_ms, max_interval_ms - step_ms))


def step_ms(state: ScheduleState, slot: datetime) -> int:
    """The interval in force for the run at `slot`: the hint's, the baseline's with its backoff, or for cron the gap
    to the following slot (the same as the one before on a regular schedule)."""
    if state.next_run_source == Source.AI_INTERVAL and state.hint_interval_ms is not None:
        return state.hint_interval_ms
    baseline = state.baseline
    if isinstance(baseline, IntervalBaseline):
        return baseline.interval_ms * backoff_multiplier(state.failure_count)
    try:
        following = next_cron_time(baseline.expression, baseline.timezone, slot)
    except CronError:
        return 0
    return int((following - slot) / timedelta(milliseconds=1))


def claim_start(state: ScheduleState, endpoint_id: str, jitter_ms: int) -> datetime:
    """When the run due at `state.next_run_at` starts. It reads only what a claim or a release leaves as it was (the
    slot, its source, the failure count, the hint, the config), so every claim of the slot gets the same time."""
    slot = state.next_run_at
    if slot is None:
        raise ValueError("an endpoint with no next run has no start time")
    if jitter_ms <= 0 or state.next_run_source not in JITTERED:
        return slot
    window = window_ms(jitter_ms, state.max_interval_ms, step_ms(state, slot))
    return slot + timedelta(milliseconds=offset_ms(endpoint_id, slot, window))


def problem(jitter_ms: int, baseline: IntervalBaseline | CronBaseline | None, after: datetime) -> str | None:
    """Why `jitter_ms` does not fit `baseline` (None when it does): 0 to MAX_JITTER_MS, and less than the interval
    (for cron, than the shortest gap among its next slots after `after`), or runs would overtake each other."""
    if not 0 <= jitter_ms <= MAX_JITTER_MS:
        return f"must be between 0 and {MAX_JITTER_MS} ms"
    if jitter_ms == 0 or baseline is None:
        return None
    shortest = _shortest_step_ms(baseline, after)
    if shortest is not None and jitter_ms >= shortest:
        return f"must be less than the baseline interval ({shortest} ms)"
    return None


def _shortest_step_ms(baseline: IntervalBaseline | CronBaseline, after: datetime) -> int | None:
    if isinstance(baseline, IntervalBaseline):
        return baseline.interval_ms
    try:
        slots = [next_cron_time(baseline.expression, baseline.timezone, after)]
        for _ in range(_CRON_GAPS):
            slots.append(next_cron_time(baseline.expression, baseline.timezone, slots[-1]))
    except CronError:
        return None  # the baseline's own check reports it
    return min(int((later - earlier) / timedelta(milliseconds=1)) for earlier, later in pairwise(slots))
