"""The executor's capacity: how many runs go at once, which scheduler stream takes each outcome, and what happens
to the runs of a stream that breaks.

One Worker serves every stream of the process. A stream hands it work items it has credit for (`accept`); the worker
runs each on one of `capacity` slots and gives the outcome back to the stream it came from, which gets the credit
back with it. Every outcome is kept until a scheduler acknowledges it (the control plane recorded it); after a stream
breaks or opens, outcomes whose stream is gone go out again on an open one (recording is idempotent).

When a stream breaks, its items not yet begun are dropped (its scheduler treats them as vanished; they never run
here, so they never run twice), and runs from it already begun go on: the worker names them in a Held message on
another open stream at once, and again at the start of every stream that opens while they are unsettled, so the
control plane never hands them out again. All methods run on the event loop thread, so no locking is needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pacer_common.clock import Clock
from pacer_executor import attempts
from pacer_executor.metrics import ExecutorMetrics
from pacer_executor.runner import Outcome, Runner, WorkItem

log = logging.getLogger("pacer.executor.worker")

DEFAULT_MAX_UNACKED = 10_000


class Link(Protocol):
    """One open scheduler stream, as the worker sees it. The send methods only queue a message for its writer."""

    @property
    def is_open(self) -> bool:
        """False once the stream ended; the worker then sends nothing more on it."""
        ...

    def send_started(self, run_id: str) -> None: ...

    def send_result(self, outcome: Outcome) -> None: ...

    def send_credit(self, count: int) -> None:
        """Grant the scheduler `count` more work items."""
        ...

    def send_held(self, run_ids: Sequence[str]) -> None: ...

    def send_released(self, run_ids: Sequence[str]) -> None: ...

    def send_draining(self, released: Sequence[str]) -> None:
        """Give back `released` (and whatever the stream holds beyond its credit) with Released, then Draining."""
        ...


def split_capacity(capacity: int, streams: int) -> list[int]:
    """Shares of `capacity` for `streams` streams: as even as possible, larger shares first, at least 1 each.

    The shares add up to `capacity` unless there are more streams than capacity; the worker's own bound still
    holds then, and items beyond it wait for a slot before they start.
    """
    if streams < 1:
        raise ValueError("at least one stream is needed")
    base, extra = divmod(capacity, streams)
    return [max(1, base + (1 if index < extra else 0)) for index in range(streams)]


@dataclass(eq=False)
class _Run:
    """An accepted work item until its outcome is acknowledged (or it is dropped unbegun)."""

    item: WorkItem
    origin: Link
    task: asyncio.Task[None] | None = None
    begun: bool = False
    outcome: Outcome | None = None
    sent_on: Link | None = None  # the stream the outcome was last queued on

    @property
    def run_id(self) -> str:
        return self.item.run_id


@dataclass
class _Credits:
    """Credits withheld while the store of unacknowledged outcomes is full, per stream."""

    owed: dict[Link, int] = field(default_factory=dict)
    warned: bool = False


class Worker:
    """Runs accepted work items on at most `capacity` slots and routes every outcome to an open stream until it is
    acknowledged.

    An item starts (and its stream sends Started) only when a slot is free; an item whose stream ended, or that
    would start after draining began, is never started. At most about `max_unacked` outcomes wait for their ack:
    beyond that the worker stops returning credits (no new work) rather than drop any. Runs in progress, open
    streams and waiting outcomes are shown in `metrics`.
    """

    def __init__(
        self,
        runner: Runner,
        clock: Clock,
        capacity: int,
        metrics: ExecutorMetrics | None = None,
        *,
        max_unacked: int = DEFAULT_MAX_UNACKED,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._runner = runner
        self._clock = clock
        self._metrics = metrics or ExecutorMetrics()
        self._slots = asyncio.Semaphore(capacity)
        self._max_unacked = max_unacked
        self._runs: dict[str, _Run] = {}
        self._links: list[Link] = []
        self._left: set[Link] = set()  # links told Draining: nothing more comes on them
        self._credits = _Credits()
        self._unacked = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._stopping = asyncio.Event()  # set with draining: retries waiting for their turn give up

    @property
    def draining(self) -> bool:
        """True once `drain` began: no new run starts."""
        return self._draining

    @property
    def connected(self) -> int:
        """Scheduler streams open now (said Hello and not ended): the executor can take work while above 0."""
        return sum(1 for link in self._links if link.is_open)

    @property
    def unsettled(self) -> int:
        """Accepted items not yet settled: waiting for a slot, running, or with an outcome not yet acknowledged."""
        return len(self._runs)

    @property
    def unacked(self) -> int:
        """Outcomes waiting for a scheduler's acknowledgement."""
        return self._unacked

    def accept(self, item: WorkItem, link: Link) -> None:
        """Run `item`, which arrived on `link`, as soon as a slot is free; its outcome goes back to `link`."""
        if item.run_id in self._runs:
            # Never sent twice by a scheduler that follows the protocol; run it once and give the credit back.
            log.warning("work item received twice", extra=_run_fields("work.duplicate", item))
            link.send_credit(1)
            return
        run = _Run(item, link)
        self._runs[item.run_id] = run
        self._idle.clear()
        run.task = asyncio.create_task(self._perform(run), name=f"run {item.run_id}")

    def refuse(self, run_id: str, link: Link) -> None:
        """Give back an item that arrived on `link` while draining, unbegun (Released)."""
        link.send_released([run_id])
        self._metrics.runs_released.inc()

    def link_opened(self, link: Link) -> None:
        """`link` said Hello: it now takes outcomes and hears of runs whose stream broke."""
        self._links.append(link)
        self._metrics.schedulers_connected.set(len(self._links))
        if self._draining:
            self._left.add(link)
            link.send_draining(())
        self._rescue(link)

    def link_closed(self, link: Link) -> None:
        """`link` ended (its `is_open` is already False): its runs already begun go on and are reported Held, and
        outcomes written on it and not acknowledged go out again, on another open stream if there is one."""
        if link in self._links:
            self._links.remove(link)
        self._left.discard(link)
        self._metrics.schedulers_connected.set(len(self._links))
        self._credits.owed.pop(link, None)
        orphans = [run for run in self._runs.values() if run.origin is link and run.begun]
        self._metrics.runs_held.inc(len(orphans))
        if orphans:
            log.info(
                "runs of a broken stream go on",
                extra={
                    "event": "runs.orphaned",
                    "count": len(orphans),
                    "finished": sum(bool(r.outcome) for r in orphans),
                },
            )
        other = next((candidate for candidate in self._links if candidate.is_open), None)
        if other is not None:
            self._rescue(other)

    def acked(self, run_ids: Sequence[str]) -> None:
        """A scheduler says these outcomes are recorded: forget them."""
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is None or run.outcome is None:
                continue
            del self._runs[run_id]
            self._unacked -= 1
        self._metrics.results_unacked.set(self._unacked)
        self._pay_owed_credits()
        self._check_idle()

    async def drain(self, timeout_s: float) -> bool:
        """Start no more runs: give back with Released what was not begun and send Draining on every stream, then
        wait up to `timeout_s` until every begun run's outcome is acknowledged. True if all were; on timeout the runs
        still going are cancelled (their scheduler reports them vanished) and False is returned."""
        self._draining = True
        self._stopping.set()
        for link in list(self._links):
            self.leave(link)
        self._check_idle()
        if self._idle.is_set():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning(
                "drain timed out",
                extra={"event": "executor.drain_timeout", "unsettled": len(self._runs), "unacked": self._unacked},
            )
            await self._cancel_runs()
            return False
        return True

    def leave(self, link: Link) -> None:
        """The executor is about to close `link` on purpose: give back what came on it and was not begun
        (Released), and say Draining so nothing more comes. Runs begun from it go on (Held once it closed)."""
        if not link.is_open or link in self._left:
            return
        self._left.add(link)
        released = [run for run in self._runs.values() if run.origin is link and not run.begun]
        self._metrics.runs_released.inc(len(released))
        link.send_draining([run.run_id for run in released])
        for run in released:
            self._drop(run, cancel=True)

    def _rescue(self, link: Link) -> None:
        """On open `link`: Held for every begun run whose own stream is gone, and outcomes no open stream has."""
        held = [run for run in self._runs.values() if run.begun and not run.origin.is_open]
        if held:
            link.send_held([run.run_id for run in held])
        stranded = [
            run
            for run in self._runs.values()
            if run.outcome is not None and (run.sent_on is None or not run.sent_on.is_open)
        ]
        self._metrics.results_resent.inc(sum(1 for run in stranded if run.sent_on is not None))
        for run in stranded:
            assert run.outcome is not None
            link.send_result(run.outcome)
            run.sent_on = link

    def _deliver(self, run: _Run, outcome: Outcome) -> None:
        """Keep `outcome` until acknowledged and queue it on the run's own stream if open (its credit goes back),
        else on any open stream (the credit died with the origin), else until a stream opens."""
        run.outcome = outcome
        self._unacked += 1
        self._metrics.results_unacked.set(self._unacked)
        target = run.origin if run.origin.is_open else next((lk for lk in self._links if lk.is_open), None)
        if target is not None:
            target.send_result(outcome)
            run.sent_on = target
        if target is run.origin:
            self._return_credit(run.origin)

    def _return_credit(self, link: Link) -> None:
        if self._draining:
            return  # the slot stays closed: the scheduler sends nothing more anyway
        if self._unacked < self._max_unacked:
            link.send_credit(1)
            return
        self._credits.owed[link] = self._credits.owed.get(link, 0) + 1
        if not self._credits.warned:
            self._credits.warned = True
            log.warning(
                "too many results wait for acknowledgement; taking no new work until schedulers confirm them",
                extra={"event": "results.backpressure", "unacked": self._unacked},
            )

    def _pay_owed_credits(self) -> None:
        if self._unacked >= self._max_unacked or not self._credits.owed:
            return
        owed, self._credits.owed = self._credits.owed, {}
        self._credits.warned = False
        for link, count in owed.items():
            if link.is_open and not self._draining:
                link.send_credit(count)

    async def _perform(self, run: _Run) -> None:
        try:
            outcome = await self._run_when_free(run)
        except asyncio.CancelledError:
            self._drop(run)
            raise
        if outcome is None:
            self._drop(run)
        else:
            self._deliver(run, outcome)

    async def _run_when_free(self, run: _Run) -> Outcome | None:
        async with self._slots:
            if self._draining or not run.origin.is_open:
                # Never begun: its scheduler dispatches it again (Released) or reports it vanished.
                if not run.origin.is_open:
                    self._metrics.runs_dropped.inc()
                log.info("run not started", extra=_run_fields("run.abandoned", run.item))
                return None
            run.begun = True
            run.origin.send_started(run.run_id)
            with self._metrics.runs_in_flight.track_inprogress():
                return await self._outcome(run.item)

    async def _outcome(self, item: WorkItem) -> Outcome:
        """The runner's outcome; a runner bug becomes a FAILURE outcome, so the run is still reported."""
        started_at = self._clock.now()
        began = time.monotonic()
        try:
            return await attempts.perform(self._runner, item, self._clock, self._stopping, self._metrics)
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
        tasks = [run.task for run in self._runs.values() if run.task is not None and not run.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _drop(self, run: _Run, *, cancel: bool = False) -> None:
        """Forget a run that will not report: never begun, or cancelled; `cancel` stops its task (unbegun only)."""
        if self._runs.get(run.run_id) is not run:
            return
        del self._runs[run.run_id]
        if run.outcome is not None:
            self._unacked -= 1
            self._metrics.results_unacked.set(self._unacked)
        if cancel and run.task is not None and not run.begun:
            run.task.cancel()
        self._check_idle()

    def _check_idle(self) -> None:
        if not self._runs:
            self._idle.set()


def _run_fields(event: str, item: WorkItem) -> dict[str, object]:
    return {"event": event, "run_id": item.run_id, "endpoint_id": item.endpoint_id, "tenant": item.tenant_id}
