"""The scheduler's measurements, declared in one place; plain counters until a Prometheus endpoint exposes them."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

# Upper bounds (seconds) of the lateness histogram, shaped like the future `pacer_dispatch_lateness_seconds`.
LATENESS_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECENT_SAMPLES = 1000


@dataclass
class Histogram:
    """Cumulative-style histogram: `counts[i]` observations <= `bounds[i]`, the last slot for the rest."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: int = 0
    sum: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += 1
        self.sum += value


@dataclass
class SchedulerMetrics:
    """What the scheduler counts: dispatch lateness (histogram plus a bounded window of recent samples), runs
    dispatched, re-dispatched after a disconnect and dropped because their lease had expired, results
    reported and failed report attempts."""

    lateness_s: Histogram = field(default_factory=lambda: Histogram(LATENESS_BUCKETS_S))
    recent_lateness_s: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_SAMPLES))
    dispatched: int = 0
    redispatched: int = 0
    expired: int = 0
    results_reported: int = 0
    report_failures: int = 0

    def dispatched_late(self, lateness_s: float) -> None:
        """Record one dispatch, `lateness_s` after its due time (negative when early)."""
        self.dispatched += 1
        self.lateness_s.observe(lateness_s)
        self.recent_lateness_s.append(lateness_s)
