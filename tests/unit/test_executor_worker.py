"""The worker: capacity shares, the concurrency bound, where each outcome goes, and draining.

A fake runner finishes a run when the test says so and fake links record what the worker asks them to send, so
these tests need no network; they yield to the event loop instead of waiting on the wall clock.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacer_common.clock import FakeClock
from pacer_executor.runner import Outcome, WorkItem
from pacer_executor.worker import Worker, split_capacity
from tests.support import polling

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
        self.sent: list[tuple[object, ...]] = []
        self.outcomes: list[Outcome] = []

    def send_started(self, run_id: str) -> None:
        self.sent.append(("started", run_id))

    def send_result(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.sent.append(("result", outcome.run_id))

    def send_credit(self, count: int) -> None:
        self.sent.append(("credit", count))

    def send_held(self, run_ids: Sequence[str]) -> None:
        self.sent.append(("held", *run_ids))

    def send_released(self, run_ids: Sequence[str]) -> None:
        self.sent.append(("released", *run_ids))

    def send_draining(self, released: Sequence[str]) -> None:
        if released:
            self.send_released(released)
        self.sent.append(("draining",))

    def close(self, worker: Worker) -> None:
        self.is_open = False
        worker.link_closed(self)


def item(run_id: str) -> WorkItem:
    return WorkItem(run_id, "ep_1", datetime(2026, 1, 5, 10, 0, tzinfo=UTC), "http://127.0.0.1/", "GET", {}, "", 1000)


# Yields to the event loop between tries.
until = functools.partial(polling.eventually, timeout_s=DEADLINE_S, poll_s=0)


async def quiet() -> None:
    """Let every ready task run (to show that something does not happen)."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_outcome_goes_back_to_its_stream_with_the_credit_and_is_kept_until_acknowledged() -> None:
    runner, link = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=2)
    worker.link_opened(link)

    worker.accept(item("run_1"), link)
    await until(lambda: runner.running == ["run_1"])
    assert link.sent == [("started", "run_1")]
    runner.finish("run_1")
    await until(lambda: len(link.sent) == 3)

    assert link.sent[1:] == [("result", "run_1"), ("credit", 1)]
    assert (worker.unsettled, worker.unacked) == (1, 1)
    worker.acked(["run_1", "run_unknown"])
    assert (worker.unsettled, worker.unacked) == (0, 0)


@pytest.mark.asyncio
async def test_a_run_begun_on_a_broken_stream_goes_on_is_held_on_another_stream_and_reports_there() -> None:
    runner, origin, other = FakeRunner(), FakeLink(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=2)
    worker.link_opened(origin)
    worker.link_opened(other)
    worker.accept(item("run_1"), origin)
    await until(lambda: runner.running == ["run_1"])

    origin.close(worker)
    assert other.sent == [("held", "run_1")]  # at once, while the run still goes on
    runner.finish("run_1")
    await until(lambda: len(other.sent) == 2)

    assert other.sent[1] == ("result", "run_1")  # no credit: it belonged to the broken stream
    assert origin.sent == [("started", "run_1")]


@pytest.mark.asyncio
async def test_held_is_sent_again_at_the_start_of_every_new_stream_until_the_result_is_acknowledged() -> None:
    runner, origin = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=2)
    worker.link_opened(origin)
    worker.accept(item("run_1"), origin)
    await until(lambda: runner.running == ["run_1"])
    origin.close(worker)

    first = FakeLink()
    worker.link_opened(first)
    assert first.sent == [("held", "run_1")]
    first.close(worker)  # this one broke too: who knows whether its scheduler passed the Held on

    second = FakeLink()
    worker.link_opened(second)
    runner.finish("run_1")
    await until(lambda: len(second.sent) == 2)
    assert second.sent == [("held", "run_1"), ("result", "run_1")]

    worker.acked(["run_1"])
    third = FakeLink()
    worker.link_opened(third)
    assert third.sent == []


@pytest.mark.asyncio
async def test_a_result_survives_a_stream_break_and_is_sent_again_on_the_next_stream() -> None:
    runner, origin = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=2)
    worker.link_opened(origin)
    for run_id in ("run_acked", "run_unacked"):
        worker.accept(item(run_id), origin)
    await until(lambda: len(runner.running) == 2)
    runner.finish("run_acked")
    runner.finish("run_unacked")
    await until(lambda: len(origin.outcomes) == 2)
    worker.acked(["run_acked"])

    origin.close(worker)  # the scheduler died before the control plane recorded run_unacked
    await quiet()
    assert worker.unacked == 1
    later = FakeLink()
    worker.link_opened(later)

    assert later.sent == [("held", "run_unacked"), ("result", "run_unacked")]
    worker.acked(["run_unacked"])
    assert worker.unsettled == 0


@pytest.mark.asyncio
async def test_results_of_a_broken_stream_go_out_at_once_on_another_open_stream() -> None:
    runner, origin, other = FakeRunner(), FakeLink(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=1)
    worker.link_opened(origin)
    worker.link_opened(other)
    worker.accept(item("run_1"), origin)
    await until(lambda: runner.running == ["run_1"])
    runner.finish("run_1")
    await until(lambda: len(origin.outcomes) == 1)

    origin.close(worker)

    assert other.sent == [("held", "run_1"), ("result", "run_1")]


@pytest.mark.asyncio
async def test_at_the_unacknowledged_bound_no_credit_goes_back_until_acks_arrive() -> None:
    runner, link = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=3, max_unacked=2)
    worker.link_opened(link)
    for n in range(3):
        worker.accept(item(f"run_{n}"), link)
    await until(lambda: len(runner.running) == 3)
    for n in range(3):
        runner.finish(f"run_{n}")
    await until(lambda: len(link.outcomes) == 3)

    assert [entry for entry in link.sent if entry[0] == "credit"] == [("credit", 1)]  # the second result filled it
    worker.acked(["run_0", "run_1"])
    assert [entry for entry in link.sent if entry[0] == "credit"] == [("credit", 1), ("credit", 2)]
    assert worker.unacked == 1


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

    link.close(worker)
    runner.finish("run_busy")
    await until(lambda: worker.unsettled == 1)
    await quiet()

    assert link.sent == []
    assert runner.running == []
    assert other.sent == [("started", "run_busy"), ("result", "run_busy"), ("credit", 1)]


@pytest.mark.asyncio
async def test_an_item_received_twice_runs_once_and_its_credit_goes_back() -> None:
    runner, link = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=2)
    worker.link_opened(link)
    worker.accept(item("run_1"), link)
    worker.accept(item("run_1"), link)
    await until(lambda: runner.running == ["run_1"])
    await quiet()

    assert link.sent == [("credit", 1), ("started", "run_1")]


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
async def test_drain_releases_what_was_not_begun_and_waits_for_the_ack_of_what_was() -> None:
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
    await quiet()
    assert not drain.done()  # written is not enough: the control plane must have recorded it
    worker.acked(["run_started"])

    assert await drain is True
    assert link.sent == [
        ("started", "run_started"),
        ("released", "run_waiting"),
        ("draining",),
        ("result", "run_started"),
    ]
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
    assert worker.unsettled == 0


@pytest.mark.asyncio
async def test_a_stream_opening_while_draining_is_told_at_once() -> None:
    runner, link = FakeRunner(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=1)

    assert await worker.drain(0) is True
    worker.link_opened(link)

    assert link.sent == [("draining",)]


@pytest.mark.asyncio
async def test_leaving_a_stream_releases_its_unbegun_items_and_its_begun_runs_go_on() -> None:
    runner, leaving, other = FakeRunner(), FakeLink(), FakeLink()
    worker = Worker(runner, runner.clock, capacity=2)
    worker.link_opened(leaving)
    worker.link_opened(other)
    worker.accept(item("run_busy"), other)
    worker.accept(item("run_begun"), leaving)
    worker.accept(item("run_waiting"), leaving)
    await until(lambda: len(runner.running) == 2)

    worker.leave(leaving)
    leaving.close(worker)
    runner.finish("run_busy")
    runner.finish("run_begun")
    await until(lambda: ("result", "run_begun") in other.sent)
    await quiet()

    assert leaving.sent == [("started", "run_begun"), ("released", "run_waiting"), ("draining",)]
    assert runner.running == []
    assert other.sent.index(("held", "run_begun")) < other.sent.index(("result", "run_begun"))
    assert ("started", "run_waiting") not in other.sent + leaving.sent
