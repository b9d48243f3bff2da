"""Credit accounting and executor choice in the scheduler's dispatcher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.clock import FakeClock
from pacer_scheduler.dispatch import Dispatcher, ExecutorSession
from pacer_scheduler.metrics import SchedulerMetrics

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def work(run_id: str, due_s: float = 0.0, lease_s: float | None = 60.0) -> lease_pb.WorkItem:
    item = lease_pb.WorkItem(run_id=run_id, endpoint_id=f"ep_{run_id}")
    item.scheduled_for.FromDatetime(T0 + timedelta(seconds=due_s))
    if lease_s is not None:
        item.lease_expires_at.FromDatetime(T0 + timedelta(seconds=lease_s))
    return item


class Executor:
    """Records what the dispatcher sends to one executor."""

    def __init__(self, dispatcher: Dispatcher, name: str, capacity: int) -> None:
        self.received: list[str] = []
        self.session: ExecutorSession = dispatcher.connect(
            name, capacity, lambda item: self.received.append(item.run_id)
        )


def make(clock: FakeClock | None = None) -> tuple[Dispatcher, SchedulerMetrics]:
    metrics = SchedulerMetrics()
    return Dispatcher(clock or FakeClock(T0), metrics), metrics


def test_never_sends_more_than_the_credits_and_holds_the_rest_until_credit_arrives():
    dispatcher, _ = make()
    executor = Executor(dispatcher, "ex-1", capacity=2)

    dispatcher.release([work(f"r{i}", due_s=i) for i in range(5)])

    assert executor.received == ["r0", "r1"]
    assert dispatcher.ready == 3
    dispatcher.grant(executor.session, 1)
    assert executor.received == ["r0", "r1", "r2"]
    dispatcher.grant(executor.session, 5)
    assert executor.received == ["r0", "r1", "r2", "r3", "r4"]
    assert executor.session.credits == 3
    assert dispatcher.ready == 0


def test_items_wait_for_an_executor_and_go_out_earliest_first_when_one_connects():
    dispatcher, _ = make()
    dispatcher.release([work("late", due_s=2), work("early", due_s=1)])
    dispatcher.release([work("earliest", due_s=0)])

    executor = Executor(dispatcher, "ex-1", capacity=10)

    assert executor.received == ["earliest", "early", "late"]


def test_the_executor_with_most_free_credits_gets_the_next_item():
    dispatcher, _ = make()
    small = Executor(dispatcher, "small", capacity=1)
    big = Executor(dispatcher, "big", capacity=3)

    dispatcher.release([work("a"), work("b")])

    assert big.received == ["a", "b"]
    assert small.received == []
    dispatcher.release([work("c"), work("d")])
    assert sorted(big.received + small.received) == ["a", "b", "c", "d"]
    assert small.received in (["c"], ["d"])


def test_equal_credits_take_turns():
    dispatcher, _ = make()
    executors = [Executor(dispatcher, f"ex-{n}", capacity=10) for n in range(3)]

    dispatcher.release([work(f"r{i}", due_s=i) for i in range(6)])

    assert [len(e.received) for e in executors] == [2, 2, 2]


def test_a_draining_executor_gets_nothing_more():
    dispatcher, _ = make()
    draining = Executor(dispatcher, "draining", capacity=10)
    dispatcher.drain(draining.session)

    dispatcher.release([work("a")])

    assert draining.received == []
    assert dispatcher.ready == 1
    other = Executor(dispatcher, "other", capacity=1)
    assert other.received == ["a"]


def test_unstarted_items_go_to_another_executor_when_a_stream_ends_and_started_ones_do_not():
    dispatcher, metrics = make()
    first = Executor(dispatcher, "first", capacity=3)
    dispatcher.release([work("started"), work("unstarted-1", due_s=1), work("unstarted-2", due_s=2)])
    dispatcher.started(first.session, "started")
    second = Executor(dispatcher, "second", capacity=5)
    assert second.received == []

    dispatcher.disconnect(first.session)

    assert second.received == ["unstarted-1", "unstarted-2"]
    assert metrics.redispatched == 2
    assert dispatcher.in_flight == 2  # the second executor's; the started run is left to its lease
    assert dispatcher.executors == 1


def test_unstarted_items_wait_in_the_ready_queue_when_no_other_executor_is_there():
    dispatcher, _ = make()
    only = Executor(dispatcher, "only", capacity=2)
    dispatcher.release([work("a"), work("b", due_s=1)])

    dispatcher.disconnect(only.session)

    assert dispatcher.ready == 2
    assert dispatcher.in_flight == 0
    again = Executor(dispatcher, "again", capacity=2)
    assert again.received == ["a", "b"]


def test_a_result_settles_the_run_whether_or_not_it_was_acknowledged():
    dispatcher, _ = make()
    executor = Executor(dispatcher, "ex", capacity=2)
    dispatcher.release([work("acked"), work("unacked", due_s=1)])
    dispatcher.started(executor.session, "acked")

    dispatcher.finished(executor.session, "acked")
    dispatcher.finished(executor.session, "unacked")

    assert dispatcher.in_flight == 0


def test_a_run_whose_lease_expired_is_dropped_not_dispatched():
    clock = FakeClock(T0)
    dispatcher, metrics = make(clock)
    dispatcher.release([work("stale", lease_s=5), work("fresh", due_s=1, lease_s=60)])
    clock.advance(10)

    executor = Executor(dispatcher, "ex", capacity=5)

    assert executor.received == ["fresh"]
    assert metrics.expired == 1
    assert executor.session.credits == 4  # the dropped run used no credit


def test_lateness_is_measured_from_the_due_time_to_the_dispatch():
    clock = FakeClock(T0)
    dispatcher, metrics = make(clock)
    dispatcher.release([work("a", due_s=0)])
    clock.advance(0.25)

    Executor(dispatcher, "ex", capacity=1)

    assert list(metrics.recent_lateness_s) == [0.25]
    assert metrics.dispatched == 1


operations = st.lists(
    st.one_of(
        st.tuples(st.just("release"), st.integers(1, 5)),
        st.tuples(st.just("grant"), st.integers(0, 2), st.integers(1, 4)),
        st.tuples(st.just("start"), st.integers(0, 2)),
        st.tuples(st.just("finish"), st.integers(0, 2)),
        st.tuples(st.just("reconnect"), st.integers(0, 2), st.integers(1, 4)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_no_executor_ever_holds_more_items_than_it_granted_credits_and_no_run_is_lost(ops):
    dispatcher, _ = make()
    granted: dict[int, int] = {}
    executors: list[Executor] = []
    lost_to_lease: set[str] = set()
    finished: set[str] = set()
    counter = 0

    def connect(slot: int, capacity: int) -> None:
        executor = Executor(dispatcher, f"ex-{slot}-{len(granted)}", capacity)
        granted[id(executor)] = capacity
        if slot < len(executors):
            executors[slot] = executor
        else:
            executors.append(executor)

    for slot in range(3):
        connect(slot, 1)
    for op in ops:
        match op:
            case ("release", count):
                dispatcher.release([work(f"r{counter + i}", due_s=counter + i) for i in range(count)])
                counter += count
            case ("grant", slot, count):
                granted[id(executors[slot])] += count
                dispatcher.grant(executors[slot].session, count)
            case ("start", slot):
                if executors[slot].session.unstarted:
                    dispatcher.started(executors[slot].session, next(iter(executors[slot].session.unstarted)))
            case ("finish", slot):
                session = executors[slot].session
                run_id = next(iter(session.started), None) or next(iter(session.unstarted), None)
                if run_id is not None:
                    dispatcher.finished(session, run_id)
                    finished.add(run_id)
            case ("reconnect", slot, capacity):
                lost_to_lease |= executors[slot].session.started
                dispatcher.disconnect(executors[slot].session)
                connect(slot, capacity)
        for executor in executors:
            assert len(executor.received) <= granted[id(executor)]
            assert executor.session.credits == granted[id(executor)] - len(executor.received)

    held = {r for e in executors for r in (*e.session.unstarted, *e.session.started)}
    accounted = held | finished | lost_to_lease
    assert len(accounted) + dispatcher.ready == counter
