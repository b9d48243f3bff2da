"""Properties of the governor that must hold for every endpoint state, not just the table's examples."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pacer_common.cron import next_cron_time
from pacer_common.governor import (
    Baseline,
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

SECOND_MS = 1_000
DAY_MS = 86_400_000
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

CRONS = [
    CronBaseline("*/15 * * * *"),
    CronBaseline("0 9 * * MON-FRI", "Europe/Berlin"),
    CronBaseline("30 */5 * * * *"),
    CronBaseline("30 2 * * *", "Europe/Berlin"),  # a wall time that DST skips and repeats
    CronBaseline("0 0 1 * *", "America/New_York"),
]

ACTIVE = ("off", "ended", "end-without-pause")
PAUSED = ("indefinite", "until")

moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))
interval_baselines = st.integers(SECOND_MS, DAY_MS).map(IntervalBaseline)
cron_baselines = st.sampled_from(CRONS)
all_baselines: st.SearchStrategy[Baseline] = st.one_of(interval_baselines, cron_baselines)


def around(moment: datetime, before: timedelta, after: timedelta) -> st.SearchStrategy[datetime]:
    """Times from `moment - before` to `moment + after`, to the millisecond."""
    return st.timedeltas(-before, after).map(lambda offset: moment + offset)


@st.composite
def scenarios(
    draw: st.DrawFn,
    baselines: st.SearchStrategy[Baseline] = all_baselines,
    pauses: tuple[str, ...] = ACTIVE + PAUSED,
) -> tuple[datetime, EndpointState]:
    """A `now` and an endpoint state with random clamps (min <= max), hints, one-shot and pause."""
    anchor = draw(moments)
    now = draw(around(anchor, timedelta(hours=1), timedelta(days=3)))
    short, long = sorted(draw(st.lists(st.integers(SECOND_MS, 2 * DAY_MS), min_size=2, max_size=2)))
    paused, paused_until = draw(pause_fields(now, pauses))
    return now, EndpointState(
        baseline=draw(baselines),
        anchor=anchor,
        last_start=draw(st.none() | around(anchor, timedelta(hours=1), timedelta(hours=1))),
        failure_count=draw(st.integers(0, 12)),
        min_interval_ms=draw(st.sampled_from([0, short])),
        max_interval_ms=draw(st.sampled_from([0, long])),
        interval_hint=draw(st.none() | st.builds(IntervalHint, st.integers(SECOND_MS, DAY_MS), around_day(now))),
        one_shot=draw(
            st.none() | st.builds(OneShot, around(now, timedelta(days=1), timedelta(days=2)), around_day(now))
        ),
        paused=paused,
        paused_until=paused_until,
    )


def around_day(moment: datetime) -> st.SearchStrategy[datetime]:
    return around(moment, timedelta(days=1), timedelta(days=1))


def pause_fields(now: datetime, pauses: tuple[str, ...]) -> st.SearchStrategy[tuple[bool, datetime | None]]:
    """(paused, paused_until) for one of the named pause situations at `now`."""
    future = around(now, timedelta(0), timedelta(days=2)).filter(lambda end: end > now)
    past = around(now, timedelta(days=2), timedelta(0))
    by_name: dict[str, st.SearchStrategy[tuple[bool, datetime | None]]] = {
        "off": st.just((False, None)),
        "ended": past.map(lambda end: (True, end)),
        "end-without-pause": future.map(lambda end: (False, end)),
        "indefinite": st.just((True, None)),
        "until": future.map(lambda end: (True, end)),
    }
    return st.sampled_from(pauses).flatmap(lambda name: by_name[name])


def lower_bound(state: EndpointState) -> datetime | None:
    """The min clamp's earliest allowed time, if the endpoint has one."""
    if state.min_interval_ms == 0 or state.last_start is None:
        return None
    return state.last_start + timedelta(milliseconds=state.min_interval_ms)


@PROPERTY_SETTINGS
@given(scenarios())
def test_never_before_now_and_none_only_when_paused_indefinitely(scenario: tuple[datetime, EndpointState]) -> None:
    now, state = scenario
    result = plan(now, state)
    if result.next_run_at is None:
        assert result.source is Source.PAUSED
        assert is_paused(now, state)
        assert state.paused_until is None
        assert fresh_one_shot(now, state) is None
    else:
        assert result.next_run_at >= now


@PROPERTY_SETTINGS
@given(scenarios())
def test_min_clamp_always_holds(scenario: tuple[datetime, EndpointState]) -> None:
    now, state = scenario
    result = plan(now, state)
    lower = lower_bound(state)
    if result.next_run_at is not None and lower is not None:
        assert result.next_run_at >= lower


@PROPERTY_SETTINGS
@given(scenarios(pauses=ACTIVE))
def test_max_clamp_holds_unless_the_min_clamp_forces_later(scenario: tuple[datetime, EndpointState]) -> None:
    now, state = scenario
    result = plan(now, state)
    assert result.next_run_at is not None
    if state.max_interval_ms == 0:
        return
    upper = max(now, state.anchor + timedelta(milliseconds=state.max_interval_ms))
    lower = lower_bound(state)
    if lower is not None and lower > upper:
        assert result == Plan(lower, Source.CLAMPED_MIN)
    else:
        assert result.next_run_at <= upper


@PROPERTY_SETTINGS
@given(scenarios(pauses=PAUSED))
def test_paused_endpoints_only_fire_fresh_one_shots(scenario: tuple[datetime, EndpointState]) -> None:
    now, state = scenario
    result = plan(now, state)
    assert result.source in {Source.PAUSED, Source.AI_ONESHOT, Source.CLAMPED_MIN}
    shot = fresh_one_shot(now, state)
    lower = lower_bound(state)
    allowed = [moment for moment in (shot.run_at if shot else None, state.paused_until) if moment is not None]
    if not allowed:
        assert result == Plan(None, Source.PAUSED)
        return
    # The earliest allowed run, never in the past, never inside the cooldown.
    expected = max(now, min(allowed), lower or now)
    assert result.next_run_at == expected
    if shot is None:
        assert result.source in {Source.PAUSED, Source.CLAMPED_MIN}


@PROPERTY_SETTINGS
@given(scenarios(baselines=interval_baselines), st.integers(5, 1_000))
def test_backoff_caps_at_32x(scenario: tuple[datetime, EndpointState], failure_count: int) -> None:
    now, state = scenario
    assert plan(now, replace(state, failure_count=failure_count)) == plan(now, replace(state, failure_count=5))


@PROPERTY_SETTINGS
@given(moments, interval_baselines, st.integers(0, 12))
def test_backoff_stretches_a_plain_interval(anchor: datetime, baseline: IntervalBaseline, failures: int) -> None:
    state = EndpointState(baseline=baseline, anchor=anchor, failure_count=failures)
    stretched = timedelta(milliseconds=baseline.interval_ms * 2 ** min(failures, 5))
    assert plan(anchor, state) == Plan(anchor + stretched, Source.BASELINE_INTERVAL)


@PROPERTY_SETTINGS
@given(scenarios(), st.integers(1, 12))
def test_backoff_applies_only_to_the_baseline_interval(scenario: tuple[datetime, EndpointState], failures: int) -> None:
    now, state = scenario
    if isinstance(state.baseline, CronBaseline) or fresh_interval_hint(now, state) is not None:
        assert plan(now, replace(state, failure_count=failures)) == plan(now, replace(state, failure_count=0))


@PROPERTY_SETTINGS
@given(cron_baselines, moments)
def test_cron_slot_never_returned_twice(baseline: CronBaseline, start: datetime) -> None:
    state = EndpointState(baseline=baseline, anchor=start)
    now = start
    runs: list[datetime] = []
    for _ in range(8):
        result = plan(now, state)
        assert result.source is Source.BASELINE_CRON
        assert result.next_run_at is not None
        runs.append(result.next_run_at)
        # Run exactly on time: the run's scheduled_for and actual start become the new anchor and last start.
        now = result.next_run_at
        state = replace(state, anchor=now, last_start=now)
    assert runs == sorted(set(runs))
    for run in runs:
        assert next_cron_time(baseline.expression, baseline.timezone, run - timedelta(seconds=1)) == run


@PROPERTY_SETTINGS
@given(cron_baselines, moments, st.lists(st.timedeltas(timedelta(0), timedelta(hours=2)), min_size=8, max_size=8))
def test_late_runs_coalesce_without_repeating(baseline: CronBaseline, start: datetime, delays: list[timedelta]) -> None:
    state = EndpointState(baseline=baseline, anchor=start)
    now = start
    scheduled: list[datetime] = []
    for delay in delays:
        result = plan(now, state)
        assert result.next_run_at is not None
        scheduled.append(result.next_run_at)
        # The run starts late; the next plan is made once it has started.
        now = result.next_run_at + delay
        state = replace(state, anchor=result.next_run_at, last_start=now)
    assert scheduled == sorted(set(scheduled))
