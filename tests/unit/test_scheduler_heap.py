"""The scheduler's timer heap: due-time order, and a sleeping timer that wakes for an earlier run."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import UTC, datetime, timedelta

import pytest

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.clock import FakeClock
from pacer_scheduler.heap import RunHeap
from pacer_scheduler.timer import Timer
from tests.support import polling

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def work(run_id: str, due: datetime) -> lease_pb.WorkItem:
    item = lease_pb.WorkItem(run_id=run_id, endpoint_id=f"ep_{run_id}")
    item.scheduled_for.FromDatetime(due)
    return item


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


until = functools.partial(polling.eventually, timeout_s=5.0, poll_s=0.005)


async def cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_runs_come_out_earliest_first_and_equal_times_in_arrival_order():
    heap = RunHeap()
    for run_id, seconds in [("c", 3), ("a", 1), ("b1", 2), ("b2", 2), ("d", 4)]:
        heap.push(work(run_id, at(seconds)))

    assert [heap.pop().run_id for _ in range(len(heap))] == ["a", "b1", "b2", "c", "d"]


def test_push_reports_whether_the_run_became_the_earliest():
    heap = RunHeap()

    assert heap.push(work("later", at(10))) is True
    assert heap.push(work("even-later", at(20))) is False
    assert heap.push(work("sooner", at(5))) is True
    assert heap.earliest() == at(5)


def test_pop_due_takes_only_runs_due_by_now():
    heap = RunHeap()
    for run_id, seconds in [("past", -1), ("now", 0), ("soon", 0.001), ("later", 60)]:
        heap.push(work(run_id, at(seconds)))

    assert [item.run_id for item in heap.pop_due(T0)] == ["past", "now"]
    assert len(heap) == 2
    assert heap.earliest() == at(0.001)


def test_an_empty_heap_has_no_earliest_time():
    assert RunHeap().earliest() is None
    assert RunHeap().pop_due(T0) == []


@pytest.mark.asyncio
async def test_timer_releases_due_runs_and_holds_the_others():
    clock = FakeClock(T0)
    released: list[str] = []
    timer = Timer(clock, lambda items: released.extend(i.run_id for i in items))
    task = asyncio.create_task(timer.run())
    try:
        timer.add([work("due-later", at(3600)), work("overdue", at(-5)), work("due-now", at(0))])
        await until(lambda: len(released) == 2)

        assert released == ["overdue", "due-now"]
        assert len(timer) == 1
    finally:
        await cancel(task)


@pytest.mark.asyncio
async def test_timer_wakes_early_for_a_run_due_before_the_one_it_sleeps_for():
    clock = FakeClock(T0)
    released: list[str] = []
    timer = Timer(clock, lambda items: released.extend(i.run_id for i in items))
    task = asyncio.create_task(timer.run())
    try:
        timer.add([work("in-an-hour", at(3600))])
        await asyncio.sleep(0)  # let the timer go to sleep for an hour

        timer.add([work("hinted-now", at(0))])
        await until(lambda: released == ["hinted-now"])

        assert len(timer) == 1
    finally:
        await cancel(task)


@pytest.mark.asyncio
async def test_timer_releases_a_held_run_once_the_clock_reaches_it():
    clock = FakeClock(T0)
    released: list[str] = []
    timer = Timer(clock, lambda items: released.extend(i.run_id for i in items))
    task = asyncio.create_task(timer.run())
    try:
        timer.add([work("in-50ms", at(0.05))])
        await asyncio.sleep(0)
        assert released == []

        clock.advance(0.05)
        await until(lambda: released == ["in-50ms"])
    finally:
        await cancel(task)


def test_a_jittered_run_is_due_at_its_start_not_its_slot() -> None:
    heap = RunHeap()
    jittered = work("late", at(0))
    jittered.start_at.FromDatetime(at(5))
    heap.push(jittered)
    heap.push(work("plain", at(2)))
    assert heap.earliest() == at(2)
    assert [item.run_id for item in heap.pop_due(at(4.9))] == ["plain"]
    assert heap.pop_due(at(4.9)) == []
    assert [item.run_id for item in heap.pop_due(at(5))] == ["late"]
