"""Cron validation and stepping: field layouts, strictly-after semantics, timezones and DST."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pacer_common.cron import CronError, next_cron_time, validate_cron


@pytest.mark.parametrize(
    ("expression", "timezone"),
    [
        pytest.param("* * * * *", "", id="every-minute"),
        pytest.param("*/5 9-17 * * 1-5", "", id="ranges-and-steps"),
        pytest.param("0 9 * * MON-FRI", "", id="weekday-names"),
        pytest.param("0 0 1 JAN *", "", id="month-name"),
        pytest.param("0 0 * * 7", "", id="sunday-as-7"),
        pytest.param("0 0 29 2 *", "", id="leap-day"),
        pytest.param("  0   9 * * *  ", "", id="extra-whitespace"),
        pytest.param("30 */5 * * * *", "", id="six-fields-seconds-first"),
        pytest.param("0 30 9 * * MON", "", id="six-fields-seconds-first-names"),
        pytest.param("0 9 * * *", "Europe/Berlin", id="iana-zone"),
        pytest.param("0 9 * * *", "UTC", id="utc-by-name"),
        pytest.param("@hourly", "", id="macro"),
    ],
)
def test_validate_cron_accepts(expression: str, timezone: str) -> None:
    validate_cron(expression, timezone)


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("garbage", id="garbage"),
        pytest.param("a b c d e", id="five-words"),
        pytest.param("* * * *", id="four-fields"),
        pytest.param("* * * * * * *", id="seven-fields"),
        pytest.param("@reboot", id="reboot-macro"),
        pytest.param("@every 5m", id="unknown-macro"),
        pytest.param("61 * * * *", id="minute-out-of-range"),
        pytest.param("0 24 * * *", id="hour-out-of-range"),
        pytest.param("0 0 32 * *", id="day-out-of-range"),
        pytest.param("0 0 * 13 *", id="month-out-of-range"),
        pytest.param("0 0 * * 8", id="weekday-out-of-range"),
        pytest.param("60 * * * * *", id="second-out-of-range"),
        pytest.param("0 0 30 * * *", id="six-fields-hour-out-of-range"),
        pytest.param("*/0 * * * *", id="zero-step"),
        pytest.param("0 0 * * FOO", id="unknown-name"),
        pytest.param("H * * * *", id="hashed"),
        pytest.param("R * * * *", id="random"),
        pytest.param("0 0 30 2 *", id="never-fires"),
    ],
)
def test_validate_cron_rejects_expression(expression: str) -> None:
    with pytest.raises(CronError) as caught:
        validate_cron(expression)
    assert caught.value.field == "expression"
    assert repr(expression) in str(caught.value)


@pytest.mark.parametrize(
    "timezone",
    [
        pytest.param("Mars/Olympus", id="unknown"),
        pytest.param("Europe/Berlinn", id="typo"),
        pytest.param("Europe", id="folder"),
        pytest.param("../etc/passwd", id="path"),
        pytest.param("utc", id="wrong-case"),
        pytest.param(" ", id="blank"),
        pytest.param("localtime", id="host-dependent"),
    ],
)
def test_validate_cron_rejects_timezone(timezone: str) -> None:
    with pytest.raises(CronError) as caught:
        validate_cron("0 9 * * *", timezone)
    assert caught.value.field == "timezone"
    assert repr(timezone) in str(caught.value)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "timezone", "after", "expected"),
    [
        pytest.param("0 * * * *", "", utc(2026, 1, 5, 10, 0), utc(2026, 1, 5, 11, 0), id="on-slot-gives-next"),
        pytest.param(
            "0 * * * *",
            "",
            utc(2026, 1, 5, 10, 0) + timedelta(microseconds=1),
            utc(2026, 1, 5, 11, 0),
            id="just-after-slot",
        ),
        pytest.param(
            "0 * * * *",
            "",
            utc(2026, 1, 5, 10, 0) - timedelta(milliseconds=1),
            utc(2026, 1, 5, 10, 0),
            id="just-before-slot",
        ),
        pytest.param("0 9 * * MON", "", utc(2026, 1, 3, 12, 0), utc(2026, 1, 5, 9, 0), id="weekday-name"),
        pytest.param("*/10 * * * * *", "", utc(2026, 1, 5, 10, 0, 0), utc(2026, 1, 5, 10, 0, 10), id="sec-on-slot"),
        pytest.param("*/10 * * * * *", "", utc(2026, 1, 5, 10, 0, 5), utc(2026, 1, 5, 10, 0, 10), id="sec-between"),
        pytest.param("15 0 * * * *", "", utc(2026, 1, 5, 10, 0), utc(2026, 1, 5, 10, 0, 15), id="seconds-first"),
        pytest.param("15 0 * * * *", "", utc(2026, 1, 5, 10, 0, 15), utc(2026, 1, 5, 11, 0, 15), id="seconds-next"),
        pytest.param("0 30 9 * * *", "", utc(2026, 1, 5), utc(2026, 1, 5, 9, 30), id="six-fields-daily"),
        pytest.param(
            "0 9 * * *",
            "Europe/Berlin",
            utc(2026, 1, 5, 8, 0),
            utc(2026, 1, 6, 8, 0),
            id="berlin-winter-on-slot",
        ),
        pytest.param(
            "0 9 * * *",
            "Europe/Berlin",
            utc(2026, 3, 28, 8, 0),
            utc(2026, 3, 29, 7, 0),
            id="berlin-spring-forward",
        ),
        pytest.param(
            "0 9 * * *",
            "Europe/Berlin",
            utc(2026, 10, 24, 7, 0),
            utc(2026, 10, 25, 8, 0),
            id="berlin-fall-back",
        ),
        pytest.param(
            "0 9 * * *",
            "America/New_York",
            utc(2026, 3, 7, 14, 0),
            utc(2026, 3, 8, 13, 0),
            id="new-york-spring",
        ),
        pytest.param("0 9 * * *", "Asia/Kolkata", utc(2026, 1, 5), utc(2026, 1, 5, 3, 30), id="half-hour-offset"),
    ],
)
def test_next_cron_time(expression: str, timezone: str, after: datetime, expected: datetime) -> None:
    result = next_cron_time(expression, timezone, after)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


def test_next_cron_time_accepts_after_in_any_zone() -> None:
    after = utc(2026, 1, 5, 10, 0).astimezone(ZoneInfo("America/Los_Angeles"))
    assert next_cron_time("0 * * * *", "", after) == utc(2026, 1, 5, 11, 0)


@pytest.mark.parametrize(
    ("timezone", "start"),
    [
        pytest.param("Europe/Berlin", utc(2026, 3, 28, 22, 0), id="berlin-spring-forward"),
        pytest.param("Europe/Berlin", utc(2026, 10, 24, 22, 0), id="berlin-fall-back"),
        pytest.param("America/New_York", utc(2026, 11, 1, 3, 0), id="new-york-fall-back"),
    ],
)
def test_sub_hourly_slots_stay_evenly_spaced_across_dst(timezone: str, start: datetime) -> None:
    # Minute-based slots are instants, not wall times: a DST change must neither skip nor repeat one.
    slots = [start]
    for _ in range(16):
        slots.append(next_cron_time("*/30 * * * *", timezone, slots[-1]))
    gaps = {later - earlier for earlier, later in itertools.pairwise(slots[1:])}
    assert gaps == {timedelta(minutes=30)}


def test_next_cron_time_rejects_invalid_timezone() -> None:
    with pytest.raises(CronError) as caught:
        next_cron_time("0 9 * * *", "Nowhere/Special", utc(2026, 1, 5))
    assert caught.value.field == "timezone"


def test_next_cron_time_rejects_invalid_expression() -> None:
    with pytest.raises(CronError) as caught:
        next_cron_time("61 * * * *", "", utc(2026, 1, 5))
    assert caught.value.field == "expression"


def test_next_cron_time_rejects_naive_after() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_cron_time("0 9 * * *", "", datetime(2026, 1, 5))
