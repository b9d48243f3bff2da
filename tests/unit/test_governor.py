"""The governor's rules, one table row each (DESIGN.md section 4)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pacer_common.backoff import backoff_multiplier
from pacer_common.governor import (
    CronBaseline,
    EndpointState,
    IntervalBaseline,
    IntervalHint,
    OneShot,
    Plan,
    Source,
    fresh_interval_hint,
    fresh_one_shot,
    is_paused,
    plan,
)

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
LATER = T0 + timedelta(days=1)  # expiry of hints that are fresh throughout


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def every(interval_ms: int, **changes: Any) -> EndpointState:
    """An interval endpoint anchored at T0, with `changes` applied."""
    return replace(EndpointState(baseline=IntervalBaseline(interval_ms), anchor=T0), **changes)


def cron(expression: str, timezone: str = "", anchor: datetime = T0, **changes: Any) -> EndpointState:
    """A cron endpoint anchored at `anchor`, with `changes` applied."""
    return replace(EndpointState(baseline=CronBaseline(expression, timezone), anchor=anchor), **changes)


BERLIN_SPRING_SLOT = datetime(2026, 3, 28, 8, 0, tzinfo=UTC)  # 09:00 CET, the day before clocks go forward

CASES = [
    # Rule 1: baselines.
    pytest.param(T0, cron("*/15 * * * *"), minutes(15), Source.BASELINE_CRON, id="cron-5-fields"),
    pytest.param(T0, cron("30 * * * * *"), minutes(0.5), Source.BASELINE_CRON, id="cron-6-fields-seconds-first"),
    pytest.param(
        T0,
        cron("0 9 * * *", "Europe/Berlin", anchor=datetime(2026, 1, 5, 8, 0, tzinfo=UTC)),
        datetime(2026, 1, 6, 8, 0, tzinfo=UTC),
        Source.BASELINE_CRON,
        id="cron-timezone-winter",
    ),
    pytest.param(
        BERLIN_SPRING_SLOT,
        cron("0 9 * * *", "Europe/Berlin", anchor=BERLIN_SPRING_SLOT),
        datetime(2026, 3, 29, 7, 0, tzinfo=UTC),
        Source.BASELINE_CRON,
        id="cron-timezone-across-march-dst",
    ),
    pytest.param(T0, every(5 * MINUTE_MS), minutes(5), Source.BASELINE_INTERVAL, id="interval"),
    # Rule 2: backoff on the baseline interval, capped at 32x.
    pytest.param(T0, every(MINUTE_MS, failure_count=0), minutes(1), Source.BASELINE_INTERVAL, id="backoff-0"),
    pytest.param(T0, every(MINUTE_MS, failure_count=1), minutes(2), Source.BASELINE_INTERVAL, id="backoff-1"),
    pytest.param(T0, every(MINUTE_MS, failure_count=3), minutes(8), Source.BASELINE_INTERVAL, id="backoff-3"),
    pytest.param(T0, every(MINUTE_MS, failure_count=5), minutes(32), Source.BASELINE_INTERVAL, id="backoff-5"),
    pytest.param(T0, every(MINUTE_MS, failure_count=9), minutes(32), Source.BASELINE_INTERVAL, id="backoff-9-caps"),
    pytest.param(
        T0,
        every(MINUTE_MS, failure_count=4, interval_hint=IntervalHint(5 * MINUTE_MS, LATER)),
        minutes(5),
        Source.AI_INTERVAL,
        id="backoff-not-applied-to-hint",
    ),
    pytest.param(
        T0,
        cron("*/15 * * * *", failure_count=5),
        minutes(15),
        Source.BASELINE_CRON,
        id="backoff-not-applied-to-cron",
    ),
    # Rule 3: a fresh interval hint replaces the baseline, in either direction.
    pytest.param(
        T0,
        every(HOUR_MS, interval_hint=IntervalHint(5 * MINUTE_MS, LATER)),
        minutes(5),
        Source.AI_INTERVAL,
        id="hint-tightens",
    ),
    pytest.param(
        T0,
        every(5 * MINUTE_MS, interval_hint=IntervalHint(HOUR_MS, LATER)),
        minutes(60),
        Source.AI_INTERVAL,
        id="hint-relaxes",
    ),
    pytest.param(
        T0,
        cron("0 * * * *", interval_hint=IntervalHint(10 * MINUTE_MS, LATER)),
        minutes(10),
        Source.AI_INTERVAL,
        id="hint-replaces-cron",
    ),
    pytest.param(
        T0,
        every(5 * MINUTE_MS, interval_hint=IntervalHint(MINUTE_MS, T0)),
        minutes(5),
        Source.BASELINE_INTERVAL,
        id="hint-expiring-now-ignored",
    ),
    pytest.param(
        T0,
        every(5 * MINUTE_MS, interval_hint=IntervalHint(MINUTE_MS, minutes(-1))),
        minutes(5),
        Source.BASELINE_INTERVAL,
        id="expired-hint-ignored",
    ),
    # Rule 4: a fresh one-shot competes, the earlier wins.
    pytest.param(
        T0,
        every(HOUR_MS, one_shot=OneShot(minutes(10), LATER)),
        minutes(10),
        Source.AI_ONESHOT,
        id="one-shot-earlier-wins",
    ),
    pytest.param(
        T0,
        every(5 * MINUTE_MS, one_shot=OneShot(minutes(10), LATER)),
        minutes(5),
        Source.BASELINE_INTERVAL,
        id="one-shot-later-loses",
    ),
    pytest.param(
        T0,
        every(5 * MINUTE_MS, one_shot=OneShot(minutes(5), LATER)),
        minutes(5),
        Source.BASELINE_INTERVAL,
        id="one-shot-tie-keeps-baseline",
    ),
    pytest.param(
        T0,
        every(HOUR_MS, interval_hint=IntervalHint(20 * MINUTE_MS, LATER), one_shot=OneShot(minutes(3), LATER)),
        minutes(3),
        Source.AI_ONESHOT,
        id="one-shot-beats-hint",
    ),
    pytest.param(
        T0,
        every(HOUR_MS, one_shot=OneShot(minutes(10), minutes(-1))),
        minutes(60),
        Source.BASELINE_INTERVAL,
        id="expired-one-shot-ignored",
    ),
    # Rule 5: overdue candidates coalesce into one run now.
    pytest.param(
        minutes(67),
        cron("*/15 * * * *"),
        minutes(67),
        Source.BASELINE_CRON,
        id="overdue-cron-missed-slots-coalesce",
    ),
    pytest.param(minutes(90), every(MINUTE_MS), minutes(90), Source.BASELINE_INTERVAL, id="overdue-interval"),
    pytest.param(
        minutes(2),
        every(HOUR_MS, one_shot=OneShot(minutes(1), LATER)),
        minutes(2),
        Source.AI_ONESHOT,
        id="overdue-one-shot",
    ),
    # Rule 6: clamps; the min clamp (cooldown) wins a conflict.
    pytest.param(
        T0,
        every(MINUTE_MS, last_start=T0, min_interval_ms=10 * MINUTE_MS),
        minutes(10),
        Source.CLAMPED_MIN,
        id="min-clamp",
    ),
    pytest.param(
        T0,
        every(MINUTE_MS, last_start=minutes(-20), min_interval_ms=10 * MINUTE_MS),
        minutes(1),
        Source.BASELINE_INTERVAL,
        id="min-clamp-already-satisfied",
    ),
    pytest.param(
        T0,
        every(HOUR_MS, last_start=T0, min_interval_ms=10 * MINUTE_MS, one_shot=OneShot(minutes(1), LATER)),
        minutes(10),
        Source.CLAMPED_MIN,
        id="min-clamp-holds-back-one-shot",
    ),
    pytest.param(
        T0,
        every(MINUTE_MS, min_interval_ms=10 * MINUTE_MS),
        minutes(1),
        Source.BASELINE_INTERVAL,
        id="min-clamp-needs-a-last-start",
    ),
    pytest.param(T0, every(HOUR_MS, max_interval_ms=20 * MINUTE_MS), minutes(20), Source.CLAMPED_MAX, id="max-clamp"),
    pytest.param(
        T0,
        every(10 * MINUTE_MS, failure_count=3, max_interval_ms=30 * MINUTE_MS),
        minutes(30),
        Source.CLAMPED_MAX,
        id="max-clamp-limits-backoff",
    ),
    pytest.param(
        minutes(50),
        every(HOUR_MS, max_interval_ms=20 * MINUTE_MS),
        minutes(50),
        Source.CLAMPED_MAX,
        id="max-clamp-in-the-past-means-now",
    ),
    pytest.param(
        T0,
        every(HOUR_MS, last_start=T0, min_interval_ms=30 * MINUTE_MS, max_interval_ms=10 * MINUTE_MS),
        minutes(30),
        Source.CLAMPED_MIN,
        id="min-wins-over-max",
    ),
    # Rule 7: pause.
    pytest.param(
        T0, every(MINUTE_MS, paused=True, paused_until=minutes(120)), minutes(120), Source.PAUSED, id="paused-until"
    ),
    pytest.param(T0, every(MINUTE_MS, paused=True), None, Source.PAUSED, id="paused-indefinitely"),
    pytest.param(
        T0,
        every(MINUTE_MS, paused=True, interval_hint=IntervalHint(MINUTE_MS, LATER), paused_until=minutes(120)),
        minutes(120),
        Source.PAUSED,
        id="paused-ignores-interval-hint",
    ),
    pytest.param(
        T0,
        every(MINUTE_MS, paused=True, paused_until=minutes(120), max_interval_ms=10 * MINUTE_MS),
        minutes(120),
        Source.PAUSED,
        id="paused-ignores-max-clamp",
    ),
    pytest.param(
        T0,
        every(MINUTE_MS, paused=True, one_shot=OneShot(minutes(5), LATER)),
        minutes(5),
        Source.AI_ONESHOT,
        id="paused-indefinitely-one-shot-fires",
    ),
    pytest.param(
        T0,
        every(MINUTE_MS, paused=True, paused_until=minutes(120), one_shot=OneShot(minutes(5), LATER)),
        minutes(5),
        Source.AI_ONESHOT,
        id="paused-until-one-shot-before-end-fires",
    ),
    pytest.param(
        T0,
        every(MINUTE_MS, paused=True, paused_until=minutes(120), one_shot=OneShot(minutes(150), LATER)),
        minutes(120),
        Source.PAUSED,
        id="paused-until-one-shot-after-end-waits",
    ),
    pytest.param(
        minutes(10),
        every(MINUTE_MS, paused=True, one_shot=OneShot(minutes(5), LATER)),
        minutes(10),
        Source.AI_ONESHOT,
        id="paused-overdue-one-shot-fires-now",
    ),
    pytest.param(
        T0,
        every(
            MINUTE_MS, paused=True, last_start=T0, min_interval_ms=30 * MINUTE_MS, one_shot=OneShot(minutes(5), LATER)
        ),
        minutes(30),
        Source.CLAMPED_MIN,
        id="paused-one-shot-subject-to-min-clamp",
    ),
    pytest.param(
        T0,
        every(MINUTE_MS, paused=True, one_shot=OneShot(minutes(5), minutes(-1))),
        None,
        Source.PAUSED,
        id="paused-expired-one-shot-ignored",
    ),
    pytest.param(
        T0,
        every(MINUTE_MS, paused=True, paused_until=minutes(5), last_start=T0, min_interval_ms=30 * MINUTE_MS),
        minutes(30),
        Source.CLAMPED_MIN,
        id="paused-end-subject-to-min-clamp",
    ),
    pytest.param(
        minutes(3),
        every(MINUTE_MS, paused=True, paused_until=minutes(2)),
        minutes(3),
        Source.BASELINE_INTERVAL,
        id="timed-pause-ended-is-active",
    ),
    pytest.param(
        minutes(2),
        every(5 * MINUTE_MS, paused=True, paused_until=minutes(2)),
        minutes(5),
        Source.BASELINE_INTERVAL,
        id="timed-pause-ending-now-is-active",
    ),
    pytest.param(
        T0,
        every(5 * MINUTE_MS, paused=False, paused_until=minutes(120)),
        minutes(5),
        Source.BASELINE_INTERVAL,
        id="pause-end-without-pause-ignored",
    ),
]


@pytest.mark.parametrize(("now", "state", "expected_at", "expected_source"), CASES)
def test_plan(now: datetime, state: EndpointState, expected_at: datetime | None, expected_source: Source) -> None:
    assert plan(now, state) == Plan(expected_at, expected_source)


@pytest.mark.parametrize(
    ("failure_count", "multiplier"),
    [(-1, 1), (0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 32), (100, 32)],
)
def test_backoff_multiplier(failure_count: int, multiplier: int) -> None:
    assert backoff_multiplier(failure_count) == multiplier


@pytest.mark.parametrize(
    ("paused", "paused_until", "expected"),
    [
        pytest.param(False, None, False, id="not-paused"),
        pytest.param(True, None, True, id="indefinitely"),
        pytest.param(True, minutes(1), True, id="until-later"),
        pytest.param(True, T0, False, id="until-now-has-ended"),
        pytest.param(True, minutes(-1), False, id="until-earlier-has-ended"),
    ],
)
def test_is_paused(paused: bool, paused_until: datetime | None, expected: bool) -> None:
    assert is_paused(T0, every(MINUTE_MS, paused=paused, paused_until=paused_until)) is expected


@pytest.mark.parametrize(
    ("expires_at", "fresh"),
    [
        pytest.param(minutes(1), True, id="expires-later"),
        pytest.param(T0, False, id="expires-now"),
        pytest.param(minutes(-1), False, id="expired"),
    ],
)
def test_hint_freshness(expires_at: datetime, fresh: bool) -> None:
    hint = IntervalHint(MINUTE_MS, expires_at)
    shot = OneShot(minutes(5), expires_at)
    state = every(MINUTE_MS, interval_hint=hint, one_shot=shot)
    assert fresh_interval_hint(T0, state) == (hint if fresh else None)
    assert fresh_one_shot(T0, state) == (shot if fresh else None)


def test_huge_interval_saturates_instead_of_overflowing() -> None:
    result = plan(T0, every(2**62, failure_count=5))
    assert result.source is Source.BASELINE_INTERVAL
    assert result.next_run_at is not None
    assert result.next_run_at.year == 9999


# Rule 5 in full: what a coalesced run stands for (slot_at), the slots it skips (missed) and their spacing (step).
COALESCING = [
    pytest.param(T0, every(10 * MINUTE_MS), minutes(10), minutes(10), 0, None, id="on-time-stands-for-itself"),
    pytest.param(
        minutes(12), every(10 * MINUTE_MS), minutes(12), minutes(10), 0, 10, id="late-within-a-step-keeps-its-slot"
    ),
    pytest.param(
        minutes(35), every(10 * MINUTE_MS), minutes(35), minutes(30), 2, 10, id="interval-returns-to-its-grid"
    ),
    pytest.param(minutes(90), every(MINUTE_MS), minutes(90), minutes(90), 89, 1, id="interval-now-on-a-grid-point"),
    pytest.param(
        minutes(95),
        every(10 * MINUTE_MS, failure_count=2),
        minutes(95),
        minutes(80),
        1,
        40,
        id="backoff-grid-slots-only",
    ),
    pytest.param(
        minutes(23),
        every(HOUR_MS, interval_hint=IntervalHint(5 * MINUTE_MS, LATER)),
        minutes(23),
        minutes(20),
        3,
        5,
        id="interval-hint-grid",
    ),
    pytest.param(minutes(67), cron("*/15 * * * *"), minutes(67), minutes(67), 3, 15, id="cron-counts-missed-slots"),
    pytest.param(minutes(20), cron("*/15 * * * *"), minutes(20), minutes(20), 0, 15, id="cron-late-within-a-slot"),
    pytest.param(
        minutes(600), cron("*/15 * * * *"), minutes(600), minutes(600), 39, 15, id="cron-past-the-stepped-bound"
    ),
    pytest.param(
        minutes(2),
        every(HOUR_MS, one_shot=OneShot(minutes(1), LATER)),
        minutes(2),
        minutes(2),
        0,
        None,
        id="one-shot-moves-to-now",
    ),
    pytest.param(
        minutes(6),
        every(MINUTE_MS, last_start=minutes(5), min_interval_ms=10 * MINUTE_MS),
        minutes(15),
        minutes(15),
        0,
        None,
        id="min-clamp-holds-back-and-misses-nothing",
    ),
    pytest.param(
        minutes(30),
        every(MINUTE_MS, paused=True, paused_until=minutes(20)),
        minutes(30),
        minutes(30),
        0,
        None,
        id="pause-ended-after-the-anchor-misses-nothing",
    ),
    pytest.param(
        minutes(33),
        every(10 * MINUTE_MS, paused=True, paused_until=T0),
        minutes(33),
        minutes(30),
        2,
        10,
        id="pause-ended-before-the-anchor-is-no-excuse",
    ),
]


@pytest.mark.parametrize(("now", "state", "run_at", "slot_at", "missed", "step_minutes"), COALESCING)
def test_coalescing(
    now: datetime,
    state: EndpointState,
    run_at: datetime,
    slot_at: datetime,
    missed: int,
    step_minutes: int | None,
) -> None:
    result = plan(now, state)
    step = None if step_minutes is None else timedelta(minutes=step_minutes)
    assert (result.next_run_at, result.slot_at, result.missed, result.step) == (run_at, slot_at, missed, step)


def test_cron_slots_past_the_stepped_bound_are_estimated_from_their_spacing() -> None:
    # Weekdays at 09:00 from a Monday: stepping stops after 8 slots (to Thursday of the second week) and the weekend
    # in the spacing makes the estimate of the rest (Friday, Monday) a little high.
    result = plan(T0 + timedelta(days=14), cron("0 9 * * MON-FRI"))
    assert result.missed == 10  # 10 slots from Tuesday 6 to Monday 19 were missed, less the one the run stands for
