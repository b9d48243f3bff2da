"""What the target saw: one line of nginx's access log per request, and the figures a user would measure from it.

The executor's own clock says when it began a call; only the target can say when the call arrived, whether a run
arrived twice, and whether every slot that fell due was executed. Both Pacer and the peer put the slot a call was
made for in `X-Pacer-Scheduled-For` and a run id in `X-Pacer-Run-Id`, so one parser serves both.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bench.stats import percentile

# The nginx log_format the target writes: tab-separated, arrival = $msec - $request_time (both in seconds, ms
# resolution). nginx writes "-" for a header that is missing.
LOG_FORMAT = "$msec\\t$request_time\\t$http_x_pacer_run_id\\t$http_x_pacer_endpoint_id\\t$http_x_pacer_scheduled_for"


@dataclass(frozen=True)
class Arrival:
    """One request at the target: which run, of which endpoint, due when, arrived when (epoch milliseconds)."""

    run_id: str
    endpoint_id: str
    scheduled_ms: float
    arrived_ms: float

    @property
    def lateness_ms(self) -> float:
        return self.arrived_ms - self.scheduled_ms


def parse_stamp_ms(stamp: str) -> float:
    """An RFC 3339 UTC time such as 2026-01-05T10:00:00.000Z as epoch milliseconds."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000


def parse_line(line: str) -> Arrival | None:
    """One access-log line as an Arrival; None for a request that is not a scheduled run (no slot header)."""
    fields = line.rstrip("\n").split("\t")
    if len(fields) != 5 or fields[4] in ("", "-"):
        return None
    msec, request_time, run_id, endpoint_id, scheduled = fields
    try:
        arrived_ms = (float(msec) - float(request_time)) * 1000
        return Arrival(run_id, endpoint_id, parse_stamp_ms(scheduled), arrived_ms)
    except ValueError:
        return None


def parse_lines(lines: Iterable[str]) -> list[Arrival]:
    return [arrival for arrival in map(parse_line, lines) if arrival is not None]


@dataclass(frozen=True)
class Window:
    """A measurement window in epoch milliseconds, [start_ms, end_ms)."""

    start_ms: float
    end_ms: float

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000

    def holds(self, moment_ms: float) -> bool:
        return self.start_ms <= moment_ms < self.end_ms


@dataclass(frozen=True)
class TargetFigures:
    """What the target measured over one window; see `measure`."""

    arrived_per_s: float
    executed: int
    due: float
    lateness_p50_ms: float
    lateness_p95_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    doubled_runs: int
    doubled_slots: int

    @property
    def executed_share(self) -> float:
        """Runs executed per due slot: 1.0 when every slot that fell due in the window arrived at the target."""
        return self.executed / self.due if self.due else math.nan


def due_slots(arrivals: Sequence[Arrival], window: Window, endpoints: int, interval_ms: float) -> float:
    """How many slots fell due in `window`: for each endpoint seen, the points of its grid (its first slot seen plus
    whole intervals) inside the window; an endpoint never seen counts window / interval."""
    first: dict[str, float] = {}
    for arrival in arrivals:
        if arrival.scheduled_ms < first.get(arrival.endpoint_id, math.inf):
            first[arrival.endpoint_id] = arrival.scheduled_ms
    due = 0.0
    for phase_ms in first.values():
        due += _grid_points(phase_ms, window, interval_ms)
    return due + max(0, endpoints - len(first)) * window.seconds * 1000 / interval_ms


def _grid_points(phase_ms: float, window: Window, interval_ms: float) -> int:
    """How many of phase + k * interval (k >= 0) lie in the window."""
    first_k = max(0, math.ceil((window.start_ms - phase_ms) / interval_ms))
    last_k = math.ceil((window.end_ms - phase_ms) / interval_ms) - 1
    return max(0, last_k - first_k + 1)


def measure(arrivals: Sequence[Arrival], window: Window, endpoints: int, interval_ms: float) -> TargetFigures:
    """The window's figures: runs/s arrived in it; runs executed (distinct run ids due in it) against slots due in
    it; lateness (arrival - slot) of the runs due in it; run ids that arrived more than once, and slots (endpoint
    and scheduled time) that arrived under more than one run id, over the whole log."""
    due_in = [a for a in arrivals if window.holds(a.scheduled_ms)]
    first_of_run: dict[str, Arrival] = {}
    for arrival in due_in:
        first_of_run.setdefault(arrival.run_id, arrival)
    late = [a.lateness_ms for a in first_of_run.values()]
    return TargetFigures(
        arrived_per_s=sum(1 for a in arrivals if window.holds(a.arrived_ms)) / window.seconds,
        executed=len(first_of_run),
        due=due_slots(arrivals, window, endpoints, interval_ms),
        lateness_p50_ms=percentile(late, 0.50),
        lateness_p95_ms=percentile(late, 0.95),
        lateness_p99_ms=percentile(late, 0.99),
        lateness_max_ms=max(late, default=math.nan),
        doubled_runs=doubled_runs(arrivals),
        doubled_slots=doubled_slots(arrivals),
    )


def doubled_runs(arrivals: Iterable[Arrival]) -> int:
    """Run ids that arrived at the target more than once."""
    return sum(1 for count in Counter(a.run_id for a in arrivals).values() if count > 1)


def doubled_slots(arrivals: Iterable[Arrival]) -> int:
    """Slots (endpoint, scheduled time) that arrived under more than one run id: the same due slot executed twice."""
    runs_of_slot: dict[tuple[str, float], set[str]] = {}
    for arrival in arrivals:
        runs_of_slot.setdefault((arrival.endpoint_id, arrival.scheduled_ms), set()).add(arrival.run_id)
    return sum(1 for runs in runs_of_slot.values() if len(runs) > 1)
