"""The worker: capacity shares, the concurrency bound, where each outcome goes, and draining.

A fake runner finishes a run when the test says so and fake links record what the worker asks them to send, so
these tests need no network; they yield to the event loop instead of waiting on the wall clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacer_common.clock import FakeClock
from pacer_executor.runner import Outcome, WorkItem
from pacer_executor.worker import Worker, split_capacity

DEADLINE_S = 5.0


@pytest.mark.parametrize(
    ("capacity", "streams", "shares"),
    [
        (100, 1, [100]),
        (100, 3, [34, 33, 33]),
        (5, 2, [3, 2]),
        (2, 2, [1, 1]),
        (1, 2, [1, 1]),
        (2, 3, [1, 1, 1]),
    ],
)
def test_capacity_is_split_evenly_with_at_least_one_per_stream(capacity: int, streams: int, shares: list[int]) -> None:
    assert split_capacity(capacity, streams) == shares


@given(capacity=st.integers(min_value=1, max_value=10_000), streams=st.integers(min_value=1, max_value=50))
def test_shares_add_up_and_differ_by_at_most_one(capacity: int, streams: int) -> None:
    shares = split_capacity(capacity, streams)

    assert len(shares) == streams
    assert sum(shares) == max(capacity, streams)
    assert min(shares) >= 1
    assert max(shares) - min(shares) <= 1


def test_no_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one stream"):
        split_capacity(10, 0)


class FakeRunner:
    """Holds every run until `finish` (or `crash`) is called for its run id."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self._endings: dict[str, asyncio.Future[Outcome]] = {}

    @property
    def running(self) -> list[str]:
        return [run_id for run_id, ending in self._endings.items() if not ending.done()]

    async def run(self, item: WorkItem) -> Outcome:
        ending = self._endings.setdefault(item.run_id, asyncio.get_running_loop().create_future())
        return await ending

    def finish(self, run_id: str) -> None:
        now = self.clock.now()
        self._endings[run_id].set_result(Outcome(run_id, "SUCCESS", now, now, 0, http_status=200))

    def crash(self, run_id: str) -> None:
        self._endings[run_id].set_exception(RuntimeError("runner bug"))


class FakeLink:
    """Records what the worker sends on it."""

    def __init__(self) -> None:
        self.is_open = True
        self.sent: list[tuple[str, ...]] = []
        self.outcomes: list[Outcome] = []

    def send_started(self, run_id: str) -> None:
        self.sent.append(("started", run_id))

    def send_result(self, outcome: Outcome, *, returns_credit: bool) -> None:
        self.outcomes.append(outcome)
        self.sent.append(("result", outcome.run_id, "credit" if returns_credit else "no credit"))

    def send_draining(self) -> None:
        self.sent.append(("draining",))


def item(run_id: str) -> WorkItem:
    return WorkItem(run_id, "ep_1", datetime(2026, 1, 5, 10, 0, tzinfo=UTC), "http://127.0.0.1/", "GET", {}, "", 1000)


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until `condition` holds (bounded by a deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0)


async def quiet() -> None:
    """Let every ready task run (to show that something does not happen)."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_outcome_goes_back_to_its_stream_with_the_credit() -> None:
    runner, link = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=2)
    worker.link_opened(link)

    worker.accept(item("run_1"), link)
    await until(lambda: runner.running == ["run_1"])
    assert link.sent == [("started", "run_1")]
    runner.finish("run_1")
    await until(lambda: len(link.sent) == 2)

    assert link.sent[1] == ("result", "run_1", "credit")
    assert worker.undelivered == 1
    worker.result_sent()
    assert worker.undelivered == 0


@pytest.mark.asyncio
async def test_outcome_of_a_broken_stream_goes_to_another_open_stream_without_credit() -> None:
    runner, origin, other = FakeRunner(), FakeLink(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=2)
    worker.link_opened(origin)
    worker.link_opened(other)
    worker.accept(item("run_1"), origin)
    await until(lambda: runner.running == ["run_1"])

    origin.is_open = False
    worker.link_closed(origin, [])
    runner.finish("run_1")
    await until(lambda: bool(other.sent))

    assert other.sent == [("result", "run_1", "no credit")]
    assert origin.sent == [("started", "run_1")]


@pytest.mark.asyncio
async def test_outcome_waits_for_a_stream_when_none_is_open() -> None:
    runner, origin, later = FakeRunner(), FakeLink(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=1)
    worker.link_opened(origin)
    worker.accept(item("run_1"), origin)
    await until(lambda: runner.running == ["run_1"])
    origin.is_open = False
    worker.link_closed(origin, [])
    runner.finish("run_1")
    await quiet()
    assert worker.undelivered == 1

    worker.link_opened(later)

    assert later.sent == [("result", "run_1", "no credit")]


@pytest.mark.asyncio
async def test_unwritten_outcomes_of_a_closed_stream_are_delivered_again() -> None:
    runner, origin, other = FakeRunner(), FakeLink(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=1)
    worker.link_opened(origin)
    worker.link_opened(other)
    worker.accept(item("run_1"), origin)
    await until(lambda: runner.running == ["run_1"])
    runner.finish("run_1")
    await until(lambda: len(origin.outcomes) == 1)

    origin.is_open = False
    worker.link_closed(origin, origin.outcomes)

    assert other.sent == [("result", "run_1", "no credit")]


@pytest.mark.asyncio
async def test_no_more_runs_at_once_than_capacity() -> None:
    runner, link = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=2)
    worker.link_opened(link)
    for n in range(3):
        worker.accept(item(f"run_{n}"), link)
    await until(lambda: len(runner.running) == 2)
    await quiet()
    assert runner.running == ["run_0", "run_1"]
    assert [entry for entry in link.sent if entry[0] == "started"] == [("started", "run_0"), ("started", "run_1")]

    runner.finish("run_0")
    await until(lambda: runner.running == ["run_1", "run_2"])


@pytest.mark.asyncio
async def test_item_whose_stream_ended_before_a_slot_freed_is_never_started() -> None:
    runner, link, other = FakeRunner(), FakeLink(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=1)
    worker.link_opened(link)
    worker.link_opened(other)
    worker.accept(item("run_busy"), other)
    worker.accept(item("run_waiting"), link)
    await until(lambda: runner.running == ["run_busy"])

    link.is_open = False
    worker.link_closed(link, [])
    runner.finish("run_busy")
    await until(lambda: worker.undelivered == 1)
    await quiet()

    assert link.sent == []
    assert runner.running == []
    assert other.sent == [("started", "run_busy"), ("result", "run_busy", "credit")]


@pytest.mark.asyncio
async def test_a_runner_bug_is_reported_as_a_failed_run() -> None:
    runner, link = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=1)
    worker.link_opened(link)
    worker.accept(item("run_1"), link)
    await until(lambda: runner.running == ["run_1"])

    runner.crash("run_1")
    await until(lambda: bool(link.outcomes))

    assert link.outcomes[0].status == "FAILURE"
    assert link.outcomes[0].error_message == "executor error: RuntimeError"


@pytest.mark.asyncio
async def test_drain_waits_for_started_runs_and_starts_no_waiting_one() -> None:
    runner, link = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=1)
    worker.link_opened(link)
    worker.accept(item("run_started"), link)
    worker.accept(item("run_waiting"), link)
    await until(lambda: runner.running == ["run_started"])

    drain = asyncio.create_task(worker.drain(DEADLINE_S))
    await until(lambda: ("draining",) in link.sent)
    runner.finish("run_started")
    await until(lambda: len(link.outcomes) == 1)
    assert not drain.done()
    worker.result_sent()

    assert await drain is True
    assert link.sent == [("started", "run_started"), ("draining",), ("result", "run_started", "credit")]
    assert runner.running == []


@pytest.mark.asyncio
async def test_drain_gives_up_after_its_timeout_and_cancels_the_runs() -> None:
    runner, link = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=1)
    worker.link_opened(link)
    worker.accept(item("run_stuck"), link)
    await until(lambda: runner.running == ["run_stuck"])

    assert await worker.drain(0.01) is False
    assert runner.running == []
    assert worker.undelivered == 0


@pytest.mark.asyncio
async def test_a_stream_opening_while_draining_is_told_at_once() -> None:
    runner, link = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=1)

    assert await worker.drain(0) is True
    worker.link_opened(link)

    assert link.sent == [("draining",)]
