"""Simulated time of a compressed replay: `compression` simulated seconds pass in every real second."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


def wall_now() -> datetime:
    """The wall clock, aware UTC (what Pacer's services use too)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class SimClock:
    """Maps wall-clock moments to simulated seconds since `start` and back."""

    start: datetime
    compression: float
    wall: Callable[[], datetime] = field(default=wall_now, compare=False)

    @classmethod
    def starting_now(cls, compression: float, wall: Callable[[], datetime] = wall_now) -> SimClock:
        """A clock whose simulated second 0 is now."""
        return cls(wall(), compression, wall)

    def now_s(self) -> float:
        """Simulated seconds since the start."""
        return self.sim_s(self.wall())

    def sim_s(self, moment: datetime) -> float:
        """The simulated second at which the wall-clock `moment` falls."""
        return (moment - self.start).total_seconds() * self.compression

    def moment(self, sim_s: float) -> datetime:
        """The wall-clock moment of simulated second `sim_s`."""
        return self.start + timedelta(seconds=sim_s / self.compression)

    def real_s(self, sim_s: float) -> float:
        """How many real seconds `sim_s` simulated seconds take."""
        return sim_s / self.compression

    def real_ms(self, sim_ms: int) -> int:
        """A simulated duration in whole real milliseconds (at least 1)."""
        return max(1, round(sim_ms / self.compression))


def mmss(sim_s: float) -> str:
    """Simulated seconds as `mm:ss` (negative times clamp to 00:00)."""
    whole = max(0, int(sim_s))
    return f"{whole // 60:02d}:{whole % 60:02d}"
