"""Retries within a run: which failures are worth another attempt, the wait before it, and how long a run with its
retries may take.

An endpoint's `RetryPolicy` gives each run up to `max_attempts` HTTP attempts. Only a failure that may pass is tried
again: the connection could not be made, the exchange timed out, or the answer was 502, 503 or 504. The waits double
from `backoff_ms`. The run is one run whatever its attempts (one run id, one record listing them, one outcome for the
schedule), and its lease covers the worst case (`RetryPolicy.budget_ms`), so an executor never retries past it.

Pure arithmetic, no clock. Apart from `pacer_common.retrying` (our own processes reconnecting to each other) and
`pacer_common.backoff` (the spacing of runs after failed runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common import runs

# Answers that say "not now" rather than "no": a gateway or proxy failed, or the service is briefly unavailable.
TRANSIENT_HTTP_STATUSES: Final = frozenset({502, 503, 504})
MAX_ATTEMPTS: Final = 5
DEFAULT_BACKOFF_MS: Final = 1000
MAX_DELAY_MS: Final = 300_000  # no single wait is longer, however many doublings
ATTEMPT_HEADER: Final = "X-Pacer-Attempt"


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `max_attempts` attempts per run (1: no retry), waiting `backoff_ms` before the second, doubling after."""

    max_attempts: int = 1
    backoff_ms: int = DEFAULT_BACKOFF_MS

    @property
    def retries(self) -> bool:
        """True when a run may make more than one attempt."""
        return self.max_attempts > 1

    def delay_ms(self, attempt: int) -> int:
        """The wait before attempt `attempt` (2: the first retry): backoff, 2x, 4x, ... at most MAX_DELAY_MS."""
        if attempt < 2:
            return 0
        return min(self.backoff_ms << (attempt - 2), MAX_DELAY_MS)

    def budget_ms(self, timeout_ms: int) -> int:
        """The longest a run can take: every attempt to its timeout, and every wait between them."""
        waits = sum(self.delay_ms(attempt) for attempt in range(2, self.max_attempts + 1))
        return timeout_ms * max(self.max_attempts, 1) + waits


NO_RETRY: Final = RetryPolicy()


def policy(max_attempts: int, backoff_ms: int) -> RetryPolicy:
    """The policy stored as these two numbers; zeros mean their defaults (one attempt, DEFAULT_BACKOFF_MS)."""
    return RetryPolicy(max(max_attempts, 1), backoff_ms or DEFAULT_BACKOFF_MS)


def worth_retrying(status: str, http_status: int, *, connect_failed: bool) -> bool:
    """True when an attempt that ended with `status` (a RunStatus name) may pass if tried again: it timed out, its
    connection could not be made (`connect_failed`), or the answer was 502, 503 or 504. Never a BLOCKED attempt (the
    egress policy says the same every time) nor any other answer (the target heard the request and refused it)."""
    if status == "TIMEOUT":
        return True
    if status != "FAILURE":
        return False
    return connect_failed or http_status in TRANSIENT_HTTP_STATUSES


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt of a retried run: `number` from 1, `status` a RunStatus name, `started_at` None when it never
    sent anything (BLOCKED)."""

    number: int
    status: str
    started_at: datetime | None
    duration_ms: int = 0
    http_status: int = 0
    error_message: str = ""

    def to_json(self) -> dict[str, Any]:
        """The attempt as stored in a run's `attempts` column."""
        started = self.started_at.isoformat() if self.started_at is not None else None
        return {
            "number": self.number,
            "status": self.status,
            "started_at": started,
            "duration_ms": self.duration_ms,
            "http_status": self.http_status,
            "error_message": self.error_message,
        }

    def fill(self, message: pb.RunAttempt) -> None:
        """Write the attempt into an empty RunAttempt (one added to a run or a result in place)."""
        message.number = self.number
        message.status = runs.to_proto(runs.RunStatus(self.status))
        message.duration_ms = self.duration_ms
        message.http_status = self.http_status
        message.error_message = self.error_message
        if self.started_at is not None:
            message.started_at.FromDatetime(self.started_at)

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> Attempt:
        """An attempt read back from `to_json`'s form."""
        started = stored.get("started_at")
        return cls(
            number=int(stored["number"]),
            status=str(stored["status"]),
            started_at=datetime.fromisoformat(started) if started else None,
            duration_ms=int(stored.get("duration_ms", 0)),
            http_status=int(stored.get("http_status", 0)),
            error_message=str(stored.get("error_message", "")),
        )
