"""Jitter: each cadence run starts within its window, at the same time for the same slot, and never past what the max
clamp allows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer_common import jitter
from pacer_common.governor import CronBaseline, IntervalBaseline, Source
from pacer_common.transitions import ScheduleState, on_claim, on_release

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
MINUTE_MS = 60_000


def due(**fields: object) -> ScheduleState:
    """An interval endpoint due at T0 for its baseline slot."""
    values: dict[str, object] = {
        "baseline": IntervalBaseline(10 * MINUTE_MS),
        "anchor_at": T0 - timedelta(minutes=10),
        "next_run_at": T0,
        "next_run_source": Source.BASELINE_INTERVAL,
    }
    values.update(fields)
    return ScheduleState(**values)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(
    endpoint=st.text(min_size=1, max_size=30),
    slot_s=st.integers(min_value=0, max_value=10**9),
    window_ms=st.integers(min_value=0, max_value=jitter.MAX_JITTER_MS),
)
def test_the_offset_stays_in_its_window_and_is_the_same_every_time(endpoint: str, slot_s: int, window_ms: int) -> None:
    slot = datetime.fromtimestamp(slot_s, UTC)
    offset = jitter.offset_ms(endpoint, slot, window_ms)
    assert 0 <= offset <= window_ms
    assert jitter.offset_ms(endpoint, slot, window_ms) == offset


def test_offsets_spread_over_the_whole_window() -> None:
    window_ms = 1_000
    offsets = [jitter.offset_ms(f"ep_{n}", T0, window_ms) for n in range(4_000)]
    tenths = {offset * 10 // (window_ms + 1) for offset in offsets}
    assert tenths == set(range(10))  # every tenth of the window is used
    mean = sum(offsets) / len(offsets)
    assert 450 < mean < 550
    # One endpoint's slots spread too: its runs do not all land at the same offset.
    own = {jitter.offset_ms("ep_one", T0 + timedelta(minutes=n), window_ms) for n in range(100)}
    assert len(own) > 80


def test_a_run_starts_at_its_slot_plus_its_offset_and_a_claim_covers_the_wait() -> None:
    state = due()
    start = jitter.claim_start(state, "ep_a", 30_000)
    assert T0 <= start <= T0 + timedelta(seconds=30)
    assert start == T0 + timedelta(milliseconds=jitter.offset_ms("ep_a", T0, 30_000))
    claim = on_claim(state, "run_1", T0, timeout_ms=5_000, grace_ms=1_000, start_at=start)
    assert (claim.scheduled_for, claim.start_at) == (T0, start)
    assert claim.lease_expires_at == start + timedelta(milliseconds=6_000)


def test_a_released_run_claimed_again_starts_at_the_same_time() -> None:
    state = due(failure_count=1)
    start = jitter.claim_start(state, "ep_a", 60_000)
    claimed = on_claim(state, "run_1", T0, 5_000, 1_000, start_at=start)
    again = on_release(claimed.state)
    assert jitter.claim_start(again, "ep_a", 60_000) == start
    assert jitter.claim_start(claimed.state, "ep_a", 60_000) == start  # a claim sent again, before the release


@pytest.mark.parametrize("source", [Source.AI_ONESHOT, Source.CLAMPED_MAX, Source.CLAMPED_MIN, Source.PAUSED], ids=str)
def test_runs_at_an_asked_or_forced_time_start_on_their_slot(source: Source) -> None:
    assert jitter.claim_start(due(next_run_source=source), "ep_a", 60_000) == T0


@pytest.mark.parametrize("source", [Source.BASELINE_INTERVAL, Source.AI_INTERVAL, Source.BASELINE_CRON], ids=str)
def test_cadence_runs_jitter(source: Source) -> None:
    starts = {
        jitter.claim_start(due(next_run_source=source, hint_interval_ms=MINUTE_MS), f"ep_{n}", 30_000)
        for n in range(20)
    }
    assert len(starts) > 1


@settings(max_examples=300)
@given(
    endpoint=st.text(min_size=1, max_size=20),
    jitter_ms=st.integers(min_value=1, max_value=jitter.MAX_JITTER_MS),
    interval_min=st.integers(min_value=1, max_value=120),
    spare_ms=st.integers(min_value=0, max_value=2 * jitter.MAX_JITTER_MS),
    failures=st.integers(min_value=0, max_value=2),
)
def test_a_run_never_starts_later_than_the_max_clamp_allows(
    endpoint: str, jitter_ms: int, interval_min: int, spare_ms: int, failures: int
) -> None:
    step_ms = interval_min * MINUTE_MS * 2**failures
    max_ms = step_ms + spare_ms
    previous_slot = T0 - timedelta(milliseconds=step_ms)
    state = due(
        baseline=IntervalBaseline(interval_min * MINUTE_MS),
        anchor_at=previous_slot,
        failure_count=failures,
        max_interval_ms=max_ms,
    )
    start = jitter.claim_start(state, endpoint, jitter_ms)
    assert T0 <= start <= previous_slot + timedelta(milliseconds=max_ms)
    assert start <= T0 + timedelta(milliseconds=jitter_ms)


def test_the_window_is_what_the_max_clamp_leaves() -> None:
    assert jitter.window_ms(30_000, 0, MINUTE_MS) == 30_000  # no max clamp
    assert jitter.window_ms(30_000, MINUTE_MS + 10_000, MINUTE_MS) == 10_000
    assert jitter.window_ms(30_000, MINUTE_MS, MINUTE_MS) == 0
    assert jitter.window_ms(0, 0, MINUTE_MS) == 0


def test_a_cron_run_keeps_within_the_max_clamp_after_its_step() -> None:
    hourly = due(baseline=CronBaseline("0 * * * *"), next_run_source=Source.BASELINE_CRON, max_interval_ms=3_660_000)
    starts = [jitter.claim_start(replace(hourly, next_run_at=T0), f"ep_{n}", 600_000) for n in range(50)]
    assert all(T0 <= start <= T0 + timedelta(minutes=1) for start in starts)


@pytest.mark.parametrize(
    ("jitter_ms", "baseline", "problem"),
    [
        (0, IntervalBaseline(1_000), None),
        (59_999, IntervalBaseline(MINUTE_MS), None),
        (MINUTE_MS, IntervalBaseline(MINUTE_MS), "must be less than the baseline interval (60000 ms)"),
        (-1, IntervalBaseline(MINUTE_MS), "must be between 0 and 3600000 ms"),
        (jitter.MAX_JITTER_MS + 1, None, "must be between 0 and 3600000 ms"),
        (jitter.MAX_JITTER_MS, IntervalBaseline(2 * jitter.MAX_JITTER_MS), None),
        (5 * MINUTE_MS, CronBaseline("*/10 * * * *"), None),
        (10 * MINUTE_MS, CronBaseline("*/10 * * * *"), "must be less than the baseline interval (600000 ms)"),
        # Irregular: 09:00 and 10:00 daily, the shortest gap (1 h) is the bound.
        (3_000_000, CronBaseline("0 9,10 * * *"), None),
        (3_600_000, CronBaseline("0 9,10 * * *"), "must be less than the baseline interval (3600000 ms)"),
    ],
)
def test_jitter_must_fit_in_the_baseline(
    jitter_ms: int, baseline: IntervalBaseline | CronBaseline | None, problem: str | None
) -> None:
    assert jitter.problem(jitter_ms, baseline, T0) == problem
