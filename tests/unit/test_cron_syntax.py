"""Cron syntax: every field's range and step, names, macros, L/W/# forms, limits and what error messages quote."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer_common.cron import MAX_EXPRESSION_CHARS, CronError, next_cron_time, validate_cron

ECHO_CHARS = 100


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def rejection(expression: str, timezone: str = "") -> str:
    with pytest.raises(CronError) as caught:
        validate_cron(expression, timezone)
    return str(caught.value)


def assert_echo_is_cut(text: str, message: str) -> None:
    """No run of more than ECHO_CHARS characters of `text` appears in `message`."""
    for start in range(len(text) - ECHO_CHARS):
        assert text[start : start + ECHO_CHARS + 1] not in message


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        pytest.param(
            "*/99999999999999999999 * * * *",
            "minute field '*/99999999999999999999': step must be between 1 and 59",
            id="huge-step",
        ),
        pytest.param("59-0 * * * *", "minute field '59-0': range '59-0' must go from low to high", id="reversed-range"),
        pytest.param("*/60 * * * *", "minute field '*/60': step must be between 1 and 59", id="minute-step-60"),
        pytest.param("0-59/0 * * * *", "minute field '0-59/0': step must be between 1 and 59", id="range-step-zero"),
        pytest.param("0 */24 * * *", "hour field '*/24': step must be between 1 and 23", id="hour-step"),
        pytest.param("0 22-2 * * *", "hour field '22-2': range '22-2' must go from low to high", id="wrapping-hours"),
        pytest.param("0 0 */31 * *", "day-of-month field '*/31': step must be between 1 and 30", id="day-step"),
        pytest.param("0 0 0 * *", "day-of-month field '0': value '0' must be between 1 and 31", id="day-zero"),
        pytest.param("0 0 * 0 *", "month field '0': value '0' must be between 1 and 12", id="month-zero"),
        pytest.param("0 0 * */12 *", "month field '*/12': step must be between 1 and 11", id="month-step"),
        pytest.param("0 0 * DEC-JAN *", "month field 'DEC-JAN': range 'DEC-JAN' must go", id="reversed-months"),
        pytest.param("0 0 * * */7", "day-of-week field '*/7': step must be between 1 and 6", id="weekday-step"),
        pytest.param("0 0 * * 7-0", "day-of-week field '7-0': range '7-0' must go from low to high", id="seven-zero"),
        pytest.param("0 0 * * SAT-MON", "range 'SAT-MON' must go from low to high", id="weekday-names-wrap"),
        pytest.param(
            "0 0 * * MONDAY", "day-of-week field 'MONDAY': unknown name 'MONDAY'; use SUN-SAT", id="long-name"
        ),
        pytest.param("0 0 * JANUARY *", "unknown name 'JANUARY'; use JAN-DEC", id="long-month-name"),
        pytest.param("0 MON * * *", "hour field 'MON': 'MON' is not a number", id="name-in-wrong-field"),
        pytest.param("*/60 * * * * *", "second field '*/60': step must be between 1 and 59", id="second-step"),
        pytest.param("-1 * * * *", "minute field '-1': '-1' is not a value, a range or a step", id="negative"),
        pytest.param("1- * * * *", "'1-' is not a value, a range or a step", id="open-range"),
        pytest.param("1,,2 * * * *", "minute field '1,,2': '' is not a value, a range or a step", id="empty-item"),
        pytest.param("*/5/2 * * * *", "'*/5/2' is not a value, a range or a step", id="double-step"),
        pytest.param("*-5 * * * *", "'*-5' is not a value, a range or a step", id="star-range"),
        pytest.param("1.5 * * * *", "character '.' is not allowed", id="decimal"),
        pytest.param("+1 * * * *", "character '+' is not allowed", id="plus-sign"),
        # int() would read these digits as 3; a cron field must not.
        pytest.param("\u0663 * * * *", "character '\u0663' is not allowed", id="arabic-indic-digit"),
        pytest.param("0\x00 * * * *", "character '\\x00' is not allowed", id="nul"),
        pytest.param(
            "? * * * *", "minute field '?': '?' is allowed only in the day-of-month and", id="question-minute"
        ),
        pytest.param("H/5 * * * *", "random 'R' and hashed 'H' values are not allowed", id="hashed-step"),
        pytest.param("0 0 * * r", "random 'R' and hashed 'H' values are not allowed", id="random-lower-case"),
        pytest.param("0 0 * * 5L", "day-of-week field '5L': '5L' is not a value", id="quartz-last-weekday"),
        pytest.param("0 0 LW * *", "day-of-month field 'LW'", id="last-weekday-of-month"),
        pytest.param("0 0 L-3 * *", "day-of-month field 'L-3'", id="offset-from-last"),
        pytest.param("0 0 1W,15W * *", "day-of-month field '1W,15W'", id="nearest-weekday-list"),
        pytest.param("0 0 32W * *", "day-of-month field '32W': value '32' must be between 1 and 31", id="nearest-32"),
        pytest.param("0 0 * * 1#6", "in '1#6' the week after '#' must be between 1 and 5", id="sixth-monday"),
        pytest.param("0 0 * * 8#1", "value '8' must be between 0 and 7", id="nth-of-day-8"),
        pytest.param("0 0 * * 1#1,5", "nth-weekday items ('1#2', 'L5') cannot be mixed", id="nth-mixed"),
        pytest.param("0 0 1 * 1#1", "day-of-week field '1#1': '#' and 'L' need a day-of-month field", id="nth-and-day"),
        pytest.param("0 0 L * L5", "day-of-week field 'L5': '#' and 'L' need a day-of-month", id="last-and-last"),
        pytest.param(
            "0 0 15W * 1", "day-of-month field '15W': 'W' needs a day-of-week field", id="nearest-and-weekday"
        ),
        pytest.param("@reboot", "@reboot is not supported", id="reboot"),
        pytest.param("@REBOOT", "@reboot is not supported", id="reboot-upper-case"),
        pytest.param("@fortnightly", "unknown macro; use one of @yearly, @annually, @monthly", id="unknown-macro"),
        pytest.param("@daily 0", "unknown macro", id="macro-with-extra-text"),
        pytest.param("0 0 31 4,6,9,11 *", "never matches a date", id="thirty-first-of-short-months"),
    ],
)
def test_rejects_with_a_message_naming_the_field(expression: str, message: str) -> None:
    text = rejection(expression)
    assert text.startswith(f"cron expression {expression!r}: ")
    assert message in text


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("*/59 * * * *", id="largest-minute-step"),
        pytest.param("0 */23 * * *", id="largest-hour-step"),
        pytest.param("0 0 */30 * *", id="largest-day-step"),
        pytest.param("0 0 1 */11 *", id="largest-month-step"),
        pytest.param("0 0 * * */6", id="largest-weekday-step"),
        pytest.param("*/59 * * * * *", id="largest-second-step"),
        pytest.param("05 09 * * *", id="leading-zeros"),
        pytest.param("0 0 * jan-Mar,OCT *", id="month-names-any-case"),
        pytest.param("0 0 * * mon-FRI/2", id="weekday-names-with-step"),
        pytest.param("0 0 * * 0-7", id="zero-to-seven"),
        pytest.param("0 0 * * SAT-SUN", id="weekend-by-name"),
        pytest.param("0 0 ? * MON", id="question-day-of-month"),
        pytest.param("0 0 1 * ?", id="question-day-of-week"),
        pytest.param("0 0 L * *", id="last-day"),
        pytest.param("0 0 1,15,L * *", id="last-day-in-list"),
        pytest.param("0 0 15W * *", id="nearest-weekday"),
        pytest.param("0 0 ? * MON#2", id="nth-weekday-name"),
        pytest.param("0 0 * * 1#1,5#3", id="nth-weekday-list"),
        pytest.param("0 0 * * L5,L1", id="last-weekdays"),
        pytest.param("0\t9 * * *\n", id="tabs-and-newline"),
        pytest.param("@DAILY", id="macro-upper-case"),
        pytest.param("  @Weekly ", id="macro-padded"),
        pytest.param("0 9 * * *".ljust(MAX_EXPRESSION_CHARS), id="exactly-the-limit"),
    ],
)
def test_accepts(expression: str) -> None:
    validate_cron(expression)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        pytest.param("@hourly", utc(2026, 1, 5, 10, 20), utc(2026, 1, 5, 11), id="hourly"),
        pytest.param("@daily", utc(2026, 1, 5, 10), utc(2026, 1, 6), id="daily"),
        pytest.param("@midnight", utc(2026, 1, 5, 10), utc(2026, 1, 6), id="midnight"),
        pytest.param("@weekly", utc(2026, 1, 5, 10), utc(2026, 1, 11), id="weekly-on-sunday"),
        pytest.param("@monthly", utc(2026, 1, 5, 10), utc(2026, 2, 1), id="monthly"),
        pytest.param("@yearly", utc(2026, 1, 5, 10), utc(2027, 1, 1), id="yearly"),
        pytest.param("@Annually", utc(2026, 1, 5, 10), utc(2027, 1, 1), id="annually"),
        # croniter alone reads an equal range as the whole field (every minute): Pacer means minute 5.
        pytest.param("5-5 * * * *", utc(2026, 1, 5, 10, 5), utc(2026, 1, 5, 11, 5), id="equal-range"),
        pytest.param("5/20 * * * *", utc(2026, 1, 5, 10, 45), utc(2026, 1, 5, 11, 5), id="start-and-step"),
        pytest.param("1-10/4,30 * * * *", utc(2026, 1, 5, 10, 9), utc(2026, 1, 5, 10, 30), id="list-of-steps"),
        pytest.param("0 0 * * 7", utc(2026, 1, 5), utc(2026, 1, 11), id="seven-is-sunday"),
        pytest.param("0 0 * * FRI-SUN", utc(2026, 1, 10, 12), utc(2026, 1, 11), id="range-ending-sunday"),
        pytest.param("0 0 * * SUN-SUN", utc(2026, 1, 5), utc(2026, 1, 11), id="sunday-to-sunday"),
        pytest.param("0 0 * * MON", utc(2026, 1, 26), utc(2026, 2, 2), id="weekday-only"),
        # Both day fields restricted: either may match (a Monday or the 1st), as in every cron.
        pytest.param("0 0 1 * MON", utc(2026, 1, 26), utc(2026, 2, 1), id="day-or-weekday"),
        pytest.param("0 0 ? * MON", utc(2026, 1, 26), utc(2026, 2, 2), id="question-is-any"),
        pytest.param("0 0 L * *", utc(2026, 2, 1), utc(2026, 2, 28), id="last-day-february"),
        pytest.param("0 0 L * *", utc(2028, 2, 1), utc(2028, 2, 29), id="last-day-leap-february"),
        pytest.param("0 0 15W * *", utc(2026, 2, 1), utc(2026, 2, 16), id="nearest-weekday-to-sunday"),
        pytest.param("0 0 15W * *", utc(2026, 8, 1), utc(2026, 8, 14), id="nearest-weekday-to-saturday"),
        pytest.param("0 0 * * 1#2", utc(2026, 1, 1), utc(2026, 1, 12), id="second-monday"),
        pytest.param("0 0 * * SUN#1", utc(2026, 1, 5), utc(2026, 2, 1), id="first-sunday"),
        pytest.param("0 0 * * L5", utc(2026, 1, 1), utc(2026, 1, 30), id="last-friday"),
        pytest.param("0 0 29 2 *", utc(2026, 1, 1), utc(2028, 2, 29), id="leap-day"),
    ],
)
def test_next_slot_follows_the_syntax(expression: str, after: datetime, expected: datetime) -> None:
    assert next_cron_time(expression, "", after) == expected


def test_macros_equal_their_expansions() -> None:
    after = utc(2026, 10, 24, 21, 17)
    pairs = [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *")]
    for macro, expansion in pairs:
        assert next_cron_time(macro, "Europe/Berlin", after) == next_cron_time(expansion, "Europe/Berlin", after)


def test_rejects_an_expression_over_the_limit() -> None:
    text = rejection("0 9 * * *".ljust(MAX_EXPRESSION_CHARS + 1))
    assert f"is {MAX_EXPRESSION_CHARS + 1} characters long; the limit is {MAX_EXPRESSION_CHARS}" in text


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("1," * 5_000 + "1 * * * *", id="huge-list"),
        pytest.param("9" * 150 + " * * * *", id="long-number"),
        pytest.param(",".join(str(minute) for minute in range(61)) + " * * * *", id="long-field-out-of-range"),
        pytest.param("*/" + "9" * 120 + " * * * *", id="long-step"),
        pytest.param("0 0 * * " + "X" * 150, id="long-name"),
        pytest.param("@" + "x" * 150, id="long-macro"),
    ],
)
def test_messages_quote_at_most_100_characters_of_the_input(expression: str) -> None:
    text = rejection(expression)
    assert expression[:ECHO_CHARS] in text
    assert_echo_is_cut(expression, text)
    assert len(text) < 4 * ECHO_CHARS


def test_timezone_messages_quote_at_most_100_characters() -> None:
    timezone = "Europe/" + "x" * 300
    text = rejection("0 9 * * *", timezone)
    assert timezone[:ECHO_CHARS] in text
    assert_echo_is_cut(timezone, text)


CRON_TOKENS = [*"0123456789*,-/?#LW@ \t", "59", "*/5", "1-5", "JAN", "MON", "SUN", "r", "H", "\u0663", "@daily"]
cron_like_text = st.lists(st.sampled_from(CRON_TOKENS), max_size=150).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(cron_like_text, st.text(max_size=400)))
def test_any_text_is_accepted_or_refused_with_a_short_cron_error(text: str) -> None:
    try:
        validate_cron(text)
    except CronError as error:
        refusal = error
    else:
        return
    assert refusal.field == "expression"
    assert_echo_is_cut(text, str(refusal))


@dataclass(frozen=True)
class Field:
    """A generated field: its text and the values it must match."""

    text: str
    values: frozenset[int]


@st.composite
def field_items(draw: st.DrawFn, low: int, high: int, names: tuple[str, ...], highest_used: int) -> Field:
    """One valid item, naming values up to `highest_used`: a value, a range, either with a step, or `*` with a step."""
    step = draw(st.integers(1, high - low))
    first, last = sorted(draw(st.lists(st.integers(low, highest_used), min_size=2, max_size=2)))
    if bool(names) and draw(st.booleans()):
        return Field(f"{names[first - low]}-{names[last - low]}", frozenset(range(first, last + 1)))
    forms = [
        Field(str(first), frozenset({first})),
        Field(f"{first}-{last}", frozenset(range(first, last + 1))),
        Field(f"{first}-{last}/{step}", frozenset(range(first, last + 1, step))),
        Field(f"*/{step}", frozenset(range(low, high + 1, step))),
    ]
    if highest_used == high:
        forms.append(Field(f"{first}/{step}", frozenset(range(first, high + 1, step))))
    return draw(st.sampled_from(forms))


def fields(
    low: int, high: int, names: tuple[str, ...] = (), highest_used: int | None = None
) -> st.SearchStrategy[Field]:
    items = st.lists(
        field_items(low, high, names, high if highest_used is None else highest_used), min_size=1, max_size=3
    )
    listed = items.map(
        lambda parts: Field(",".join(p.text for p in parts), frozenset().union(*(p.values for p in parts)))
    )
    return st.one_of(st.just(Field("*", frozenset(range(low, high + 1)))), listed)


MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
valid_fields = st.tuples(
    st.one_of(st.just(None), fields(0, 59)),
    fields(0, 59),
    fields(0, 23),
    fields(1, 31, highest_used=28),  # days every month has, so that any combination fires
    fields(1, 12, MONTHS),
    fields(0, 6, WEEKDAYS),
)


def matches(parts: tuple[Field | None, Field, Field, Field, Field, Field], slot: datetime) -> bool:
    """Whether `slot` (UTC) fits the fields; the two day fields combine with OR when both are restricted."""
    second, minute, hour, day, month, weekday = parts
    on_day = slot.day in day.values
    on_weekday = slot.isoweekday() % 7 in weekday.values
    either_day = on_day or on_weekday if "*" not in (day.text, weekday.text) else on_day and on_weekday
    return (
        slot.second in (second.values if second is not None else {0})
        and slot.minute in minute.values
        and slot.hour in hour.values
        and slot.month in month.values
        and either_day
    )


@settings(max_examples=150, deadline=None)
@given(valid_fields, st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)))
def test_valid_expressions_are_accepted_and_step_to_a_matching_slot(
    parts: tuple[Field | None, Field, Field, Field, Field, Field], after: datetime
) -> None:
    expression = " ".join(part.text for part in parts if part is not None)
    validate_cron(expression)
    slot = next_cron_time(expression, "", after)
    assert slot > after
    assert slot.tzinfo == UTC
    assert matches(parts, slot)
