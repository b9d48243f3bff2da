"""Retry pacing toward the control plane: jittered exponential delays (`pacer_common.retrying`), and one log line
per outage instead of one per try."""

from __future__ import annotations

import logging
import time

from pacer_common.retrying import JitteredBackoff

INITIAL_DELAY_S = 0.1
# Low on purpose: a restarted control plane answers within about a second, and every moment a scheduler waits
# beyond that is a second of runs not claimed and results not recorded.
MAX_DELAY_S = 0.5


def control_retry() -> JitteredBackoff:
    """The pacing of retries toward the control plane: from INITIAL_DELAY_S doubling up to MAX_DELAY_S."""
    return JitteredBackoff(INITIAL_DELAY_S, MAX_DELAY_S)


class Outage:
    """Tracks whether the control plane is reachable, logging only the start and the end of each outage.

    `what` names the caller in the log lines (`claims`, `results`); the events are `control.unreachable` and
    `control.reachable`.
    """

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._since: float | None = None

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
