"""The result batcher: flushes by size and by time, and keeps results through control plane outages."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence

import pytest

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.retrying import JitteredBackoff
from pacer_scheduler.lease_client import ControlRefused, ControlUnreachable
from pacer_scheduler.metrics import SchedulerMetrics
from pacer_scheduler.results import MAX_BATCH_BYTES, MAX_IDS, ResultBatcher
from tests.support import polling

HOUR_MS = 3_600_000


def fast_retry() -> JitteredBackoff:
    return JitteredBackoff(initial_s=0.001, max_s=0.004)


class Sink:
    """A control plane that records batches and fails the next `failures` reports with `error`."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.batches: list[list[str]] = []
        self.held: list[list[str]] = []
        self.vanished: list[list[str]] = []
        self.released: list[list[str]] = []
        self.attempts = 0
        self.failures = failures
        self.error = error or ControlUnreachable("UNAVAILABLE", "connection refused")

    async def report(
        self,
        results: Sequence[lease_pb.RunResult],
        held_run_ids: Sequence[str] = (),
        vanished_run_ids: Sequence[str] = (),
        *,
        released_run_ids: Sequence[str] = (),
    ) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        self.batches.append([r.run_id for r in results])
        self.held.append(list(held_run_ids))
        self.vanished.append(list(vanished_run_ids))
        self.released.append(list(released_run_ids))

    @property
    def delivered(self) -> list[str]:
        return [run_id for batch in self.batches for run_id in batch]


class Stream:
    """An executor stream that records the acks it is asked to send."""

    def __init__(self) -> None:
        self.acked: list[list[str]] = []

    def ack(self, run_ids: Sequence[str]) -> None:
        self.acked.append(list(run_ids))


def result(run_id: str) -> lease_pb.RunResult:
    return lease_pb.RunResult(run_id=run_id)


until = functools.partial(polling.eventually, timeout_s=5.0, poll_s=0.002)


@contextlib.asynccontextmanager
async def running(batcher: ResultBatcher):
    task = asyncio.create_task(batcher.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.asyncio
async def test_a_full_batch_goes_out_without_waiting_for_the_flush_interval():
    sink = Sink()
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=3, flush_ms=HOUR_MS)
    async with running(batcher):
        for n in range(7):
            await batcher.put(result(f"r{n}"))
        await until(lambda: len(sink.batches) == 2)

        assert sink.batches == [["r0", "r1", "r2"], ["r3", "r4", "r5"]]
        assert len(batcher) == 1  # r6 waits for company or for the hour


@pytest.mark.asyncio
async def test_a_partial_batch_goes_out_once_the_oldest_result_waited_the_flush_interval():
    sink = Sink()
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=100, flush_ms=20)
    async with running(batcher):
        started = asyncio.get_running_loop().time()
        await batcher.put(result("a"))
        await batcher.put(result("b"))
        await until(lambda: sink.delivered == ["a", "b"])

        assert asyncio.get_running_loop().time() - started >= 0.02
        assert sink.batches == [["a", "b"]]


@pytest.mark.asyncio
async def test_failed_reports_keep_their_results_and_retry_until_delivered(caplog):
    caplog.set_level(logging.INFO, logger="pacer.scheduler.results")
    sink = Sink(failures=4)
    metrics = SchedulerMetrics()
    batcher = ResultBatcher(sink, metrics, batch_size=2, flush_ms=1, retry=fast_retry())
    async with running(batcher):
        for n in range(5):
            await batcher.put(result(f"r{n}"))
        await until(lambda: len(batcher) == 0)

    assert sink.delivered == ["r0", "r1", "r2", "r3", "r4"]
    assert sink.attempts >= 7
    assert metrics.report_failures == 4
    assert metrics.results_reported == 5
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("control.unreachable") == 1  # one outage, one warning
    assert events.count("control.reachable") == 1


@pytest.mark.asyncio
async def test_a_refused_report_is_retried_too():
    sink = Sink(failures=2, error=ControlRefused("UNAUTHENTICATED", "unknown service credential"))
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=1, flush_ms=1, retry=fast_retry())
    async with running(batcher):
        await batcher.put(result("a"))
        await until(lambda: sink.delivered == ["a"])


@pytest.mark.asyncio
async def test_a_batch_rejected_as_invalid_is_dropped_so_later_results_still_flow():
    sink = Sink(failures=1, error=ControlRefused("INVALID_ARGUMENT", "results[0].finished_at: is required"))
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=1, flush_ms=1, retry=fast_retry())
    async with running(batcher):
        await batcher.put(result("bad"))
        await until(lambda: len(batcher) == 0)
        await batcher.put(result("good"))
        await until(lambda: sink.delivered == ["good"])


@pytest.mark.asyncio
async def test_a_full_buffer_holds_producers_back_instead_of_dropping_results():
    sink = Sink(failures=1_000_000)
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=10, flush_ms=1, max_buffered=2, retry=fast_retry())
    async with running(batcher):
        await batcher.put(result("a"))
        await batcher.put(result("b"))
        third = asyncio.create_task(batcher.put(result("c")))
        await until(lambda: sink.attempts >= 3)
        assert not third.done()

        sink.failures = 0
        await until(lambda: sink.delivered[:2] == ["a", "b"])
        await third
        await until(lambda: sink.delivered == ["a", "b", "c"])


@pytest.mark.asyncio
async def test_close_flushes_what_is_waiting_at_once_and_ends_the_loop():
    sink = Sink()
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=100, flush_ms=HOUR_MS)
    async with running(batcher) as task:
        await batcher.put(result("a"))
        batcher.close()
        await asyncio.wait_for(task, 5)

        assert sink.delivered == ["a"]


@pytest.mark.asyncio
async def test_large_results_are_split_so_no_report_exceeds_the_message_size_bound():
    sink = Sink()
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=100, flush_ms=1)
    body = "x" * (MAX_BATCH_BYTES // 3)
    async with running(batcher):
        for n in range(7):
            await batcher.put(lease_pb.RunResult(run_id=f"r{n}", response_body=body))
        await until(lambda: len(sink.delivered) == 7)

    assert [len(batch) for batch in sink.batches] == [2, 2, 2, 1]


@pytest.mark.asyncio
async def test_results_are_acknowledged_on_their_own_stream_only_after_the_report_succeeded():
    sink = Sink(failures=1_000_000)
    first, second = Stream(), Stream()
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=3, flush_ms=HOUR_MS, retry=fast_retry())
    async with running(batcher):
        await batcher.put(result("a"), first)
        await batcher.put(result("b"), second)
        await batcher.put(result("c"), first)
        await until(lambda: sink.attempts >= 2)
        assert (first.acked, second.acked) == ([], [])  # nothing recorded yet, nothing acknowledged

        sink.failures = 0
        await until(lambda: sink.delivered == ["a", "b", "c"])

    assert first.acked == [["a", "c"]]
    assert second.acked == [["b"]]


@pytest.mark.asyncio
async def test_a_result_sent_again_on_another_stream_is_reported_once_and_acknowledged_there():
    sink = Sink(failures=1_000_000)
    broken, reconnected = Stream(), Stream()
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=10, flush_ms=1, retry=fast_retry())
    async with running(batcher):
        await batcher.put(result("a"), broken)
        await until(lambda: sink.attempts >= 1)
        await batcher.put(result("a"), reconnected)  # the executor re-sent it after its stream broke
        sink.failures = 0
        await until(lambda: sink.delivered == ["a"])

    assert sink.delivered == ["a"]
    assert (broken.acked, reconnected.acked) == ([], [["a"]])


@pytest.mark.asyncio
async def test_held_vanished_and_released_ids_travel_with_the_results_and_are_retried_like_them():
    sink = Sink(failures=3)
    metrics = SchedulerMetrics()
    batcher = ResultBatcher(sink, metrics, batch_size=100, flush_ms=1, retry=fast_retry())
    async with running(batcher):
        batcher.put_held(["h1", "h2"])
        batcher.put_vanished(["v1"])
        batcher.put_released(["x1"])
        await batcher.put(result("r1"))
        assert await batcher.delivered(5.0)

    assert sink.attempts == 4
    assert (sink.batches, sink.held, sink.vanished, sink.released) == ([["r1"]], [["h1", "h2"]], [["v1"]], [["x1"]])
    assert metrics.held == 2


@pytest.mark.asyncio
async def test_ids_alone_go_out_after_the_flush_interval():
    sink = Sink()
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=100, flush_ms=20)
    async with running(batcher):
        batcher.put_vanished(["v1"])
        await until(lambda: sink.vanished == [["v1"]])

    assert sink.batches == [[]]


@pytest.mark.asyncio
async def test_no_report_carries_more_than_the_control_planes_bound_of_ids():
    sink = Sink()
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=100, flush_ms=1)
    async with running(batcher):
        batcher.put_held([f"h{n}" for n in range(MAX_IDS + 1)])
        assert await batcher.delivered(5.0)

    assert [len(ids) for ids in sink.held] == [MAX_IDS, 1]


@pytest.mark.asyncio
async def test_results_of_a_batch_rejected_as_invalid_are_acknowledged_so_executors_forget_them():
    sink = Sink(failures=1, error=ControlRefused("INVALID_ARGUMENT", "results[0].finished_at: is required"))
    stream = Stream()
    batcher = ResultBatcher(sink, SchedulerMetrics(), batch_size=1, flush_ms=1, retry=fast_retry())
    async with running(batcher):
        await batcher.put(result("bad"), stream)
        assert await batcher.delivered(5.0)

    assert stream.acked == [["bad"]]
    assert sink.delivered == []
