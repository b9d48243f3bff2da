"""The executor's capacity: how many runs go at once, and which scheduler stream takes each outcome.

One Worker serves every stream of the process. A stream hands it work items it has credit for (`accept`); the worker
runs each on one of `capacity` slots and gives the outcome back to the stream it came from, which returns the
credit with it. A run outlives its stream: if that stream broke meanwhile, the outcome goes to any open stream (the
control plane fences stale results), or waits until one opens. All methods run on the event loop thread, so no
locking is needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from pacer_common.clock import Clock
from pacer_executor.metrics import ExecutorMetrics
from pacer_executor.runner import Outcome, Runner, WorkItem

log = logging.getLogger("pacer.executor.worker")


class Link(Protocol):
    """One open scheduler stream, as the worker sees it. The send methods only queue a message for its writer."""

    @property
    def is_open(self) -> bool:
        """False once the stream ended; the worker then sends nothing more on it."""
        ...

    def send_started(self, run_id: str) -> None: ...

    def send_result(self, outcome: Outcome, *, returns_credit: bool) -> None:
        """Queue `outcome`; `returns_credit` when the run came from this stream, so its slot is granted again."""
        ...

    def send_draining(self) -> None: ...


def split_capacity(capacity: int, streams: int) -> list[int]:
    """Shares of `capacity` for `streams` streams: as even as possible, larger shares first, at least 1 each.

    The shares add up to `capacity` unless there are more streams than capacity; the worker's own bound still
    holds then, and items beyond it wait for a slot before they start.
    """
    if streams < 1:
        raise ValueError("at least one stream is needed")
    base, extra = divmod(capacity, streams)
    return [max(1, base + (1 if index < extra else 0)) for index in range(streams)]


class Worker:
    """Runs accepted work items on at most `capacity` slots and routes every outcome to an open stream.

    An item starts (and its stream sends Started) only when a slot is free; an item whose stream ended, or that
    would start after draining began, is dropped unacknowledged, so the scheduler dispatches it again. Runs in
    progress and open streams are shown in `metrics`.
    """

    def __init__(self, runner: Runner, clock: Clock, capacity: int, metrics: ExecutorMetrics | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._runner = runner
        self._clock = clock
        self._metrics = metrics or ExecutorMetrics()
        self._slots = asyncio.Semaphore(capacity)
        self._runs: set[asyncio.Task[None]] = set()
        self._links: list[Link] = []
        self._pending: list[Outcome] = []
        self._undelivered = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False

    @property
    def draining(self) -> bool:
        """True once `drain` began: no new run starts."""
        return self._draining

    @property
    def connected(self) -> int:
        """Scheduler streams open now (said Hello and not ended): the executor can take work while above 0."""
        return sum(1 for link in self._links if link.is_open)

    @property
    def undelivered(self) -> int:
        """Accepted items whose outcome no stream has written yet (waiting, running or queued)."""
        return self._undelivered

    def accept(self, item: WorkItem, link: Link) -> None:
        """Run `item`, which arrived on `link`, as soon as a slot is free; its outcome goes back to `link`."""
        self._hold()
        task = asyncio.create_task(self._perform(item, link), name=f"run {item.run_id}")
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    def link_opened(self, link: Link) -> None:
        """`link` said Hello: it now takes outcomes, first those that waited for any stream."""
        self._links.append(link)
        self._metrics.schedulers_connected.set(len(self._links))
        if self._draining:
            link.send_draining()
        waiting, self._pending = self._pending, []
        for outcome in waiting:
            link.send_result(outcome, returns_credit=False)

    def link_closed(self, link: Link, unsent: Iterable[Outcome]) -> None:
        """`link` ended (its `is_open` is already False); `unsent` are outcomes it never wrote."""
        if link in self._links:
            self._links.remove(link)
        self._metrics.schedulers_connected.set(len(self._links))
        for outcome in unsent:
            self.deliver(outcome, None)

    def result_sent(self) -> None:
        """A stream wrote one outcome: the scheduler has it now."""
        self._settle()

    def deliver(self, outcome: Outcome, origin: Link | None) -> None:
        """Queue `outcome` on its `origin` stream if open (returning the credit), else on any open stream (the
        credit died with the origin), else keep it until a stream opens."""
        if origin is not None and origin.is_open:
            origin.send_result(outcome, returns_credit=True)
            return
        other = next((link for link in self._links if link.is_open), None)
        if other is not None:
            other.send_result(outcome, returns_credit=False)
        else:
            self._pending.append(outcome)

    async def drain(self, timeout_s: float) -> bool:
        """Start no more runs, send Draining on every stream, and wait up to `timeout_s` until every started run's
        outcome was written. True if all were; on timeout the runs still going are cancelled (their leases
        expire and the control plane marks them LOST) and False is returned."""
        self._draining = True
        for link in list(self._links):
            link.send_draining()
        if self._idle.is_set():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning(
                "drain timed out",
                extra={"event": "executor.drain_timeout", "running": len(self._runs), "undelivered": self._undelivered},
            )
            await self._cancel_runs()
            return False
        return True

    async def _perform(self, item: WorkItem, link: Link) -> None:
        try:
            outcome = await self._run_when_free(item, link)
        except asyncio.CancelledError:
            self._settle()
            raise
        if outcome is None:
            self._settle()
        else:
            self.deliver(outcome, link)

    async def _run_when_free(self, item: WorkItem, link: Link) -> Outcome | None:
        async with self._slots:
            if self._draining or not link.is_open:
                # Never acknowledged with Started: the scheduler dispatches it again once the stream ends.
                log.info("run not started", extra=_run_fields("run.abandoned", item))
                return None
            link.send_started(item.run_id)
            with self._metrics.runs_in_flight.track_inprogress():
                return await self._outcome(item)

    async def _outcome(self, item: WorkItem) -> Outcome:
        """The runner's outcome; a runner bug becomes a FAILURE outcome, so the run is still reported."""
        started_at = self._clock.now()
        began = time.monotonic()
        try:
            return await self._runner.run(item)
        except Exception as exc:
            log.exception("runner failed", extra=_run_fields("run.crashed", item))
            return Outcome(
                run_id=item.run_id,
                status="FAILURE",
                started_at=started_at,
                finished_at=self._clock.now(),
                duration_ms=round((time.monotonic() - began) * 1000),
                error_message=f"executor error: {type(exc).__name__}",
            )

    async def _cancel_runs(self) -> None:
        runs = list(self._runs)
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)

    def _hold(self) -> None:
        self._undelivered += 1
        self._idle.clear()

    def _settle(self) -> None:
        self._undelivered -= 1
        if self._undelivered == 0:
            self._idle.set()


def _run_fields(event: str, item: WorkItem) -> dict[str, object]:
    return {"event": event, "run_id": item.run_id, "endpoint_id": item.endpoint_id, "tenant": item.tenant_id}
