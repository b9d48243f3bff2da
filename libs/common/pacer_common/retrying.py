"""Pacing of retries against a peer that went away: capped exponential delays with jitter.

Apart from `pacer_common.backoff` (the pure failure-backoff policy of endpoints, under a purity contract): this is
for our own processes reconnecting to each other, and draws its jitter from `random` unless given a source.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

# Each delay is cut by up to this fraction at random, so processes cut off together do not return in step.
JITTER = 0.5


@dataclass
class JitteredBackoff:
    """Delays of `initial_s`, doubling after each one up to `max_s`, each scaled by a factor in [1 - JITTER, 1]
    (`1 - JITTER * draw()`, `draw` giving values in [0, 1); a draw of 0 is the full step); `reset()` after a
    success starts again from `initial_s`."""

    initial_s: float
    max_s: float
    draw: Callable[[], float] = field(default=random.random, repr=False)
    _next_s: float = field(default=0.0, init=False)

    def next_delay_s(self) -> float:
        """The delay to wait before the next try; each call doubles the nominal one after, up to `max_s`."""
        nominal = self._next_s or self.initial_s
        self._next_s = min(nominal * 2, self.max_s)
        return nominal * (1 - JITTER * self.draw())

    def reset(self) -> None:
        """Start again from `initial_s` (after a success)."""
        self._next_s = 0.0
