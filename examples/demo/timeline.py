"""The live timeline: events from the scenario, the agent and the shop, printed in simulated time and in order.

Events arrive from two threads (the shop's and the demo's own); each is held back a moment so that events that
arrive slightly out of order are still printed sorted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from examples.demo.clock import mmss
from examples.demo.shop import Hit
from examples.flash_sale import ENDPOINTS

TIER = {spec.name: spec.tier for spec in ENDPOINTS}
INTERVAL_S = {spec.name: spec.interval_ms / 1000 for spec in ENDPOINTS}
CADENCE_CHANGE = 0.25  # a gap this much off the announced cadence is a new cadence


@dataclass(frozen=True, order=True)
class Event:
    """Something that happened at simulated second `sim_s`; `source` says who saw it."""

    sim_s: float
    source: str
    text: str

    def line(self) -> str:
        """The event as a timeline line."""
        return f"{mmss(self.sim_s)}  {self.source:<6} {self.text}"


@dataclass
class Timeline:
    """Collects events from any thread; `flush(upto_s)` prints those at or before `upto_s`, sorted."""

    write: Callable[[str], None]
    _pending: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sim_s: float, source: str, text: str) -> None:
        """Queue an event for printing."""
        with self._lock:
            self._pending.append(Event(sim_s, source, text))

    def flush(self, upto_s: float = float("inf")) -> None:
        """Print the queued events up to `upto_s` (all by default), oldest first."""
        with self._lock:
            due = sorted(e for e in self._pending if e.sim_s <= upto_s)
            self._pending = [e for e in self._pending if e.sim_s > upto_s]
        for event in due:
            self.write(event.line())


@dataclass
class HitNarrator:
    """Turns the shop's hits into timeline events: every recovery and alert call, each investigation starting, and
    the traffic monitor's cadence whenever the measured gap between its runs changes."""

    timeline: Timeline
    _last_s: dict[str, float] = field(default_factory=dict)
    _cadence_s: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, hit: Hit) -> None:
        """Narrate one hit (called from the shop's thread)."""
        with self._lock:
            previous_s = self._last_s.get(hit.endpoint)
            self._last_s[hit.endpoint] = hit.sim_s
            tier = TIER[hit.endpoint]
            if tier in ("recovery", "alert"):
                self.timeline.add(hit.sim_s, "shop", f"{hit.endpoint} called ({tier})")
            elif tier == "investigation":
                self._investigation(hit, previous_s)
            elif hit.endpoint == "traffic-monitor" and previous_s is not None:
                self._cadence(hit, hit.sim_s - previous_s, previous_s)

    def _investigation(self, hit: Hit, previous_s: float | None) -> None:
        # A gap well over the endpoint's interval means it was paused in between: it starts anew.
        if previous_s is None or hit.sim_s - previous_s > 1.5 * INTERVAL_S[hit.endpoint]:
            every = f"every {INTERVAL_S[hit.endpoint]:.0f} s"
            self.timeline.add(hit.sim_s, "shop", f"{hit.endpoint} investigating ({every} while active)")

    def _cadence(self, hit: Hit, gap_s: float, previous_s: float) -> None:
        if self._cadence_s is not None and abs(gap_s - self._cadence_s) <= CADENCE_CHANGE * self._cadence_s:
            return
        self._cadence_s = gap_s
        measured = f"{mmss(previous_s)} -> {mmss(hit.sim_s)}"
        self.timeline.add(hit.sim_s, "shop", f"traffic-monitor now every {gap_s:.0f} s (runs {measured})")
