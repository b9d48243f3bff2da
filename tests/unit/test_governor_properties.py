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
START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
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


# -- rule 5: coalesced runs keep the endpoint's phase --------------------------------------------------------------


def interval_kinds(step_ms: int, anchor: datetime) -> st.SearchStrategy[EndpointState]:
    """An endpoint stepping every `step_ms` from `anchor`: by its baseline, or by a fresh interval hint."""
    return st.sampled_from(
        [
            EndpointState(baseline=IntervalBaseline(step_ms), anchor=anchor, last_start=anchor),
            EndpointState(
                baseline=IntervalBaseline(DAY_MS),
                anchor=anchor,
                last_start=anchor,
                interval_hint=IntervalHint(step_ms, datetime(2040, 1, 1, tzinfo=UTC)),
            ),
        ]
    )


def on_grid(moment: datetime, origin: datetime, step: timedelta) -> bool:
    return (moment - origin) % step == timedelta(0)


@st.composite
def herds(draw: st.DrawFn) -> tuple[timedelta, list[EndpointState], datetime, list[timedelta]]:
    """Endpoints with one cadence and distinct phases, an outage that ends at `now` after all of them were due, and
    how long each one's coalesced run takes (less than a step)."""
    step_ms = draw(st.integers(SECOND_MS, DAY_MS))
    step = timedelta(milliseconds=step_ms)
    base = draw(moments)
    offsets = draw(st.lists(st.integers(0, step_ms - 1), min_size=2, max_size=20, unique=True))
    states = [draw(interval_kinds(step_ms, base + timedelta(milliseconds=offset))) for offset in offsets]
    now = base + step * draw(st.integers(2, 50)) + timedelta(milliseconds=draw(st.integers(0, step_ms - 1)))
    durations = [timedelta(milliseconds=draw(st.integers(0, step_ms - 1))) for _ in offsets]
    return step, states, now, durations


@PROPERTY_SETTINGS
@given(herds())
def test_endpoints_made_overdue_together_by_an_outage_spread_back_to_their_own_phases_within_one_interval(
    herd: tuple[timedelta, list[EndpointState], datetime, list[timedelta]],
) -> None:
    step, states, now, durations = herd
    phases = set()
    for state, duration in zip(states, durations, strict=True):
        coalesced = plan(now, state)
        assert coalesced.next_run_at == now  # the herd fires together once, its missed slots coalesced
        assert coalesced.slot_at is not None
        assert on_grid(coalesced.slot_at, state.anchor, step)
        # The coalesced run is claimed (its slot becomes the anchor), runs, and its result re-plans the endpoint.
        finished = now + duration
        after = plan(finished, replace(state, anchor=coalesced.slot_at, last_start=now))
        own_point = coalesced.slot_at + step
        assert now < own_point <= now + step
        assert after.slot_at == own_point  # its own grid point within one interval of the outage
        # On time unless that point passed while the coalesced run was still running: then it runs at once.
        assert after.next_run_at == max(own_point, finished)
        assert after.missed == 0
        phases.add((own_point - states[0].anchor) % step)
    assert phases == {(state.anchor - states[0].anchor) % step for state in states}


@PROPERTY_SETTINGS
@given(st.integers(SECOND_MS, DAY_MS).flatmap(lambda ms: st.tuples(st.just(ms), interval_kinds(ms, START))), st.data())
def test_an_on_time_endpoints_runs_stay_on_its_grid(kind: tuple[int, EndpointState], data: st.DataObject) -> None:
    step_ms, state = kind
    step = timedelta(milliseconds=step_ms)
    now = state.anchor
    for number in range(1, 9):
        result = plan(now, state)
        assert result == Plan(START + number * step, result.source)
        assert (result.slot_at, result.missed) == (result.next_run_at, 0)
        # Claimed and started on time; its result arrives before the next slot.
        run_at = result.next_run_at
        assert run_at is not None
        state = replace(state, anchor=result.slot_at, last_start=run_at)
        now = run_at + timedelta(milliseconds=data.draw(st.integers(0, step_ms - 1)))


@PROPERTY_SETTINGS
@given(
    st.integers(SECOND_MS, DAY_MS).flatmap(lambda ms: st.tuples(st.just(ms), interval_kinds(ms, START))),
    st.lists(st.tuples(st.floats(0, 5), st.floats(0, 3)), min_size=1, max_size=12),
)
def test_every_grid_slot_is_run_or_counted_missed_exactly_once(
    kind: tuple[int, EndpointState], delays: list[tuple[float, float]]
) -> None:
    step_ms, state = kind
    step = timedelta(milliseconds=step_ms)
    now, runs, missed = state.anchor, 0, 0
    previous_slot = state.anchor
    for lateness, duration in delays:  # in steps: how late each run is dispatched, and how long it takes
        result = plan(now, state)
        assert result.slot_at is not None
        assert result.next_run_at is not None
        runs, missed = runs + 1, missed + result.missed
        assert previous_slot < result.slot_at <= result.next_run_at
        assert result.slot_at - START == step * (runs + missed)
        previous_slot = result.slot_at
        state = replace(state, anchor=result.slot_at, last_start=result.next_run_at)
        now = result.next_run_at + step * lateness + step * duration
