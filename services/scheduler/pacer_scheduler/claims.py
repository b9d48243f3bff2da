"""The claim loop: leases runs due within the horizon from the control plane and hands them to the timer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pacer_common.retrying import JitteredBackoff
from pacer_scheduler.lease_client import ClaimSource, ControlError, ControlRefused
from pacer_scheduler.metrics import SchedulerMetrics
from pacer_scheduler.retry import Outage, control_retry
from pacer_scheduler.timer import Timer

log = logging.getLogger("pacer.scheduler.claims")

# How soon a loop without a live session looks again (a heartbeat is due at most every TTL/4).
SESSION_WAIT_S = 0.05


class SessionView(Protocol):
    """The scheduler's session as the claim loop needs it (pacer_scheduler.session.ControlSession)."""

    @property
    def session_id(self) -> str: ...

    def valid(self) -> bool: ...


@dataclass(frozen=True)
class ClaimPolicy:
    """How far ahead, how often and how much to claim; `max_pending` bounds claimed-but-undispatched runs."""

    horizon_ms: int
    interval_ms: int
    batch: int
    max_pending: int


class ClaimLoop:
    """Claims every `interval_ms`, at once again after a full batch, never holding more than `max_pending` runs.

    `pending()` counts claimed runs not yet dispatched (timer plus ready queue). While the control plane is
    unreachable the loop retries with exponential backoff (see control_retry) and logs once per outage; it never
    raises. `stop()` lets a claim already on the wire finish, so no leased run is ever left behind unheld.

    Claims are made under `session` and only while it is valid: runs claimed then could not be dispatched. A claim
    answered after its session ended (the control plane handed that session's runs back) is dropped, never held.

    `staffed()` says whether any executor takes work; without one the loop does not claim at all.
    `reachable` says how the last claim went: True after a success, False after the control plane failed or
    refused it, None before the first; `called_at` when that was (monotonic seconds). The scheduler's readiness
    follows them (see pacer_scheduler.readiness). Claims are measured in `metrics`.
    """

    def __init__(
        self,
        source: ClaimSource,
        timer: Timer,
        pending: Callable[[], int],
        policy: ClaimPolicy,
        session: SessionView,
        retry: JitteredBackoff | None = None,
        metrics: SchedulerMetrics | None = None,
        staffed: Callable[[], bool] = lambda: True,
    ) -> None:
        self._source = source
        self._session = session
        self._staffed = staffed
        self._timer = timer
        self._pending = pending
        self._policy = policy
        self._retry = retry or control_retry()
        self._metrics = metrics or SchedulerMetrics()
        self._outage = Outage(log, "claims")
        self._stopping = asyncio.Event()
        self.claimed = 0
        self.reachable: bool | None = None
        self.called_at: float | None = None

    def stop(self) -> None:
        """Ask the loop to end after the claim in progress, if any."""
        self._stopping.set()

    async def run(self) -> None:
        """Claim until `stop()`."""
        while not self._stopping.is_set():
            try:
                pause_s = await self._claim_once()
            except Exception:  # a bug in one claim must not end claiming for good
                log.exception("claim failed unexpectedly", extra={"event": "claim.crashed"})
                pause_s = self._retry.next_delay_s()
            if pause_s:
                await self._pause(pause_s)

    async def _claim_once(self) -> float:
        """One claim; returns how long to pause before the next (0 after a full batch)."""
        if not self._session.valid():
            log.debug("claim skipped: no live session", extra={"event": "claim.no_session"})
            return SESSION_WAIT_S
        # Runs claimed with no executor to take them would sit out their leases and end LOST, while another
        # scheduler with executors could run them: unstaffed, the loop only probes (a claim of 0 runs), which
        # keeps readiness meaningful.
        staffed = self._staffed()
        limit = min(self._policy.batch, self._policy.max_pending - self._pending()) if staffed else 0
        if staffed and limit <= 0:
            log.debug("claim skipped: pending runs at their bound", extra={"event": "claim.backpressure"})
            return self._policy.interval_ms / 1000
        began, session_id = time.perf_counter(), self._session.session_id
        try:
            items = await self._source.claim(self._policy.horizon_ms, limit, session_id)
        except ControlError as error:
            self._failed(error)
            return self._retry.next_delay_s()
        self._metrics.claimed(len(items), time.perf_counter() - began)
        self.reachable, self.called_at = True, time.monotonic()
        self._outage.succeeded()
        self._retry.reset()
        if session_id != self._session.session_id:
            log.warning(
                "claim answered after its session ended; its runs were handed back",
                extra={"event": "claim.discarded", "count": len(items), "session_id": session_id},
            )
            return 0.0
        self._timer.add(items)
        self.claimed += len(items)
        if items:
            log.debug("runs claimed", extra={"event": "claim.done", "count": len(items)})
        return 0.0 if limit and len(items) == limit else self._policy.interval_ms / 1000

    def _failed(self, error: ControlError) -> None:
        self.reachable, self.called_at = False, time.monotonic()
        if isinstance(error, ControlRefused) and error.session_ended:
            # The heartbeat loop learns it too, drops what the session held and opens a new one.
            log.info("claim refused: the session ended", extra={"event": "claim.session_ended"})
        elif isinstance(error, ControlRefused):
            # A wrong token or a bad setting: an operator must act; keep trying so a fix is picked up.
            log.error(
                "control plane refused the claim",
                extra={"event": "claim.refused", "code": error.code, "reason": error.details},
            )
        else:
            self._outage.failed(error.code)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
