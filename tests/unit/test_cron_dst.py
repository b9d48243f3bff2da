"""Cron across daylight-saving changes: a wall-clock time runs once, an every-hour expression follows elapsed time.

Europe/Berlin, 2026: clocks go forward on 29 March at 01:00Z (02:00 CET becomes 03:00 CEST) and back on 25 October
at 01:00Z (03:00 CEST becomes 02:00 CET, so 02:00-02:59 happens twice: 00:00-00:59Z, then 01:00-01:59Z).
America/New_York, 2026: forward on 8 March at 07:00Z (02:00 EST becomes 03:00 EDT), back on 1 November at 06:00Z
(02:00 EDT becomes 01:00 EST, so 01:00-01:59 happens at 05:00-05:59Z and again at 06:00-06:59Z).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pacer_common.cron import next_cron_time

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "timezone", "after", "expected"),
    [
        # Berlin, clocks back: a fixed time runs in the first (summer time) pass only.
        pytest.param("30 2 * * *", BERLIN, utc(2026, 10, 24, 22), utc(2026, 10, 25, 0, 30), id="berlin-back-first"),
        pytest.param("30 2 * * *", BERLIN, utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30), id="berlin-back-once"),
        pytest.param(
            "30 2 * * *", BERLIN, utc(2026, 10, 25, 1, 10), utc(2026, 10, 26, 1, 30), id="berlin-back-inside-repeat"
        ),
        pytest.param("0 30 2 * * *", BERLIN, utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30), id="berlin-back-6"),
        pytest.param("0 1-3 * * *", BERLIN, utc(2026, 10, 25), utc(2026, 10, 25, 2), id="berlin-back-hour-range"),
        pytest.param("0 */2 * * *", BERLIN, utc(2026, 10, 25), utc(2026, 10, 25, 3), id="berlin-back-hour-step"),
        pytest.param("*/15 2 * * *", BERLIN, utc(2026, 10, 25, 0, 45), utc(2026, 10, 26, 1), id="berlin-back-window"),
        pytest.param("*/10 * 2 * * *", BERLIN, utc(2026, 10, 25, 0, 59, 50), utc(2026, 10, 26, 1), id="berlin-back-s"),
        pytest.param("@daily", BERLIN, utc(2026, 10, 24, 22), utc(2026, 10, 25, 23), id="berlin-back-25-hour-day"),
        # Berlin, clocks back: an expression covering every hour runs in both passes.
        pytest.param("0 * * * *", BERLIN, utc(2026, 10, 25), utc(2026, 10, 25, 1), id="berlin-back-hourly"),
        pytest.param("@hourly", BERLIN, utc(2026, 10, 25), utc(2026, 10, 25, 1), id="berlin-back-hourly-macro"),
        pytest.param("30 * * * *", BERLIN, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), id="berlin-back-half"),
        pytest.param("0 0-23 * * *", BERLIN, utc(2026, 10, 25), utc(2026, 10, 25, 1), id="berlin-back-0-23"),
        pytest.param("*/30 * * * *", BERLIN, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1), id="berlin-back-30min"),
        pytest.param(
            "*/10 * * * * *", BERLIN, utc(2026, 10, 25, 0, 59, 50), utc(2026, 10, 25, 1), id="berlin-back-10s"
        ),
        # Berlin, clocks forward: 02:xx does not exist; a fixed time runs once at 03:00 summer time.
        pytest.param("30 2 * * *", BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1), id="berlin-forward-gap-end"),
        pytest.param("30 2 * * *", BERLIN, utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30), id="berlin-forward-next"),
        pytest.param("*/15 2 * * *", BERLIN, utc(2026, 3, 29), utc(2026, 3, 29, 1), id="berlin-forward-window"),
        pytest.param("*/15 2 * * *", BERLIN, utc(2026, 3, 29, 1), utc(2026, 3, 30), id="berlin-forward-window-once"),
        pytest.param("0 1-3 * * *", BERLIN, utc(2026, 3, 29), utc(2026, 3, 29, 1), id="berlin-forward-range"),
        pytest.param("0 1-3 * * *", BERLIN, utc(2026, 3, 29, 1), utc(2026, 3, 29, 23), id="berlin-forward-range-next"),
        # Berlin, clocks forward: every real hour keeps its runs, and the missing hour adds none.
        pytest.param("30 * * * *", BERLIN, utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30), id="berlin-forward-half"),
        pytest.param("0 * * * *", BERLIN, utc(2026, 3, 29), utc(2026, 3, 29, 1), id="berlin-forward-hourly"),
        # New York, clocks back at 02:00 EDT: 01:xx repeats.
        pytest.param("30 1 * * *", NEW_YORK, utc(2026, 11, 1, 4), utc(2026, 11, 1, 5, 30), id="new-york-back-first"),
        pytest.param("30 1 * * *", NEW_YORK, utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30), id="new-york-back-once"),
        pytest.param("0 1-3 * * *", NEW_YORK, utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), id="new-york-back-range"),
        pytest.param("30 2 * * *", NEW_YORK, utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 7, 30), id="new-york-back-2am"),
        pytest.param("0 * * * *", NEW_YORK, utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), id="new-york-back-hourly"),
        pytest.param("*/20 * * * *", NEW_YORK, utc(2026, 11, 1, 5, 40), utc(2026, 11, 1, 6), id="new-york-back-20min"),
        # New York, clocks forward at 02:00 EST: 02:xx does not exist.
        pytest.param("30 2 * * *", NEW_YORK, utc(2026, 3, 7, 12), utc(2026, 3, 8, 7), id="new-york-forward-gap-end"),
        pytest.param("30 2 * * *", NEW_YORK, utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30), id="new-york-forward-next"),
        pytest.param("0 2 * * *", NEW_YORK, utc(2026, 3, 7, 12), utc(2026, 3, 8, 7), id="new-york-forward-2am"),
        pytest.param("*/20 * * * *", NEW_YORK, utc(2026, 3, 8, 6, 40), utc(2026, 3, 8, 7), id="new-york-forward-20min"),
    ],
)
def test_next_cron_time_across_dst(expression: str, timezone: str, after: datetime, expected: datetime) -> None:
    assert next_cron_time(expression, timezone, after) == expected


def slots(expression: str, timezone: str, after: datetime, until: datetime) -> list[datetime]:
    found: list[datetime] = []
    while (slot := next_cron_time(expression, timezone, found[-1] if found else after)) <= until:
        found.append(slot)
    return found


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param("30 2 * * *", [utc(2026, 10, 25, 0, 30)], id="fixed-time"),
        pytest.param("0 1-3 * * *", [utc(2026, 10, 24, 23), utc(2026, 10, 25), utc(2026, 10, 25, 2)], id="hours"),
        pytest.param(
            "0 * * * *",
            [utc(2026, 10, 24, 23), utc(2026, 10, 25), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)],
            id="every-hour",
        ),
    ],
)
def test_berlin_fall_back_night(expression: str, expected: list[datetime]) -> None:
    # 00:00 to 03:00 Berlin time on 25 October 2026: four real hours, one of them a repeat.
    assert slots(expression, BERLIN, utc(2026, 10, 24, 22), utc(2026, 10, 25, 2)) == expected


# --- Against a brute-force reference ---------------------------------------------------------------------------------

TRANSITIONS = {
    BERLIN: [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)],
    NEW_YORK: [utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)],
    "Australia/Lord_Howe": [utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30)],  # half-hour changes
}
MINUTE = timedelta(minutes=1)


def test_transitions_are_real() -> None:
    for name, instants in TRANSITIONS.items():
        zone = ZoneInfo(name)
        for instant in instants:
            assert (instant - MINUTE).astimezone(zone).utcoffset() != instant.astimezone(zone).utcoffset()


def reference_next(minutes: set[int], hours: set[int], zone: ZoneInfo, after: datetime) -> datetime:
    """The rule spelled out, one UTC minute at a time.

    A minute fires if its wall-clock time matches. If the hour set is not all 24 hours, a wall-clock time seen
    a second time (fold=1) does not fire again, and a matching wall-clock time that the clocks skipped fires once at
    the first minute after the gap.
    """
    every_hour = len(hours) == 24
    minute = after.replace(second=0, microsecond=0) + MINUTE
    previous_wall = (minute - MINUTE).astimezone(zone).replace(tzinfo=None)
    while True:
        local = minute.astimezone(zone)
        wall = local.replace(tzinfo=None)
        skipped = [previous_wall + MINUTE * n for n in range(1, (wall - previous_wall) // MINUTE)]
        if not every_hour and any(time.hour in hours and time.minute in minutes for time in skipped):
            return minute
        if wall.hour in hours and wall.minute in minutes and (every_hour or local.fold == 0):
            return minute
        previous_wall, minute = wall, minute + MINUTE


def expression_of(minutes: set[int], hours: set[int]) -> str:
    hour_field = "*" if len(hours) == 24 else ",".join(map(str, sorted(hours)))
    return f"{','.join(map(str, sorted(minutes)))} {hour_field} * * *"


minute_sets = st.sets(st.one_of(st.sampled_from([0, 15, 30, 45, 59]), st.integers(0, 59)), min_size=1, max_size=4)
hour_sets = st.one_of(
    st.just(set(range(24))),
    st.sets(st.one_of(st.sampled_from([0, 1, 2, 3, 23]), st.integers(0, 23)), min_size=1, max_size=4),
)


@st.composite
def near_transitions(draw: st.DrawFn) -> tuple[str, datetime]:
    name = draw(st.sampled_from(sorted(TRANSITIONS)))
    transition = draw(st.sampled_from(TRANSITIONS[name]))
    offset = draw(st.timedeltas(timedelta(hours=-4), timedelta(hours=4)))
    return name, transition + offset


@settings(max_examples=200, deadline=None)
@given(minute_sets, hour_sets, near_transitions())
def test_matches_the_brute_force_rule(minutes: set[int], hours: set[int], place: tuple[str, datetime]) -> None:
    name, after = place
    expected = reference_next(minutes, hours, ZoneInfo(name), after)
    assert next_cron_time(expression_of(minutes, hours), name, after) == expected


# --- Properties over many years ----------------------------------------------------------------------------------

# Zones whose clocks move by at most an hour, changing at different local times (Havana and Santiago at midnight).
ONE_HOUR_ZONES = [BERLIN, NEW_YORK, "America/Havana", "America/Santiago", "Europe/Dublin", "Australia/Lord_Howe"]


@settings(max_examples=8, deadline=None)
@given(
    st.integers(0, 59),
    st.integers(0, 23),
    st.sampled_from(ONE_HOUR_ZONES),
    st.dates(date(2000, 1, 1), date(2035, 1, 1)),
    st.integers(366, 2 * 366),
)
def test_fixed_time_daily_runs_once_per_local_date(
    minute: int, hour: int, timezone: str, start: date, span_days: int
) -> None:
    zone = ZoneInfo(timezone)
    # A second before the local day starts, so a slot at 00:00 counts for `start`.
    after = datetime(start.year, start.month, start.day, tzinfo=zone).astimezone(UTC) - timedelta(seconds=1)
    end = start + timedelta(days=span_days)
    until = datetime(end.year, end.month, end.day, tzinfo=zone).astimezone(UTC) - timedelta(seconds=1)
    found = slots(f"{minute} {hour} * * *", timezone, after, until)
    assert all(later - earlier >= timedelta(hours=23) for earlier, later in itertools.pairwise(found))
    local_dates = [slot.astimezone(zone).date() for slot in found]
    assert local_dates == [start + timedelta(days=n) for n in range(span_days)]


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([5, 10, 15, 20, 30, 60]),
    st.sampled_from([BERLIN, NEW_YORK, "America/Havana", "America/Santiago", "Europe/Dublin"]),
    st.integers(2000, 2035),
)
def test_every_hour_expressions_stay_evenly_spaced_through_both_changes(step: int, timezone: str, year: int) -> None:
    expression = "0 * * * *" if step == 60 else f"*/{step} * * * *"
    changes = offset_changes(ZoneInfo(timezone), datetime(year, 1, 1, tzinfo=UTC))
    assume(changes)  # Havana and Santiago skipped some changes
    for change in changes:
        found = slots(expression, timezone, change - timedelta(hours=2), change + timedelta(hours=2))
        assert {later - earlier for earlier, later in itertools.pairwise(found)} == {timedelta(minutes=step)}


def offset_changes(zone: ZoneInfo, start: datetime) -> list[datetime]:
    """The whole hours (UTC) in the year from `start` at which `zone`'s offset has just changed."""
    days = [start + timedelta(days=n) for n in range(366)]
    return [
        hour
        for day in days
        if offset_differs(zone, day, day + timedelta(days=1))
        for hour in (day + timedelta(hours=n) for n in range(1, 25))
        if offset_differs(zone, hour - timedelta(hours=1), hour)
    ]


def offset_differs(zone: ZoneInfo, earlier: datetime, later: datetime) -> bool:
    return earlier.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset()
