"""Executor registry and credit accounting: which executor gets each due run, and what happens on disconnect.

Pure bookkeeping, no I/O: a session's `send` only queues the item for its stream's writer. All methods run on the
event loop thread, so no locking is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.clock import Clock
from pacer_scheduler.heap import RunHeap, due_time
from pacer_scheduler.metrics import SchedulerMetrics

log = logging.getLogger("pacer.scheduler.dispatch")

Send = Callable[[lease_pb.WorkItem], None]


@dataclass(eq=False)
class ExecutorSession:
    """One connected executor stream.

    `credits` is how many more items it accepts; `unstarted` holds items sent but not acknowledged with Started
    (they go back to the ready queue if the stream ends); `started` holds runs begun and not yet reported.
    """

    executor_id: str
    send: Send
    credits: int
    draining: bool = False
    unstarted: dict[str, lease_pb.WorkItem] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)

    @property
    def accepting(self) -> bool:
        return self.credits > 0 and not self.draining

    @property
    def in_flight(self) -> int:
        return len(self.unstarted) + len(self.started)


class Dispatcher:
    """Hands due runs to executors, never more to one than the credits it granted.

    The executor with the most free credits gets the next item (ties go round robin). Due items that find no
    credit wait in a ready queue, earliest `scheduled_for` first, and go out as soon as credit arrives. Items whose
    lease already expired are dropped: the control plane has marked them LOST.
    """

    def __init__(self, clock: Clock, metrics: SchedulerMetrics) -> None:
        self._clock = clock
        self._metrics = metrics
        self._ready = RunHeap()
        self._sessions: list[ExecutorSession] = []
        self._turn = 0

    @property
    def ready(self) -> int:
        """Due items waiting for credit."""
        return len(self._ready)

    @property
    def in_flight(self) -> int:
        """Items sent to connected executors and not yet reported."""
        return sum(session.in_flight for session in self._sessions)

    @property
    def executors(self) -> int:
        return len(self._sessions)

    @property
    def accepting(self) -> bool:
        """True while some connected executor still takes work."""
        return any(session.accepting for session in self._sessions)

    def release(self, items: Iterable[lease_pb.WorkItem]) -> None:
        """Dispatch due `items` now, or queue them until an executor has credit."""
        for item in items:
            self._ready.push(item)
        self._pump()

    def connect(self, executor_id: str, capacity: int, send: Send) -> ExecutorSession:
        """Register a stream whose hello granted `capacity` credits; `send` queues an item for it."""
        session = ExecutorSession(executor_id, send, capacity)
        self._sessions.append(session)
        log.info(
            "executor connected",
            extra={"event": "executor.connected", "executor_id": executor_id, "capacity": capacity},
        )
        self._pump()
        return session

    def grant(self, session: ExecutorSession, count: int) -> None:
        """Add `count` credits to the session and send what now fits."""
        session.credits += count
        self._pump()

    def started(self, session: ExecutorSession, run_id: str) -> None:
        """The executor began `run_id`: from now on its lease, not a re-dispatch, covers a broken stream."""
        if session.unstarted.pop(run_id, None) is not None:
            session.started.add(run_id)

    def finished(self, session: ExecutorSession, run_id: str) -> None:
        """The executor reported `run_id` (a result implies it started)."""
        session.unstarted.pop(run_id, None)
        session.started.discard(run_id)
        self._publish()

    def drain(self, session: ExecutorSession) -> None:
        """The executor is shutting down: send it nothing more."""
        session.draining = True
        log.info("executor draining", extra={"event": "executor.draining", "executor_id": session.executor_id})
        self._publish()

    def disconnect(self, session: ExecutorSession) -> None:
        """The stream ended: unstarted items go to other executors; started ones are left to their lease."""
        if session not in self._sessions:
            return
        self._sessions.remove(session)
        requeued = list(session.unstarted.values())
        log.info(
            "executor disconnected",
            extra={
                "event": "executor.disconnected",
                "executor_id": session.executor_id,
                "requeued": len(requeued),
                "abandoned": len(session.started),
            },
        )
        self._metrics.runs_redispatched(len(requeued))
        self.release(requeued)

    def _pump(self) -> None:
        while len(self._ready):
            session = self._pick()
            if session is None:
                break
            self._dispatch(session, self._ready.pop())
        self._publish()

    def _publish(self) -> None:
        """Show the executors' state in the metrics; after every change (a few executors: a cheap sum)."""
        credits = sum(session.credits for session in self._sessions if not session.draining)
        self._metrics.executors_changed(len(self._sessions), credits, self.in_flight)

    def _pick(self) -> ExecutorSession | None:
        count = len(self._sessions)
        best: ExecutorSession | None = None
        for offset in range(count):
            candidate = self._sessions[(self._turn + offset) % count]
            if candidate.accepting and (best is None or candidate.credits > best.credits):
                best = candidate
        if best is not None:
            # Start the next search after the chosen one, so equal credits rotate.
            self._turn = (self._sessions.index(best) + 1) % count
        return best

    def _dispatch(self, session: ExecutorSession, item: lease_pb.WorkItem) -> None:
        now = self._clock.now()
        if item.HasField("lease_expires_at") and item.lease_expires_at.ToDatetime(tzinfo=UTC) <= now:
            self._metrics.run_expired()
            log.warning("run lease expired before dispatch", extra=_run_fields("run.expired", item))
            return
        session.credits -= 1
        session.unstarted[item.run_id] = item
        lateness_s = (now - due_time(item)).total_seconds()
        self._metrics.dispatched_late(lateness_s)
        fields = _run_fields("run.dispatched", item)
        fields.update(executor_id=session.executor_id, lateness_ms=round(lateness_s * 1000, 1))
        log.debug("run dispatched", extra=fields)
        session.send(item)


def _run_fields(event: str, item: lease_pb.WorkItem) -> dict[str, object]:
    return {"event": event, "run_id": item.run_id, "endpoint_id": item.endpoint_id, "tenant": item.tenant_id}
