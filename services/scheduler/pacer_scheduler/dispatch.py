"""Executor registry and credit accounting: which executor gets each due run, and what a broken stream leaves.

The rule: a run that may have begun is never dispatched again. Once a work item is written to an executor's stream
it may have begun, so it goes back to the ready queue only if that executor gives it back with Released. When a
stream ends, its items with no result become vanished candidates: for a grace period a result or a Held for them,
on any of this scheduler's streams, settles them; the rest are reported to the control plane as vanished (it
settles them LOST at once, unless an executor said it holds them).

Pure bookkeeping, no I/O: a session's `send` only queues the item for its stream's writer, and `sweep` is called
by the composition root's loop. All methods run on the event loop thread, so no locking is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.clock import Clock
from pacer_scheduler.heap import RunHeap, due_time
from pacer_scheduler.metrics import SchedulerMetrics

log = logging.getLogger("pacer.scheduler.dispatch")

Send = Callable[[lease_pb.WorkItem], None]


@dataclass(eq=False)
class ExecutorSession:
    """One connected executor stream.

    `credits` is how many more items it accepts; `sent` holds the items written to it with no result yet (they
    may have begun); `started` the ids among them it said it began.
    """

    executor_id: str
    send: Send
    credits: int
    draining: bool = False
    sent: dict[str, lease_pb.WorkItem] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)

    @property
    def accepting(self) -> bool:
        return self.credits > 0 and not self.draining


@dataclass(frozen=True)
class _Vanishing:
    """A run sent on a stream that ended: reported vanished at `deadline` unless settled first."""

    executor_id: str
    deadline: datetime
    started: bool


class Dispatcher:
    """Hands due runs to executors, never more to one than the credits it granted, only while `may_dispatch()`.

    The executor with the most free credits gets the next item (ties go round robin). Due items that find no
    credit, or come while dispatching is not allowed (the scheduler's session may have ended), wait in a ready
    queue, earliest due time (`heap.due_time`) first, and go out as soon as both allow. Items whose lease already
    expired are not sent: `take_expired` hands them back, to be released (they never began). Runs sent on a stream
    that ended are reported by `sweep` after `vanish_grace_ms` unless a result or Held arrived for them meanwhile.
    """

    def __init__(
        self,
        clock: Clock,
        metrics: SchedulerMetrics,
        *,
        vanish_grace_ms: int = 2000,
        may_dispatch: Callable[[], bool] = lambda: True,
    ) -> None:
        self._clock = clock
        self._metrics = metrics
        self._grace = timedelta(milliseconds=vanish_grace_ms)
        self._may_dispatch = may_dispatch
        self._ready = RunHeap()
        self._sessions: list[ExecutorSession] = []
        self._owners: dict[str, ExecutorSession] = {}
        self._vanishing: dict[str, _Vanishing] = {}
        self._returned: set[str] = set()  # released items waiting to go out again
        self._expired: list[str] = []  # never dispatched, lease gone: to give back to the control plane
        self._turn = 0

    @property
    def ready(self) -> int:
        """Due items waiting for credit or for the session."""
        return len(self._ready)

    @property
    def in_flight(self) -> int:
        """Items sent on open streams and not yet reported."""
        return len(self._owners)

    @property
    def vanishing(self) -> int:
        """Items sent on streams that ended, waiting out their grace."""
        return len(self._vanishing)

    @property
    def executors(self) -> int:
        return len(self._sessions)

    @property
    def accepting(self) -> bool:
        """True while some connected executor still takes work."""
        return any(session.accepting for session in self._sessions)

    def release(self, items: Iterable[lease_pb.WorkItem]) -> None:
        """Dispatch due `items` now, or queue them until an executor has credit and dispatching is allowed."""
        for item in items:
            self._ready.push(item)
        self.pump()

    def pump(self) -> None:
        """Send what waits in the ready queue as far as credits and `may_dispatch()` allow."""
        while len(self._ready) and self._may_dispatch():
            session = self._pick()
            if session is None:
                break
            self._dispatch(session, self._ready.pop())
        self._publish()

    def drop_ready(self) -> int:
        """Forget every item waiting in the ready queue (their session ended); returns how many there were."""
        dropped = len(self._ready)
        self._ready = RunHeap()
        self._returned.clear()
        self._publish()
        return dropped

    def connect(self, executor_id: str, capacity: int, send: Send) -> ExecutorSession:
        """Register a stream whose hello granted `capacity` credits; `send` queues an item for it."""
        session = ExecutorSession(executor_id, send, capacity)
        self._sessions.append(session)
        log.info(
            "executor connected",
            extra={"event": "executor.connected", "executor_id": executor_id, "capacity": capacity},
        )
        self.pump()
        return session

    def grant(self, session: ExecutorSession, count: int) -> None:
        """Add `count` credits to the session and send what now fits."""
        session.credits += count
        self.pump()

    def started(self, session: ExecutorSession, run_id: str) -> None:
        """The executor began `run_id` (for the record: a sent item counts as begun either way)."""
        if run_id in session.sent:
            session.started.add(run_id)

    def finished(self, *run_ids: str) -> None:
        """Results for `run_ids` arrived, on whatever stream: the runs are settled here."""
        for run_id in run_ids:
            self._forget(run_id)
        self._publish()

    def held(self, run_ids: Iterable[str]) -> None:
        """An executor performs these runs although their stream broke: their results follow, so none of them
        vanished. Ids this scheduler never sent (another scheduler's runs) are ignored here."""
        for run_id in run_ids:
            self._forget(run_id)
        self._publish()

    def released(self, session: ExecutorSession, run_ids: Iterable[str]) -> int:
        """The executor gives back items it will not begin: they go back to the ready queue. Only items sent on
        this stream and not reported started count; returns how many went back."""
        mine = []
        for run_id in run_ids:
            if run_id not in session.started and self._owners.get(run_id) is session:
                mine.append(run_id)
            elif not session.draining:  # once it said Draining, its Released repeat what was taken back then
                log.warning(
                    "release of a run not held unstarted on this stream ignored",
                    extra={"event": "run.release_ignored", "run_id": run_id, "executor_id": session.executor_id},
                )
        return self._take_back(session, mine)

    def _take_back(self, session: ExecutorSession, run_ids: Iterable[str]) -> int:
        """Return runs sent on `session` that it never began to the ready queue; returns how many."""
        returned = []
        for run_id in run_ids:
            if self._owners.get(run_id) is not session:
                continue
            returned.append(session.sent.pop(run_id))
            del self._owners[run_id]
        self._metrics.runs_released(len(returned))
        self._returned.update(item.run_id for item in returned)
        self.release(returned)  # publishes the new state
        return len(returned)

    def drain(self, session: ExecutorSession) -> None:
        """The executor is shutting down: send it nothing more, and take back at once what it was sent and did not
        begin. Its stream is ordered and it reports each run begun before it says Draining, and begins nothing after:
        a run sent to it with no Started by now never began there. Its own Released for them may never arrive (the
        executor can close its side first), and waiting for the stream to end would let them vanish as LOST."""
        session.draining = True
        unstarted = [run_id for run_id in session.sent if run_id not in session.started]
        log.info(
            "executor draining",
            extra={"event": "executor.draining", "executor_id": session.executor_id, "taken_back": len(unstarted)},
        )
        self._take_back(session, unstarted)

    def disconnect(self, session: ExecutorSession, unwritten: Iterable[str] = ()) -> None:
        """The stream ended: its items with no result become vanished candidates for the grace period, except
        `unwritten` ones (queued for the stream but never written to it: they cannot have begun), which go back to
        the ready queue."""
        if session not in self._sessions:
            return
        self._sessions.remove(session)
        requeued = [session.sent.pop(run_id) for run_id in unwritten if run_id in session.sent]
        for item in requeued:
            del self._owners[item.run_id]
            self._returned.add(item.run_id)
        deadline = self._clock.now() + self._grace
        for run_id in session.sent:
            del self._owners[run_id]
            self._vanishing[run_id] = _Vanishing(session.executor_id, deadline, run_id in session.started)
        log.info(
            "executor disconnected",
            extra={
                "event": "executor.disconnected",
                "executor_id": session.executor_id,
                "vanishing": len(session.sent),
                "started": len(session.started),
                "requeued": len(requeued),
            },
        )
        session.sent.clear()
        session.started.clear()
        self.release(requeued)

    def take_expired(self) -> list[str]:
        """Remove and return the runs whose lease expired before they could be dispatched: they never began, and go
        back to the control plane as released."""
        expired, self._expired = self._expired, []
        return expired

    def sweep(self) -> list[str]:
        """Remove and return the vanished candidates whose grace ended: they are to be reported vanished."""
        now = self._clock.now()
        gone = [run_id for run_id, entry in self._vanishing.items() if entry.deadline <= now]
        for run_id in gone:
            entry = self._vanishing.pop(run_id)
            log.info(
                "run vanished with its executor",
                extra={
                    "event": "run.vanished",
                    "run_id": run_id,
                    "executor_id": entry.executor_id,
                    "started": entry.started,
                },
            )
        if gone:
            self._metrics.runs_vanished(len(gone))
            self._publish()
        return gone

    def started_leftovers(self) -> list[str]:
        """Ids of runs executors said they began and that have no result yet, on open streams or vanishing."""
        on_streams = [run_id for session in self._sessions for run_id in session.started]
        return on_streams + [run_id for run_id, entry in self._vanishing.items() if entry.started]

    def _forget(self, run_id: str) -> None:
        session = self._owners.pop(run_id, None)
        if session is not None:
            del session.sent[run_id]
            session.started.discard(run_id)
        self._vanishing.pop(run_id, None)

    def _publish(self) -> None:
        """Show the executors' state in the metrics; after every change (a few executors: a cheap sum)."""
        credits = sum(session.credits for session in self._sessions if not session.draining)
        self._metrics.executors_changed(len(self._sessions), credits, self.in_flight, len(self._vanishing))

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
        returned = item.run_id in self._returned
        self._returned.discard(item.run_id)
        if item.HasField("lease_expires_at") and item.lease_expires_at.ToDatetime(tzinfo=UTC) <= now:
            # Never sent, so it never began: give it back (`take_expired`), and the control plane runs it again.
            self._metrics.run_expired()
            log.warning("run lease expired before dispatch", extra=_run_fields("run.expired", item))
            self._expired.append(item.run_id)
            return
        session.credits -= 1
        session.sent[item.run_id] = item
        self._owners[item.run_id] = session
        if returned:
            self._metrics.runs_redispatched(1)
        lateness_s = (now - due_time(item)).total_seconds()
        self._metrics.dispatched_late(lateness_s, item.tenant_id, item.job_id)
        if log.isEnabledFor(logging.DEBUG):  # the fields are not built for every dispatch only to be dropped
            fields = _run_fields("run.dispatched", item)
            fields.update(executor_id=session.executor_id, lateness_ms=round(lateness_s * 1000, 1))
            log.debug("run dispatched", extra=fields)
        session.send(item)


def _run_fields(event: str, item: lease_pb.WorkItem) -> dict[str, object]:
    return {"event": event, "run_id": item.run_id, "endpoint_id": item.endpoint_id, "tenant": item.tenant_id}
