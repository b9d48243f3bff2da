"""The scheduler's session at the control plane: the runs it claims belong to it while heartbeats keep it alive.

A session the control plane has not heard from for its TTL is ended there, and the runs no executor holds go back
to due for another scheduler. So this scheduler dispatches only while its session is certainly alive: until the
send time of the last answered heartbeat plus the TTL, minus a margin for clock rates and the dispatch itself. Past
that, due runs wait (they are not dropped) until a heartbeat is answered again. A heartbeat refused because the
session is over means its runs were handed back: the scheduler drops the ones it still holds undispatched and opens
a new session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from pacer_common.ids import new_id
from pacer_common.retrying import JitteredBackoff
from pacer_scheduler.lease_client import ControlError, ControlRefused, SessionHost
from pacer_scheduler.metrics import SchedulerMetrics
from pacer_scheduler.retry import Outage, control_retry

log = logging.getLogger("pacer.scheduler.session")

# Until the control plane says otherwise (every answer carries the TTL).
DEFAULT_TTL_MS: Final = 3000
SESSION_PREFIX: Final = "ss"


def new_session_id() -> str:
    """A fresh session id: `ss_` and a sortable random id (29 characters, the control plane takes up to 64)."""
    return new_id(SESSION_PREFIX)


class ControlSession:
    """Keeps a session open with `host` by heartbeats every TTL/4, each in its own short call, never behind a claim.

    `valid()` says whether dispatching is safe now. `on_renewed` is called when a heartbeat makes the session valid
    again after it was not (due runs that waited can go out); `on_lost` when the control plane ended the session
    (drop what is held undispatched), after which a new session id is made and opened at once. `reachable` and
    `called_at` (monotonic seconds) say how the last heartbeat went, for readiness.
    """

    def __init__(
        self,
        host: SessionHost,
        metrics: SchedulerMetrics,
        *,
        margin_ms: int,
        on_renewed: Callable[[], None] = lambda: None,
        on_lost: Callable[[], None] = lambda: None,
        make_id: Callable[[], str] = new_session_id,
        monotonic: Callable[[], float] = time.monotonic,
        retry: JitteredBackoff | None = None,
    ) -> None:
        self._host = host
        self._metrics = metrics
        self._margin_s = margin_ms / 1000
        self._on_renewed = on_renewed
        self._on_lost = on_lost
        self._make_id = make_id
        self._monotonic = monotonic
        self._retry = retry or control_retry()
        self._outage = Outage(log, "session")
        self._stopping = asyncio.Event()
        self._beats: set[asyncio.Task[float]] = set()
        self._ttl_s = DEFAULT_TTL_MS / 1000
        self._valid_until = float("-inf")
        self._opened = False
        self.session_id = make_id()
        self.reachable: bool | None = None
        self.called_at: float | None = None
        metrics.watch_session(self.valid)

    def valid(self) -> bool:
        """True while the control plane certainly still counts this session alive."""
        return self._monotonic() < self._valid_until

    def stop(self) -> None:
        """Ask `run()` to end after the heartbeat in progress, if any."""
        self._stopping.set()

    async def run(self) -> None:
        """Heartbeat until `stop()`; never raises for the control plane's sake.

        Heartbeats go out every TTL/4 even while an earlier one is still unanswered (it may yet count): one slow
        answer under load must not stop dispatching while later ones would have renewed the session.
        """
        while not self._stopping.is_set():
            beat = asyncio.create_task(self._beat_logged(), name="scheduler-heartbeat")
            self._beats.add(beat)
            beat.add_done_callback(self._beats.discard)
            try:
                pause_s = await asyncio.wait_for(asyncio.shield(beat), self._ttl_s / 4)
            except TimeoutError:
                pause_s = 0.0  # still on its way: send the next one now
            except asyncio.CancelledError:
                if not beat.cancelled() or _being_cancelled():
                    raise
                continue  # close() abandoned that heartbeat; the loop ends here
            if pause_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause_s)

    async def beat(self) -> float:
        """One heartbeat; returns how long to wait before the next (0: at once, to open a new session)."""
        session_id, sent_at = self.session_id, self._monotonic()
        try:
            ttl_ms = await self._host.heartbeat(session_id)
        except ControlError as error:
            return self._failed(error, session_id)
        if session_id == self.session_id and not self._stopping.is_set():
            self._renewed(sent_at, ttl_ms)
        return self._ttl_s / 4

    async def _beat_logged(self) -> float:
        try:
            return await self.beat()
        except Exception:  # a bug in one heartbeat must not end the session for good
            log.exception("heartbeat failed unexpectedly", extra={"event": "session.crashed"})
            return self._retry.next_delay_s()

    async def close(self) -> None:
        """Stop heartbeating and end the session at the control plane, so the runs it still holds undispatched go
        back to due now instead of after the TTL. A failure is logged: the TTL ends the session anyway."""
        self.stop()
        self._valid_until = float("-inf")
        for beat in list(self._beats):
            beat.cancel()
        await asyncio.gather(*self._beats, return_exceptions=True)
        if not self._opened:
            return
        try:
            await self._host.heartbeat(self.session_id, closing=True)
        except ControlError as error:
            log.warning(
                "could not close the session; it ends when its time to live runs out",
                extra={"event": "session.close_failed", "session_id": self.session_id, "code": error.code},
            )
            return
        log.info("session closed", extra={"event": "session.closed", "session_id": self.session_id})

    def _renewed(self, sent_at: float, ttl_ms: int) -> None:
        was_valid = self.valid()
        self._ttl_s = (ttl_ms if ttl_ms > 0 else DEFAULT_TTL_MS) / 1000
        # The margin never eats more than half the TTL: a short TTL still leaves time to dispatch. An answer to an
        # older heartbeat arriving late never shortens what a newer one granted.
        until = sent_at + self._ttl_s - min(self._margin_s, self._ttl_s / 2)
        self._valid_until = max(self._valid_until, until)
        self.reachable, self.called_at = True, self._monotonic()
        self._outage.succeeded()
        self._retry.reset()
        if not self._opened:
            self._opened = True
            log.info("session opened", extra={"event": "session.opened", "session_id": self.session_id})
        if not was_valid:
            self._on_renewed()

    def _failed(self, error: ControlError, session_id: str) -> float:
        if session_id != self.session_id or self._stopping.is_set():
            return 0.0  # about a session already replaced or being closed: nothing to learn
        self._metrics.session_renewal_failed()
        self.reachable, self.called_at = False, self._monotonic()
        if isinstance(error, ControlRefused) and error.session_ended:
            self._lost(session_id)
            return 0.0
        if isinstance(error, ControlRefused):
            log.error(
                "control plane refused the heartbeat",
                extra={"event": "session.refused", "code": error.code, "reason": error.details},
            )
        else:
            self._outage.failed(error.code)
        return min(self._retry.next_delay_s(), self._ttl_s / 4)

    def _lost(self, session_id: str) -> None:
        self._valid_until = float("-inf")
        self.session_id = self._make_id()
        self._opened = False
        self._metrics.session_lost()
        log.warning(
            "the control plane ended this scheduler's session; dropping its undispatched runs",
            extra={"event": "session.lost", "session_id": session_id, "new_session_id": self.session_id},
        )
        self._on_lost()


def _being_cancelled() -> bool:
    """True when the running task itself was asked to stop (not just something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
