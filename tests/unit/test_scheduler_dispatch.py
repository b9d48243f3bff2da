"""Credit accounting and executor choice in the scheduler's dispatcher."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.clock import FakeClock
from pacer_scheduler.dispatch import Dispatcher, ExecutorSession
from pacer_scheduler.metrics import SchedulerMetrics

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
GRACE_S = 2.0


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
    return Dispatcher(clock or FakeClock(T0), metrics, vanish_grace_ms=int(GRACE_S * 1000)), metrics


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


def test_items_sent_on_a_stream_that_ends_are_never_dispatched_again_started_or_not():
    clock = FakeClock(T0)
    dispatcher, metrics = make(clock)
    first = Executor(dispatcher, "first", capacity=3)
    dispatcher.release([work("started"), work("unstarted-1", due_s=1), work("unstarted-2", due_s=2)])
    dispatcher.started(first.session, "started")
    second = Executor(dispatcher, "second", capacity=5)

    dispatcher.disconnect(first.session)

    assert second.received == []  # once on the wire, a run may have begun: it never goes out again
    assert dispatcher.ready == 0
    assert dispatcher.in_flight == 0
    assert dispatcher.vanishing == 3
    assert metrics.redispatched == 0
    assert dispatcher.executors == 1


def test_items_queued_for_a_stream_that_ended_before_they_were_written_go_to_another_executor():
    dispatcher, metrics = make()
    first = Executor(dispatcher, "first", capacity=3)
    dispatcher.release([work("written"), work("queued-1", due_s=1), work("queued-2", due_s=2)])
    second = Executor(dispatcher, "second", capacity=5)

    dispatcher.disconnect(first.session, unwritten=["queued-1", "queued-2"])

    assert second.received == ["queued-1", "queued-2"]  # never on the wire: they cannot have begun
    assert dispatcher.vanishing == 1
    assert metrics.redispatched == 2


def test_runs_of_an_ended_stream_are_reported_vanished_once_the_grace_is_over():
    clock = FakeClock(T0)
    dispatcher, metrics = make(clock)
    executor = Executor(dispatcher, "ex", capacity=2)
    dispatcher.release([work("a"), work("b", due_s=1)])
    dispatcher.disconnect(executor.session)

    clock.advance(GRACE_S - 0.1)
    assert dispatcher.sweep() == []
    clock.advance(0.1)
    assert sorted(dispatcher.sweep()) == ["a", "b"]

    assert dispatcher.sweep() == []  # reported once, then forgotten
    assert dispatcher.vanishing == 0
    assert metrics.vanished == 2


def test_a_result_or_held_on_any_stream_within_the_grace_settles_a_vanished_candidate():
    clock = FakeClock(T0)
    dispatcher, _ = make(clock)
    broken = Executor(dispatcher, "ex", capacity=3)
    dispatcher.release([work("finished"), work("held", due_s=1), work("gone", due_s=2)])
    dispatcher.disconnect(broken.session)
    Executor(dispatcher, "ex", capacity=3)  # the same executor back on a new stream

    dispatcher.finished("finished")
    dispatcher.held(["held", "someone-elses-run"])
    clock.advance(GRACE_S)

    assert dispatcher.sweep() == ["gone"]


def test_a_held_run_is_never_a_vanished_candidate_even_when_its_stream_ends_later():
    clock = FakeClock(T0)
    dispatcher, _ = make(clock)
    origin = Executor(dispatcher, "ex", capacity=2)
    dispatcher.release([work("a")])
    dispatcher.started(origin.session, "a")

    dispatcher.held(["a"])  # the executor saw the break first and said so on another stream
    dispatcher.disconnect(origin.session)
    clock.advance(GRACE_S)

    assert dispatcher.sweep() == []


def test_released_items_go_to_another_executor():
    dispatcher, metrics = make()
    giving_back = Executor(dispatcher, "giving-back", capacity=3)
    dispatcher.release([work("a"), work("b", due_s=1), work("c", due_s=2)])
    dispatcher.started(giving_back.session, "a")
    other = Executor(dispatcher, "other", capacity=5)

    returned = dispatcher.released(giving_back.session, ["b", "c"])

    assert returned == 2
    assert other.received == ["b", "c"]
    assert metrics.released == 2
    assert metrics.redispatched == 2
    assert dispatcher.in_flight == 3  # "a" on the first executor, "b" and "c" on the other


def test_a_draining_executor_gives_back_at_once_what_it_did_not_report_started_and_its_late_release_is_moot():
    # It reports every run it began before it says Draining, on one ordered stream, and begins nothing after: what
    # has no Started by then never began there, even if its Released for it never arrives.
    dispatcher, metrics = make()
    draining = Executor(dispatcher, "draining", capacity=3)
    dispatcher.release([work("a"), work("b", due_s=1), work("c", due_s=2)])
    dispatcher.started(draining.session, "a")
    other = Executor(dispatcher, "other", capacity=5)

    dispatcher.drain(draining.session)

    assert other.received == ["b", "c"]
    assert metrics.released == 2
    assert dispatcher.in_flight == 3  # "a" goes on where it began
    assert dispatcher.released(draining.session, ["b", "c"]) == 0  # its Released, written before it closed
    assert other.received == ["b", "c"]
    dispatcher.disconnect(draining.session)
    assert dispatcher.vanishing == 1  # only "a", which did begin


def test_a_release_of_a_started_run_or_of_another_streams_run_is_ignored():
    dispatcher, metrics = make()
    first = Executor(dispatcher, "first", capacity=1)
    second = Executor(dispatcher, "second", capacity=1)
    dispatcher.release([work("a"), work("b", due_s=1)])
    [on_first] = first.received
    [on_second] = second.received
    dispatcher.started(first.session, on_first)

    assert dispatcher.released(first.session, [on_first, on_second, "unknown"]) == 0
    assert dispatcher.ready == 0
    assert metrics.released == 0
    assert dispatcher.in_flight == 2


def test_released_items_wait_in_the_ready_queue_when_no_other_executor_takes_work():
    dispatcher, _ = make()
    only = Executor(dispatcher, "only", capacity=2)
    dispatcher.release([work("a"), work("b", due_s=1)])
    dispatcher.drain(only.session)

    dispatcher.released(only.session, ["a", "b"])

    assert dispatcher.ready == 2
    again = Executor(dispatcher, "again", capacity=2)
    assert again.received == ["a", "b"]


def test_nothing_goes_out_while_dispatching_is_not_allowed_and_waiting_items_go_when_it_is():
    allowed = [False]
    dispatcher = Dispatcher(FakeClock(T0), SchedulerMetrics(), may_dispatch=lambda: allowed[0])
    executor = Executor(dispatcher, "ex", capacity=5)

    dispatcher.release([work("b", due_s=1), work("a")])
    assert executor.received == []
    assert dispatcher.ready == 2

    allowed[0] = True
    dispatcher.pump()
    assert executor.received == ["a", "b"]


def test_drop_ready_forgets_the_waiting_items():
    dispatcher, _ = make()
    dispatcher.release([work("a"), work("b")])

    assert dispatcher.drop_ready() == 2
    assert dispatcher.ready == 0
    assert Executor(dispatcher, "ex", capacity=5).received == []


def test_a_result_settles_the_run_whether_or_not_it_was_acknowledged():
    dispatcher, _ = make()
    executor = Executor(dispatcher, "ex", capacity=2)
    dispatcher.release([work("acked"), work("unacked", due_s=1)])
    dispatcher.started(executor.session, "acked")

    dispatcher.finished("acked")
    dispatcher.finished("unacked")

    assert dispatcher.in_flight == 0


def test_started_leftovers_name_the_runs_executors_began_and_did_not_report():
    dispatcher, _ = make()
    open_stream = Executor(dispatcher, "open", capacity=2)
    dispatcher.release([work("running"), work("sent", due_s=1)])
    dispatcher.started(open_stream.session, "running")
    broken = Executor(dispatcher, "broken", capacity=2)
    dispatcher.release([work("vanishing-begun", due_s=2), work("vanishing", due_s=3)])
    assert broken.received == ["vanishing-begun", "vanishing"]
    dispatcher.started(broken.session, "vanishing-begun")
    dispatcher.disconnect(broken.session)

    assert sorted(dispatcher.started_leftovers()) == ["running", "vanishing-begun"]


def test_a_run_whose_lease_expired_is_not_dispatched_but_given_back_as_never_begun():
    clock = FakeClock(T0)
    dispatcher, metrics = make(clock)
    dispatcher.release([work("stale", lease_s=5), work("fresh", due_s=1, lease_s=60)])
    clock.advance(10)

    executor = Executor(dispatcher, "ex", capacity=5)

    assert executor.received == ["fresh"]
    assert metrics.expired == 1
    assert executor.session.credits == 4  # the dropped run used no credit
    assert dispatcher.take_expired() == ["stale"]
    assert dispatcher.take_expired() == []


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
        st.tuples(st.just("give_back"), st.integers(0, 2)),
        st.tuples(st.just("held"), st.integers(0, 2)),
        st.tuples(st.just("reconnect"), st.integers(0, 2), st.integers(1, 4)),
        st.tuples(st.just("wait"), st.floats(0.0, 3.0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_no_executor_overdrawn_no_run_sent_twice_unless_released_and_every_run_accounted_for(ops):
    clock = FakeClock(T0)
    dispatcher, metrics = make(clock)
    granted: dict[int, int] = {}
    executors: list[Executor] = []
    sends: list[str] = []
    released: list[str] = []
    finished: set[str] = set()
    held: set[str] = set()
    vanished: set[str] = set()
    counter = 0

    def connect(slot: int, capacity: int) -> None:
        executor = Executor(dispatcher, f"ex-{slot}-{len(granted)}", capacity)
        executor.received = sends_to(executor)
        granted[id(executor)] = capacity
        if slot < len(executors):
            executors[slot] = executor
        else:
            executors.append(executor)

    def sends_to(executor: Executor) -> list[str]:
        received = executor.received
        original = executor.session.send

        def send(item: lease_pb.WorkItem) -> None:
            sends.append(item.run_id)
            original(item)

        executor.session.send = send
        return received

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
                unstarted = set(executors[slot].session.sent) - executors[slot].session.started
                if unstarted:
                    dispatcher.started(executors[slot].session, min(unstarted))
            case ("finish", slot):
                run_id = next(iter(executors[slot].session.sent), None)
                if run_id is not None:
                    dispatcher.finished(run_id)
                    finished.add(run_id)
            case ("give_back", slot):
                session = executors[slot].session
                unstarted = sorted(set(session.sent) - session.started)
                if unstarted:
                    dispatcher.released(session, unstarted[:1])
                    released.append(unstarted[0])
            case ("held", slot):
                run_id = next(iter(executors[slot].session.sent), None)
                if run_id is not None:
                    dispatcher.held([run_id])
                    held.add(run_id)
            case ("reconnect", slot, capacity):
                dispatcher.disconnect(executors[slot].session)
                connect(slot, capacity)
            case ("wait", seconds):
                clock.advance(seconds)
                vanished.update(dispatcher.sweep())
        for executor in executors:
            assert len(executor.received) <= granted[id(executor)]
            assert executor.session.credits == granted[id(executor)] - len(executor.received)

    sent_again = Counter(sends) - Counter(set(sends))
    assert sent_again <= Counter(released)  # a run goes out more than once only after it was given back
    assert not vanished & (finished | held)
    # Every run is in exactly one place: on an open stream, in its grace, settled, reported, waiting or expired.
    in_flight = {r for e in executors for r in e.session.sent}
    places = (len(in_flight), dispatcher.vanishing, len(finished), len(held), len(vanished), dispatcher.ready)
    assert sum(places) + metrics.expired == counter
