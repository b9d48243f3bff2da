"""Retry pacing toward the control plane: jittered exponential delays, and one log line per outage instead of one
per try."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

INITIAL_DELAY_S = 0.1
# Low on purpose: a restarted control plane answers within about a second, and every second a scheduler waits
# beyond that is a second of runs not claimed and results not recorded.
MAX_DELAY_S = 1.0
# Each delay is cut by up to this fraction at random, so schedulers cut off together do not return in step.
JITTER = 0.5


@dataclass
class RetryDelay:
    """Exponential delays: `initial_s`, doubling on each failure up to `max_s`, each scaled by a factor in
    [1 - JITTER, 1] drawn from `draw` (values in [0, 1)); `reset()` after a success."""

    initial_s: float = INITIAL_DELAY_S
    max_s: float = MAX_DELAY_S
    draw: Callable[[], float] = field(default=random.random, repr=False)
    _next_s: float = field(default=0.0, init=False)

    def next(self) -> float:
        """The delay to wait before the next try; each call doubles the nominal one after."""
        nominal = self._next_s or self.initial_s
        self._next_s = min(nominal * 2, self.max_s)
        return nominal * (1 - JITTER * self.draw())

    def reset(self) -> None:
        self._next_s = 0.0


class Outage:
    """Tracks whether the control plane is reachable, logging only the start and the end of each outage.

    `what` names the caller in the log lines (`claims`, `results`); the events are `control.unreachable` and
    `control.reachable`.
    """

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._since: float | None = None

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, reason: str) -> None:
        """Note a failed call; logs a warning only for the first failure of an outage."""
        if self._since is not None:
            return
        self._since = time.monotonic()
        self._log.warning(
            "control plane unreachable; retrying with backoff",
            extra={"event": "control.unreachable", "caller": self._what, "reason": reason},
        )

    def succeeded(self) -> None:
        """Note a successful call; logs the end of an outage if one was ongoing."""
        if self._since is None:
            return
        outage_ms = round((time.monotonic() - self._since) * 1000)
        self._since = None
        self._log.info(
            "control plane reachable again",
            extra={"event": "control.reachable", "caller": self._what, "outage_ms": outage_ms},
        )
