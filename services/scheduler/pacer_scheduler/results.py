"""The result batcher: collects executors' results and reports them to the control plane in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_scheduler.control import ControlError, ControlRefused, ResultSink
from pacer_scheduler.metrics import SchedulerMetrics
from pacer_scheduler.retry import Outage, RetryDelay

log = logging.getLogger("pacer.scheduler.results")

MAX_BUFFERED = 100_000
# Stay under gRPC's default 4 MiB message limit on the control plane: 500 results with 64 KiB bodies would not.
MAX_BATCH_BYTES = 3 * 1024 * 1024


class ResultBatcher:
    """Sends results to `sink` when `batch_size` are waiting or the oldest has waited `flush_ms`; a batch is
    also cut short at MAX_BATCH_BYTES.

    A failed report keeps its results and is retried with backoff, so no result is dropped while the process
    lives. At most `max_buffered` results are held: beyond that `put` waits (pushing back on the executors'
    streams) rather than dropping any. The only results ever discarded are a batch the control plane rejects as
    invalid, which no retry could fix.
    """

    def __init__(
        self,
        sink: ResultSink,
        metrics: SchedulerMetrics,
        *,
        batch_size: int,
        flush_ms: int,
        max_buffered: int = MAX_BUFFERED,
        retry: RetryDelay | None = None,
    ) -> None:
        self._sink = sink
        self._metrics = metrics
        self._batch_size = batch_size
        self._flush_s = flush_ms / 1000
        self._max_buffered = max_buffered
        self._retry = retry or RetryDelay()
        self._outage = Outage(log, "results")
        self._pending: list[lease_pb.RunResult] = []
        self._oldest_at: float | None = None  # loop time the oldest pending result arrived
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False

    def __len__(self) -> int:
        """Results not yet delivered."""
        return len(self._pending)

    async def put(self, result: lease_pb.RunResult) -> None:
        """Queue `result` for delivery; waits while `max_buffered` results are already queued."""
        if len(self._pending) >= self._max_buffered:
            log.warning(
                "result buffer full; holding back executors until the control plane takes results",
                extra={"event": "results.backpressure", "buffered": len(self._pending)},
            )
        while len(self._pending) >= self._max_buffered:
            self._room.clear()
            await self._room.wait()
        if not self._pending:
            self._oldest_at = asyncio.get_running_loop().time()
        self._pending.append(result)
        self._arrived.set()

    async def run(self) -> None:
        """Deliver batches until `close()` is called and nothing is left."""
        while await self._wait_for_batch():
            await self._send_batch()

    def close(self) -> None:
        """Flush whatever is waiting without waiting for a full batch; `run()` ends once all is delivered."""
        self._closing = True
        self._arrived.set()

    async def _wait_for_batch(self) -> bool:
        """Wait until a batch should go out; False when closing with nothing left."""
        while not self._pending:
            if self._closing:
                return False
            self._arrived.clear()
            await self._arrived.wait()
        while len(self._pending) < self._batch_size and not self._closing:
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
        for count, result in enumerate(self._pending[: self._batch_size]):
            size += result.ByteSize()
            if size > MAX_BATCH_BYTES and count:
                return count
        return min(len(self._pending), self._batch_size)

    async def _send_batch(self) -> None:
        batch = self._pending[: self._batch_length()]
        began = time.perf_counter()
        try:
            await self._sink.report(batch)
        except ControlError as error:
            self._metrics.report_finished(len(batch), time.perf_counter() - began, delivered=False)
            await self._failed(error, len(batch))
            return
        self._metrics.report_finished(len(batch), time.perf_counter() - began, delivered=True)
        self._outage.succeeded()
        self._retry.reset()
        self._discard(len(batch))
        log.debug("results reported", extra={"event": "results.reported", "count": len(batch)})

    def _discard(self, count: int) -> None:
        # Only put() appends, at the end, so the first `count` entries are still the batch just sent.
        del self._pending[:count]
        if not self._pending:
            self._oldest_at = None
        self._room.set()

    async def _failed(self, error: ControlError, count: int) -> None:
        if isinstance(error, ControlRefused) and error.code == "INVALID_ARGUMENT":
            log.error(
                "control plane rejected a result batch as invalid; dropping it",
                extra={"event": "results.rejected", "count": count, "reason": error.details},
            )
            self._discard(count)
            return
        if isinstance(error, ControlRefused):
            log.error("control plane refused results", extra={"event": "results.refused", "code": error.code})
        else:
            self._outage.failed(error.code)
        await asyncio.sleep(self._retry.next())
