"""Cron stepping: validate expressions and find the next slot, evaluated in the endpoint's IANA timezone.

Expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first. Month and weekday
names (JAN, MON) are allowed. Times go in and come out as aware datetimes; the wall clock is never read.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

_FIELD_COUNTS = (5, 6)
# Validation proves an expression can fire by stepping once from a fixed moment, never from the wall clock.
_VALIDATION_START = datetime(2000, 1, 1, tzinfo=UTC)
# Present in the zoneinfo directory on many hosts but not IANA names: they alias whatever zone the host is set to,
# so the same endpoint would fire at different times on different machines.
_HOST_DEPENDENT_ZONES = frozenset({"localtime"})


class CronError(ValueError):
    """An unusable cron expression or timezone; `field` is "expression" or "timezone", the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def validate_cron(expression: str, timezone: str = "") -> None:
    """Raise CronError unless `expression` and `timezone` ("" = UTC, else an IANA name) can schedule runs.

    Rejects empty or garbage text, field counts other than 5 or 6, out-of-range values, croniter's random "R" and
    hashed "H" fields, and expressions that can never fire (such as 30 February).
    """
    _first_slot_after(expression, _zone(timezone), _VALIDATION_START)


def next_cron_time(expression: str, timezone: str, after: datetime) -> datetime:
    """Return the first slot of `expression` strictly after the aware datetime `after`, as aware UTC.

    Slots are evaluated in `timezone` ("" = UTC), so a local 09:00 stays 09:00 across DST changes. A time exactly on
    a slot yields the following slot. Raises CronError for an unusable expression or timezone, ValueError for a naive
    `after`.
    """
    if after.tzinfo is None:
        # A naive time would be read as the host's local time: a hidden dependency on the machine.
        raise ValueError("next_cron_time needs an aware datetime for `after`")
    return _first_slot_after(expression, _zone(timezone), after)


def _zone(timezone: str) -> tzinfo:
    """Resolve an IANA name ("" = UTC) or raise CronError(field="timezone")."""
    if timezone == "":
        return UTC
    if timezone in _HOST_DEPENDENT_ZONES:
        raise CronError("timezone", f"timezone {timezone!r} depends on the host; use an IANA name like 'Europe/Berlin'")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # ZoneInfo raises KeyError for unknown names, ValueError for paths and non-zone files, OSError for folders.
        raise CronError("timezone", f"unknown IANA timezone {timezone!r}") from exc


def _normalized_fields(expression: str) -> str:
    """Return the expression with single spaces; raise CronError for a wrong field count or a random field."""
    fields = expression.split()
    if len(fields) not in _FIELD_COUNTS:
        raise CronError(
            "expression",
            f"cron expression {expression!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 (second first)",
        )
    if any(field[:1] in ("R", "r") for field in fields):
        # croniter's "R" draws a random value on every parse: the schedule would move each time it is evaluated.
        raise CronError("expression", f"cron expression {expression!r} uses random 'R' fields, which are not allowed")
    return " ".join(fields)


def _first_slot_after(expression: str, zone: tzinfo, after: datetime) -> datetime:
    """Step croniter once from `after` seen in `zone`; croniter's get_next is already strictly after its start."""
    normalized = _normalized_fields(expression)
    try:
        # croniter's own 6-field layout puts seconds last; ours puts them first, as Quartz and Spring do.
        slots = croniter(normalized, after.astimezone(zone), second_at_beginning=True)
        slot: datetime = slots.get_next(datetime)
    except CroniterBadDateError as exc:
        raise CronError("expression", f"cron expression {expression!r} never matches a date") from exc
    except CroniterError as exc:
        raise CronError("expression", f"invalid cron expression {expression!r}: {exc}") from exc
    return slot.astimezone(UTC)
