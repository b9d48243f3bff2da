"""Time as an injected dependency: a system clock for services, a fake one for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of the current time, always timezone-aware UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FakeClock:
    """A clock that moves only when told to; thread-safe enough for tests."""

    current: datetime = field(default_factory=lambda: datetime(2026, 1, 5, 10, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float = 0.0, *, minutes: float = 0.0, hours: float = 0.0) -> datetime:
        """Move forward by the given amount and return the new time."""
        self.current += timedelta(seconds=seconds, minutes=minutes, hours=hours)
        return self.current

    def set(self, moment: datetime) -> None:
        """Jump to `moment`, which must be timezone-aware."""
        if moment.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self.current = moment.astimezone(UTC)
