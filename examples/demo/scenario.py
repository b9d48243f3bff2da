"""The flash sale's phases, as in tests/scenarios/test_flash_sale.py: what the shop's metrics say, minute by minute."""

from __future__ import annotations

from dataclasses import dataclass

DURATION_S = 40 * 60
AGENT_STEP_S = 10  # the agent looks and steers every 10 simulated seconds, as in the scenario test


@dataclass(frozen=True)
class Phase:
    """From `starts_s` (simulated) on, the shop's health endpoints answer with these metrics."""

    name: str
    starts_s: int
    traffic_per_min: int
    page_load_ms: int
    orders_per_min: int
    db_query_ms: int

    def metrics(self) -> dict[str, int]:
        """The JSON snapshot the agent reads (the keys of `examples.agents.flash_sale_agent.Snapshot`)."""
        return {
            "traffic_per_min": self.traffic_per_min,
            "page_load_ms": self.page_load_ms,
            "orders_per_min": self.orders_per_min,
            "db_query_ms": self.db_query_ms,
        }

    def describe(self) -> str:
        """One line for the timeline."""
        return (
            f"traffic {self.traffic_per_min}/min, pages {self.page_load_ms} ms, "
            f"orders {self.orders_per_min}/min, db {self.db_query_ms} ms"
        )


PHASES = (
    Phase("baseline", 0, 1000, 800, 40, 120),
    Phase("surge", 5 * 60, 5000, 1800, 180, 280),
    Phase("strain", 9 * 60, 5500, 3200, 160, 850),
    Phase("critical", 13 * 60, 6000, 4500, 120, 1200),
    Phase("recovery", 21 * 60, 1500, 1100, 50, 180),
)
BY_NAME = {phase.name: phase for phase in PHASES}


def phase_at(sim_s: float) -> Phase:
    """The phase in force at simulated second `sim_s` (the first one before the start)."""
    return next((p for p in reversed(PHASES) if p.starts_s <= sim_s), PHASES[0])


def phase_end_s(phase: Phase) -> int:
    """When `phase` ends: the next phase's start, or the end of the scenario."""
    later = [p.starts_s for p in PHASES if p.starts_s > phase.starts_s]
    return min(later, default=DURATION_S)
