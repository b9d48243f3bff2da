"""The result batcher: collects executors' results, and the ids of runs executors hold or that vanished, and
reports them to the control plane in batches; acknowledges each result on its stream once it is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.retrying import JitteredBackoff
from pacer_scheduler.lease_client import ControlError, ControlRefused, ResultSink
from pacer_scheduler.metrics import SchedulerMetrics
from pacer_scheduler.retry import Outage, control_retry

log = logging.getLogger("pacer.scheduler.results")

MAX_BUFFERED = 100_000
# Stay under gRPC's default 4 MiB message limit on the control plane: 500 results with 64 KiB bodies would not.
MAX_BATCH_BYTES = 3 * 1024 * 1024
# The control plane takes at most this many held and as many vanished ids per report.
MAX_IDS = 5000


class Acker(Protocol):
    """Where a result came from: told once the control plane recorded it (an executor stream, if still open)."""

    def ack(self, run_ids: Sequence[str]) -> None: ...


@dataclass
class _Entry:
    result: lease_pb.RunResult
    origin: Acker | None


class ResultBatcher:
    """Sends what it collected to `sink` when `batch_size` results (or MAX_IDS ids of one kind) are waiting or the
    oldest has waited `flush_ms`; a batch is also cut short at MAX_BATCH_BYTES.

    A failed report keeps everything and is retried with backoff, so nothing is dropped while the process lives.
    After a report succeeded, each result is acknowledged to the stream it last arrived on (executors keep every
    result until then and send it again after a reconnect; a result already waiting here is not queued twice). At
    most `max_buffered` results are held: beyond that `put` waits (pushing back on the executors' streams) rather
    than dropping any. The only results ever discarded are a batch the control plane rejects as invalid, which no
    retry could fix; they are acknowledged too, so executors do not offer them for ever.
    """

    def __init__(
        self,
        sink: ResultSink,
        metrics: SchedulerMetrics,
        *,
        batch_size: int,
        flush_ms: int,
        max_buffered: int = MAX_BUFFERED,
        retry: JitteredBackoff | None = None,
    ) -> None:
        self._sink = sink
        self._metrics = metrics
        self._batch_size = batch_size
        self._flush_s = flush_ms / 1000
        self._max_buffered = max_buffered
        self._retry = retry or control_retry()
        self._outage = Outage(log, "results")
        self._pending: list[_Entry] = []
        self._by_run: dict[str, _Entry] = {}
        self._held: list[str] = []
        self._vanished: list[str] = []
        self._released: list[str] = []
        self._oldest_at: float | None = None  # loop time the oldest waiting entry arrived
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._closing = False

    def __len__(self) -> int:
        """Results not yet delivered."""
        return len(self._pending)

    async def put(self, result: lease_pb.RunResult, origin: Acker | None = None) -> None:
        """Queue `result` for delivery, to be acknowledged to `origin`; waits while `max_buffered` results are
        already queued. A result for a run already waiting only moves its acknowledgement to `origin`."""
        waiting = self._by_run.get(result.run_id)
        if waiting is not None:
            waiting.origin = origin or waiting.origin
            return
        if len(self._pending) >= self._max_buffered:
            log.warning(
                "result buffer full; holding back executors until the control plane takes results",
                extra={"event": "results.backpressure", "buffered": len(self._pending)},
            )
        while len(self._pending) >= self._max_buffered:
            self._room.clear()
            await self._room.wait()
        entry = _Entry(result, origin)
        self._by_run[result.run_id] = entry
        self._pending.append(entry)
        self._arrival()

    def put_held(self, run_ids: Iterable[str]) -> None:
        """Queue ids of runs an executor holds (begun, its stream broke) for the next report."""
        self._put_ids(self._held, run_ids)

    def put_vanished(self, run_ids: Iterable[str]) -> None:
        """Queue ids of runs whose executor vanished for the next report."""
        self._put_ids(self._vanished, run_ids)

    def put_released(self, run_ids: Iterable[str]) -> None:
        """Queue ids of runs never handed to an executor that go back to the control plane (they never began)."""
        self._put_ids(self._released, run_ids)

    async def run(self) -> None:
        """Deliver batches until `close()` is called and nothing is left."""
        while await self._wait_for_batch():
            await self._send_batch()

    def close(self) -> None:
        """Flush whatever is waiting without waiting for a full batch; `run()` ends once all is delivered."""
        self._closing = True
        self._arrived.set()

    async def delivered(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` until nothing is waiting; True if so."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        return self._empty.is_set()

    def _put_ids(self, into: list[str], run_ids: Iterable[str]) -> None:
        before = len(into)
        into.extend(run_ids)
        if len(into) > before:
            self._arrival()

    def _arrival(self) -> None:
        if self._oldest_at is None:
            self._oldest_at = asyncio.get_running_loop().time()
        self._empty.clear()
        self._arrived.set()
        self._metrics.results_buffered(len(self._pending))

    def _waiting(self) -> bool:
        return bool(self._pending or self._held or self._vanished or self._released)

    def _full(self) -> bool:
        longest = max(len(self._held), len(self._vanished), len(self._released))
        return len(self._pending) >= self._batch_size or longest >= MAX_IDS

    async def _wait_for_batch(self) -> bool:
        """Wait until a batch should go out; False when closing with nothing left."""
        while not self._waiting():
            if self._closing:
                return False
            self._arrived.clear()
            await self._arrived.wait()
        while not self._full() and not self._closing:
            assert self._oldest_at is not None
            remaining_s = self._oldest_at + self._flush_s - asyncio.get_running_loop().time()
            if remaining_s <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining_s)
        return True

    def _batch_length(self) -> int:
        """How many of the oldest results fit one report: `batch_size`, fewer if they exceed MAX_BATCH_BYTES."""
        size = 0
        for count, entry in enumerate(self._pending[: self._batch_size]):
            size += entry.result.ByteSize()
            if size > MAX_BATCH_BYTES and count:
                return count
        return min(len(self._pending), self._batch_size)

    async def _send_batch(self) -> None:
        batch = self._pending[: self._batch_length()]
        held, vanished = self._held[:MAX_IDS], self._vanished[:MAX_IDS]
        released = self._released[:MAX_IDS]
        began = time.perf_counter()
        try:
            await self._sink.report([entry.result for entry in batch], held, vanished, released_run_ids=released)
        except ControlError as error:
            self._metrics.report_finished(len(batch), time.perf_counter() - began, delivered=False)
            await self._failed(error, batch, len(held), len(vanished), len(released))
            return
        self._metrics.report_finished(len(batch), time.perf_counter() - began, delivered=True)
        self._metrics.runs_held(len(held))
        self._outage.succeeded()
        self._retry.reset()
        self._discard(batch, len(held), len(vanished), len(released))
        log.debug(
            "results reported",
            extra={"event": "results.reported", "count": len(batch), "held": len(held), "vanished": len(vanished)},
        )

    def _discard(self, batch: list[_Entry], held: int, vanished: int, released: int) -> None:
        # Only the put methods append, at the end, so the first entries are still the batch just sent.
        del self._pending[: len(batch)]
        del self._held[:held]
        del self._vanished[:vanished]
        del self._released[:released]
        for entry in batch:
            del self._by_run[entry.result.run_id]
        _acknowledge(batch)
        self._metrics.results_buffered(len(self._pending))
        if not self._waiting():
            self._oldest_at = None
            self._empty.set()
        self._room.set()

    async def _failed(self, error: ControlError, batch: list[_Entry], held: int, vanished: int, released: int) -> None:
        if isinstance(error, ControlRefused) and error.code == "INVALID_ARGUMENT":
            log.error(
                "control plane rejected a result batch as invalid; dropping it",
                extra={"event": "results.rejected", "count": len(batch), "reason": error.details},
            )
            self._discard(batch, held, vanished, released)
            return
        if isinstance(error, ControlRefused):
            log.error("control plane refused results", extra={"event": "results.refused", "code": error.code})
        else:
            self._outage.failed(error.code)
        await asyncio.sleep(self._retry.next_delay_s())


def _acknowledge(batch: list[_Entry]) -> None:
    """Tell each origin which of its results are recorded, one Ack per origin."""
    by_origin: dict[int, tuple[Acker, list[str]]] = {}
    for entry in batch:
        if entry.origin is not None:
            by_origin.setdefault(id(entry.origin), (entry.origin, []))[1].append(entry.result.run_id)
    for origin, run_ids in by_origin.values():
        origin.ack(run_ids)
