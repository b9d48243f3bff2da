"""Stepping the offered rate up, one window per rate, as `bench.pipeline --find-max` and `bench.peer` both do.

One window can fail for reasons that are not the system's: on a shared machine another process may take the cores
for a few seconds. So a failed window is measured once more at the same rate before the climb stops; the second
window is the one kept. A rate is sustained only when a window at it passes. Past the first failure, the climb
goes on only up to the comparison rate (`through_per_s`), without measuring again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.results import Step, next_rate


@dataclass(frozen=True)
class Climb:
    """The rates to climb (runs/s, rising), the rate to go on to even after a failure (so a comparison rate is
    always measured), and how many times a failed window is measured again."""

    rates: list[float]
    through_per_s: float = 0.0
    retries: int = 1


def climb(
    plan: Climb,
    grow: Callable[[float], None],
    measure: Callable[[float], Step],
    show: Callable[[Step], None],
) -> list[Step]:
    """Measure each rate of the plan in turn: `grow` the load to the rate, `measure` a window, `show` it."""
    steps: list[Step] = []
    while (rate := next_rate(plan.rates, steps, plan.through_per_s)) is not None:
        grow(rate)
        step = measure(rate)
        # Past the first failure the climb only goes on to reach `through_per_s`: no second chances there.
        retries = plan.retries if all(s.sustained for s in steps) else 0
        for _ in range(retries):
            if step.sustained:
                break
            show(step)
            print("  (not sustained: measuring this rate once more)", flush=True)
            step = measure(rate)
        show(step)
        steps.append(step)
    return steps
