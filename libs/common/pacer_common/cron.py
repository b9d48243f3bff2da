"""Cron stepping: validate expressions and find the next slot, evaluated in the endpoint's IANA timezone.

Expressions have 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, or are one of the
macros @yearly (@annually), @monthly, @weekly, @daily (@midnight) and @hourly. Month and weekday names (JAN, MON) are
allowed. Times go in and come out as aware datetimes; the wall clock is never read.

Daylight saving. When the clocks go back, an hour of wall-clock time happens twice. An expression whose hour field
names particular hours (`30 2 * * *`, `0 1-3 * * *`, `0 */2 * * *`) is about wall-clock times, so each one runs once:
in the first pass, as Vixie cron does. An expression whose hour field covers all 24 hours (`0 * * * *`,
`*/30 * * * *`) is about elapsed time, so both passes get their runs. When the clocks go forward, wall-clock times in
the skipped hour do not exist: an expression naming particular hours runs once at the end of the gap, one covering
every hour just carries on (the skipped hour was never there).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from pacer_common.limits import MAX_CRON_EXPRESSION_CHARS

MAX_EXPRESSION_CHARS: Final = MAX_CRON_EXPRESSION_CHARS  # an API limit, declared with the others
# Error messages quote the user's text, but never more than this much of it: a long input is not echoed whole.
_ECHO_CHARS: Final = 100
_FIELD_COUNTS: Final = (5, 6)
# Validation proves an expression can fire by stepping once from a fixed moment, never from the wall clock.
_VALIDATION_START: Final = datetime(2000, 1, 1, tzinfo=UTC)
# Present in the zoneinfo directory on many hosts but not IANA names: they alias whatever zone the host is set to,
# so the same endpoint would fire at different times on different machines.
_HOST_DEPENDENT_ZONES: Final = frozenset({"localtime"})

_MACROS: Final[Mapping[str, str]] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Checked before anything else, so every later message quotes plain printable ASCII.
_DISALLOWED_CHARACTER: Final = re.compile(r"[^0-9A-Za-z*,/?#@ \t\r\n-]")
# Names and the letters L and W may be written in any case; messages quote them as the user wrote them.
_TOKEN: Final = r"[0-9]+|[A-Za-z]+"
_PLAIN_ITEM: Final = re.compile(rf"(?:(?P<star>\*)|(?P<low>{_TOKEN})(?:-(?P<high>{_TOKEN}))?)(?:/(?P<step>[0-9]+))?")
_NTH_WEEKDAY: Final = re.compile(rf"(?P<day>{_TOKEN})#(?P<week>[0-9]+)")
_LAST_WEEKDAY: Final = re.compile(r"[Ll](?P<day>[0-9]+)")
_NEAREST_WEEKDAY: Final = re.compile(r"(?P<day>[0-9]+)[Ww]")
_ALL_HOURS: Final = frozenset(range(24))


class CronError(ValueError):
    """An unusable cron expression or timezone; `field` is "expression" or "timezone", the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class _FieldSpec:
    """One position of an expression: its name in messages, its numeric range and its names (JAN=1, SUN=0).

    `cycle_end` is the last value `*` and `N/STEP` run to: the same as `high` except for weekdays, whose 7 is only a
    second name for Sunday (0).
    """

    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)
    cycle_end: int | None = None

    @property
    def end(self) -> int:
        return self.high if self.cycle_end is None else self.cycle_end

    @property
    def span(self) -> int:
        """The largest useful step: a step of `span` from the low end still reaches the end of the cycle."""
        return self.end - self.low


_SECOND: Final = _FieldSpec("second", 0, 59)
_MINUTE: Final = _FieldSpec("minute", 0, 59)
_HOUR: Final = _FieldSpec("hour", 0, 23)
_DAY_OF_MONTH: Final = _FieldSpec("day-of-month", 1, 31)
_MONTH_NAMES: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH: Final = _FieldSpec("month", 1, 12, {name: number for number, name in enumerate(_MONTH_NAMES, start=1)})
_WEEKDAY_NAMES: Final = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# 7 is a second name for Sunday (0): values are folded to 0-6 once parsed.
_DAY_OF_WEEK: Final = _FieldSpec(
    "day-of-week", 0, 7, {name: number for number, name in enumerate(_WEEKDAY_NAMES)}, cycle_end=6
)
_LAYOUTS: Final[Mapping[int, tuple[_FieldSpec, ...]]] = {
    5: (_MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK),
    6: (_SECOND, _MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK),
}


@dataclass(frozen=True)
class _Field:
    """A validated field: as written, the plain values it names, and its `L`, `15W` and `1#2` items for croniter.

    `unrestricted` is a field written as `*` or `?`. Day-of-month and day-of-week combine with OR when both are
    restricted and with AND otherwise, so `1-31` and `*` are different days fields even though they name the same
    values.
    """

    text: str
    values: frozenset[int]
    unrestricted: bool = False
    specials: tuple[str, ...] = ()
    nearest_weekday: bool = False
    nth_weekday: bool = False

    def croniter_text(self) -> str:
        """The field as plain numbers, which croniter cannot misread (it takes `5-5` for every value)."""
        if self.unrestricted:
            return "*"
        return ",".join([*(str(value) for value in sorted(self.values)), *self.specials])


@dataclass(frozen=True)
class _Schedule:
    """A validated expression: as written, as croniter steps it, and whether its hour field covers all 24 hours."""

    expression: str
    text: str
    every_hour: bool


class _FieldProblem(Exception):
    """What is wrong with one field; turned into a CronError that also names the field and the expression."""


def validate_cron(expression: str, timezone: str = "") -> None:
    """Raise CronError unless `expression` and `timezone` ("" = UTC, else an IANA name) can schedule runs.

    Rejects empty, garbage or over-long (more than MAX_EXPRESSION_CHARS) text, field counts other than 5 or 6, values,
    ranges and steps outside a field's range, @reboot and unknown macros, croniter's random "R" and hashed "H" fields,
    and expressions that can never fire (such as 30 February). Messages name the field and quote at most 100
    characters of the user's text.
    """
    _next_slot(_parse(expression), _zone(timezone), _VALIDATION_START)


def next_cron_time(expression: str, timezone: str, after: datetime) -> datetime:
    """Return the first slot of `expression` strictly after the aware datetime `after`, as aware UTC.

    Slots are evaluated in `timezone` ("" = UTC), so a local 09:00 stays 09:00 across DST changes; the module
    docstring gives the rules for the repeated and the skipped hour. A time exactly on a slot yields the following
    slot. Raises CronError for an unusable expression or timezone, ValueError for a naive `after`.
    """
    if after.tzinfo is None:
        # A naive time would be read as the host's local time: a hidden dependency on the machine.
        raise ValueError("next_cron_time needs an aware datetime for `after`")
    return _next_slot(_parse(expression), _zone(timezone), after)


def _zone(timezone: str) -> tzinfo:
    """Resolve an IANA name ("" = UTC) or raise CronError(field="timezone")."""
    if timezone == "":
        return UTC
    if timezone in _HOST_DEPENDENT_ZONES:
        raise CronError(
            "timezone", f"timezone {_echo(timezone)} depends on the host; use an IANA name like 'Europe/Berlin'"
        )
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # ZoneInfo raises KeyError for unknown names, ValueError for paths and non-zone files, OSError for folders.
        raise CronError("timezone", f"unknown IANA timezone {_echo(timezone)}") from exc


def _echo(text: str) -> str:
    """`text` quoted for a message, cut to _ECHO_CHARS characters (marked with "...") when longer."""
    if len(text) <= _ECHO_CHARS:
        return repr(text)
    return f"{text[:_ECHO_CHARS]!r}..."


def _expression_error(expression: str, problem: str) -> CronError:
    return CronError("expression", f"cron expression {_echo(expression)}: {problem}")


# --- Parsing -------------------------------------------------------------------------------------------------------


def _parse(expression: str) -> _Schedule:
    """Check `expression` field by field (croniter accepts too much) and return what stepping needs."""
    fields = _fields(expression)
    layout = _LAYOUTS[len(fields)]
    parsed = [_parse_field(expression, spec, text) for spec, text in zip(layout, fields, strict=True)]
    _check_day_fields(expression, parsed[-3], parsed[-1])
    text = " ".join(field.croniter_text() for field in parsed)
    return _Schedule(expression, text, every_hour=parsed[-4].values == _ALL_HOURS)


def _fields(expression: str) -> list[str]:
    """The expression's fields, a macro expanded; raise CronError for over-long text, odd characters or a bad count."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise _expression_error(
            expression, f"is {len(expression)} characters long; the limit is {MAX_EXPRESSION_CHARS}"
        )
    if (odd := _DISALLOWED_CHARACTER.search(expression)) is not None:
        raise _expression_error(expression, f"character {odd[0]!r} is not allowed")
    fields = _expand_macro(expression).split()
    if len(fields) not in _FIELD_COUNTS:
        raise _expression_error(
            expression,
            f"has {len(fields)} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (second first)",
        )
    return fields


def _expand_macro(expression: str) -> str:
    """The 5-field text of a macro such as @daily (any case); other text is returned unchanged."""
    text = expression.strip()
    if not text.startswith("@"):
        return expression
    macro = text.lower()
    if macro == "@reboot":
        raise _expression_error(
            expression, "@reboot is not supported: Pacer runs endpoints on a clock, not when a machine starts"
        )
    if macro not in _MACROS:
        raise _expression_error(expression, f"unknown macro; use one of {', '.join(_MACROS)}")
    return _MACROS[macro]


def _parse_field(expression: str, spec: _FieldSpec, text: str) -> _Field:
    try:
        return _field(spec, text)
    except _FieldProblem as problem:
        raise _expression_error(expression, f"{spec.name} field {_echo(text)}: {problem}") from None


def _field(spec: _FieldSpec, text: str) -> _Field:
    """Parse one field: `*`, `?`, a nearest-weekday `15W`, or a list of items."""
    if text in ("*", "?"):
        if text == "?" and spec not in (_DAY_OF_MONTH, _DAY_OF_WEEK):
            raise _FieldProblem("'?' is allowed only in the day-of-month and day-of-week fields")
        return _Field(text, frozenset(range(spec.low, spec.end + 1)), unrestricted=True)
    nearest = _NEAREST_WEEKDAY.fullmatch(text)
    if spec is _DAY_OF_MONTH and nearest is not None:
        day = _value(spec, nearest["day"])
        return _Field(text, frozenset(), specials=(f"{day}W",), nearest_weekday=True)
    return _list(spec, text)


def _list(spec: _FieldSpec, text: str) -> _Field:
    """Parse comma-separated items; in the day-of-week field, nth-weekday items (`1#2`, `L5`) stand only together."""
    items = text.split(",")
    values: set[int] = set()
    specials: list[str] = []
    for item in items:
        if spec is _DAY_OF_WEEK and (nth := _nth_weekday(item)) is not None:
            specials.append(nth)
        elif spec is _DAY_OF_MONTH and item in ("L", "l"):
            specials.append("L")
        else:
            values.update(_plain_item(spec, item))
    nth_weekday = spec is _DAY_OF_WEEK and bool(specials)
    if nth_weekday and values:
        raise _FieldProblem("nth-weekday items ('1#2', 'L5') cannot be mixed with other days")
    return _Field(text, _folded(spec, values), specials=tuple(dict.fromkeys(specials)), nth_weekday=nth_weekday)


def _folded(spec: _FieldSpec, values: Iterable[int]) -> frozenset[int]:
    """Weekday 7 becomes 0: both are Sunday."""
    return frozenset(value % 7 for value in values) if spec is _DAY_OF_WEEK else frozenset(values)


def _nth_weekday(item: str) -> str | None:
    """`1#2` (second Monday) or `L5` (last Friday) in croniter's numeric form; raise for a bad one; else None."""
    if (nth := _NTH_WEEKDAY.fullmatch(item)) is not None:
        day = _value(_DAY_OF_WEEK, nth["day"]) % 7
        if not 1 <= int(nth["week"]) <= 5:
            raise _FieldProblem(f"in {_echo(item)} the week after '#' must be between 1 and 5")
        return f"{day}#{int(nth['week'])}"
    if (last := _LAST_WEEKDAY.fullmatch(item)) is not None:
        return f"L{_value(_DAY_OF_WEEK, last['day']) % 7}"
    return None


def _plain_item(spec: _FieldSpec, item: str) -> range:
    """The values of `*`, `N`, `N-M`, each optionally with `/STEP`, or of `N/STEP` (N to the field's end)."""
    match = _PLAIN_ITEM.fullmatch(item)
    if match is None:
        raise _FieldProblem(f"{_echo(item)} is not a value, a range or a step")
    step = _step(spec, match["step"])
    if match["star"] is not None:
        return range(spec.low, spec.end + 1, step)
    low = _value(spec, match["low"])
    if match["high"] is not None:
        high = _range_end(spec, low, match["high"])
    else:
        high = spec.end if match["step"] is not None else low
    if low > high:
        raise _FieldProblem(f"range {_echo(item)} must go from low to high")
    return range(low, high + 1, step)


def _step(spec: _FieldSpec, text: str | None) -> int:
    if text is None:
        return 1
    if not 1 <= int(text) <= spec.span:
        raise _FieldProblem(f"step must be between 1 and {spec.span}")
    return int(text)


def _range_end(spec: _FieldSpec, low: int, token: str) -> int:
    """A range's high end; SUN after another day ends a weekday range as 7, so FRI-SUN means Friday to Sunday."""
    if spec is _DAY_OF_WEEK and token.upper() == "SUN" and low > 0:
        return 7
    return _value(spec, token)


def _value(spec: _FieldSpec, token: str) -> int:
    """A number within the field's range, or one of its names."""
    if token.isdigit():
        number = int(token)
        if not spec.low <= number <= spec.high:
            raise _FieldProblem(f"value {_echo(token)} must be between {spec.low} and {spec.high}")
        return number
    if token.upper() in spec.names:
        return spec.names[token.upper()]
    if token in ("R", "r", "H", "h"):
        # croniter's "R" draws a new random value on every parse, so the schedule would move each time it is read.
        raise _FieldProblem("random 'R' and hashed 'H' values are not allowed")
    if spec.names:
        names = list(spec.names)
        raise _FieldProblem(f"unknown name {_echo(token)}; use {names[0]}-{names[-1]}")
    raise _FieldProblem(f"{_echo(token)} is not a number")


def _check_day_fields(expression: str, day_of_month: _Field, day_of_week: _Field) -> None:
    """`15W` and nth weekdays only combine with an unrestricted other day field: croniter mixes them inconsistently."""
    if day_of_month.nearest_weekday and not day_of_week.unrestricted:
        raise _expression_error(
            expression, f"day-of-month field {_echo(day_of_month.text)}: 'W' needs a day-of-week field of '*' or '?'"
        )
    if day_of_week.nth_weekday and not day_of_month.unrestricted:
        raise _expression_error(
            expression,
            f"day-of-week field {_echo(day_of_week.text)}: '#' and 'L' need a day-of-month field of '*' or '?'",
        )


# --- Stepping ------------------------------------------------------------------------------------------------------
# croniter steps naive wall-clock times only; which instants those times are, across DST changes, is decided here.
# Its own handling of aware times misses runs in zones whose clocks move by half an hour (Australia/Lord_Howe).

_SECOND_STEP: Final = timedelta(seconds=1)


def _next_slot(schedule: _Schedule, zone: tzinfo, after: datetime) -> datetime:
    """The first slot strictly after the aware `after`, as aware UTC, by the rules of the module docstring."""
    # Through UTC with fold=0, so that `fold` says which pass of a repeated hour `after` is in, whatever it came with.
    local = after.astimezone(UTC).replace(fold=0).astimezone(zone)
    if schedule.every_hour:
        return _next_by_elapsed_time(schedule, zone, local)
    return _next_by_wall_clock(schedule, zone, local)


def _next_by_wall_clock(schedule: _Schedule, zone: tzinfo, local: datetime) -> datetime:
    """Each matching wall-clock time runs once: a repeated one in its first pass, a skipped one when the gap ends."""
    start = _wall(local)
    if local.fold == 1:
        # In the second pass of a repeated hour, whose wall-clock times have all had their turn already.
        _, repeat_end = _repeat(start, zone)
        start = _wall(repeat_end.astimezone(zone)) - _SECOND_STEP
    wall = _next_wall(schedule, start)
    if not _exists(wall, zone):
        return _gap_end(wall, zone)
    return _instant(wall, zone, fold=0)


def _next_by_elapsed_time(schedule: _Schedule, zone: tzinfo, local: datetime) -> datetime:
    """Every instant whose wall-clock time matches: both passes of a repeated hour, nothing for a skipped one."""
    after = local.astimezone(UTC)
    wall = _next_wall(schedule, _wall(local))
    if not _exists(wall, zone):
        wall = _next_wall(schedule, _wall(_gap_end(wall, zone).astimezone(zone)) - _SECOND_STEP)
    slot = min(instant for instant in _instants(wall, zone) if instant > after)
    if local.fold == 0 and _is_repeated(_wall(local), zone):
        # In the first pass of a repeated hour: its second pass, from the start of the repeat, is still ahead.
        repeat_start, _ = _repeat(_wall(local), zone)
        again = _next_wall(schedule, _wall(repeat_start.astimezone(zone)) - _SECOND_STEP)
        if again <= _wall(local):
            slot = min(slot, _instant(again, zone, fold=1))
    return slot


def _next_wall(schedule: _Schedule, wall: datetime) -> datetime:
    """The first naive wall-clock time strictly after the naive `wall` that the expression matches."""
    try:
        # croniter's own 6-field layout puts seconds last; ours puts them first, as Quartz and Spring do.
        found: datetime = croniter(schedule.text, wall, second_at_beginning=True).get_next(datetime)
    except CroniterBadDateError as exc:
        raise _expression_error(schedule.expression, "never matches a date") from exc
    except CroniterError as exc:
        # _parse accepts only what croniter understands; this is a safety net, so it does not echo croniter's text.
        raise _expression_error(schedule.expression, "is not supported") from exc
    return found


def _wall(local: datetime) -> datetime:
    return local.replace(tzinfo=None, fold=0)


def _instant(wall: datetime, zone: tzinfo, fold: int) -> datetime:
    """The UTC instant of a naive wall-clock time; `fold` picks the pass of a repeated time (PEP 495)."""
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def _instants(wall: datetime, zone: tzinfo) -> tuple[datetime, ...]:
    """The one or two UTC instants at which the clocks in `zone` show the existing wall-clock time `wall`."""
    return tuple(sorted({_instant(wall, zone, fold=0), _instant(wall, zone, fold=1)}))


def _exists(wall: datetime, zone: tzinfo) -> bool:
    """False for a wall-clock time that the clocks skip when they go forward."""
    return _wall(_instant(wall, zone, fold=0).astimezone(zone)) == wall


def _is_repeated(wall: datetime, zone: tzinfo) -> bool:
    return _exists(wall, zone) and len(_instants(wall, zone)) == 2


def _repeat(wall: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """For a wall-clock time that happens twice: the UTC instants at which the repeated span starts and ends."""
    first, second = _instants(wall, zone)
    start = _offset_change(zone, first, second)
    return start, start + (second - first)


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
    """For a wall-clock time that the clocks skip: the UTC instant at which they jump over it."""
    # PEP 495: fold=1 reads a skipped time with the offset after the change (an instant before it), fold=0 with the
    # offset before the change (an instant after it).
    return _offset_change(zone, _instant(wall, zone, fold=1), _instant(wall, zone, fold=0))


def _offset_change(zone: tzinfo, before: datetime, after: datetime) -> datetime:
    """The UTC instant in (before, after] at which `zone`'s offset changes, given exactly one change there."""
    base = before.replace(microsecond=0)
    offset = base.astimezone(zone).utcoffset()
    # Zone changes fall on whole seconds, so a binary search over seconds finds the instant exactly.
    low, high = 0, math.ceil((after - base).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (base + timedelta(seconds=middle)).astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return base + timedelta(seconds=high)
