"""The scheduler's session: when it may dispatch, what a lapse and an ended session do, and how it closes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.clock import FakeClock
from pacer_common.ids import looks_like
from pacer_common.retrying import JitteredBackoff
from pacer_scheduler.dispatch import Dispatcher
from pacer_scheduler.lease_client import ControlError, ControlRefused, ControlUnreachable
from pacer_scheduler.metrics import SchedulerMetrics
from pacer_scheduler.session import ControlSession, new_session_id

TTL_MS = 2000
MARGIN_MS = 500
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@dataclass
class Monotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Host:
    """A control plane: answers heartbeats with `ttl_ms`, or raises the next error of `errors`."""

    ttl_ms: int = TTL_MS
    errors: list[ControlError] = field(default_factory=list)
    calls: list[tuple[str, bool]] = field(default_factory=list)

    async def heartbeat(self, session_id: str, *, closing: bool = False) -> int:
        self.calls.append((session_id, closing))
        if self.errors:
            raise self.errors.pop(0)
        return self.ttl_ms


ENDED = ControlRefused("FAILED_PRECONDITION", "scheduler session ss_1 has ended; open a new one")
DOWN = ControlUnreachable("UNAVAILABLE", "connection refused")


def keeper(host: Host, clock: Monotonic, **callbacks: object) -> tuple[ControlSession, SchedulerMetrics]:
    metrics = SchedulerMetrics()
    ids = (f"ss_{n}" for n in itertools.count(1))
    session = ControlSession(
        host,
        metrics,
        margin_ms=MARGIN_MS,
        make_id=lambda: next(ids),
        monotonic=clock,
        retry=JitteredBackoff(initial_s=0.1, max_s=1.0, draw=lambda: 0.0),
        **callbacks,  # type: ignore[arg-type]
    )
    return session, metrics


def test_session_ids_are_short_prefixed_and_unique() -> None:
    made = {new_session_id() for _ in range(100)}
    assert len(made) == 100
    assert all(looks_like("ss", made_id) and len(made_id) <= 64 for made_id in made)


@pytest.mark.asyncio
async def test_valid_from_the_first_answer_until_its_send_time_plus_ttl_minus_the_margin() -> None:
    host, clock = Host(), Monotonic()
    session, _ = keeper(host, clock)
    assert not session.valid()  # nothing is dispatched before the control plane knows the session

    assert await session.beat() == TTL_MS / 4 / 1000  # the next heartbeat is due after a quarter of the TTL
    clock.now += 1.499
    assert session.valid()
    clock.now += 0.001
    assert not session.valid()
    assert host.calls == [("ss_1", False)]


@pytest.mark.asyncio
async def test_validity_counts_from_when_the_heartbeat_was_sent_not_answered() -> None:
    clock = Monotonic()

    class SlowHost(Host):
        async def heartbeat(self, session_id: str, *, closing: bool = False) -> int:
            clock.now += 0.75  # the answer took 750 ms
            return await super().heartbeat(session_id, closing=closing)

    session, _ = keeper(SlowHost(), clock)
    await session.beat()

    clock.now += 0.5
    assert session.valid()
    clock.now += 0.25
    assert not session.valid()


@pytest.mark.asyncio
async def test_failed_heartbeats_let_the_session_lapse_and_the_next_answer_renews_it() -> None:
    host, clock, renewed = Host(), Monotonic(), []
    session, metrics = keeper(host, clock, on_renewed=lambda: renewed.append(clock.now))
    await session.beat()
    assert renewed == [1000.0]  # the first answer makes it valid

    host.errors = [DOWN, DOWN, DOWN]
    delays = []
    for _ in range(3):
        clock.now += 0.5
        delays.append(await session.beat())
    assert delays == [0.1, 0.2, 0.4]  # retried sooner than the regular quarter TTL, never later
    assert not session.valid()
    assert metrics.renewal_failures == 3
    assert session.reachable is False

    clock.now += 0.1
    await session.beat()
    assert session.valid()
    assert renewed == [1000.0, 1001.6]
    assert session.session_id == "ss_1"  # a lapse is not an end: the control plane still has it


@pytest.mark.asyncio
async def test_a_session_the_control_plane_ended_is_replaced_and_its_runs_dropped() -> None:
    host, clock, lost = Host(), Monotonic(), []
    session, metrics = keeper(host, clock, on_lost=lambda: lost.append(session.session_id))
    await session.beat()
    host.errors = [ENDED]

    assert await session.beat() == 0.0  # open the new one at once
    assert lost == ["ss_2"]
    assert not session.valid()
    assert metrics.sessions_lost == 1

    await session.beat()
    assert session.valid()
    assert host.calls[-1] == ("ss_2", False)


@pytest.mark.asyncio
async def test_the_ttl_comes_from_the_control_plane() -> None:
    host, clock = Host(ttl_ms=8000), Monotonic()
    session, _ = keeper(host, clock)

    assert await session.beat() == 2.0
    clock.now += 7.499
    assert session.valid()


@pytest.mark.asyncio
async def test_close_ends_the_open_session_and_stops_dispatching() -> None:
    host, clock = Host(), Monotonic()
    session, _ = keeper(host, clock)
    await session.beat()

    await session.close()

    assert host.calls[-1] == ("ss_1", True)
    assert not session.valid()


@pytest.mark.asyncio
async def test_close_without_an_open_session_sends_nothing_and_a_failed_close_is_only_logged() -> None:
    host, clock = Host(errors=[DOWN]), Monotonic()
    session, _ = keeper(host, clock)
    await session.beat()
    await session.close()
    assert host.calls == [("ss_1", False)]

    other, _ = keeper(Host(), clock)
    await other.beat()
    other._host = Host(errors=[DOWN])  # type: ignore[attr-defined]
    await other.close()  # does not raise: the TTL ends the session anyway


@pytest.mark.asyncio
async def test_run_heartbeats_until_stopped() -> None:
    host = Host(ttl_ms=40)
    session, _ = keeper(host, Monotonic())
    task = asyncio.create_task(session.run())
    deadline = asyncio.get_running_loop().time() + 5
    while len(host.calls) < 3:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.005)
    session.stop()
    await asyncio.wait_for(task, 5)


@pytest.mark.asyncio
async def test_an_unanswered_heartbeat_does_not_hold_back_the_next_one() -> None:
    hung = asyncio.Event()

    class StuckOnce(Host):
        async def heartbeat(self, session_id: str, *, closing: bool = False) -> int:
            if not self.calls:
                self.calls.append((session_id, closing))
                await hung.wait()  # the control plane never answers this one
            return await super().heartbeat(session_id, closing=closing)

    host = StuckOnce(ttl_ms=40)
    session, _ = keeper(host, Monotonic())
    task = asyncio.create_task(session.run())
    deadline = asyncio.get_running_loop().time() + 5
    while not session.valid():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.005)
    await session.close()  # also abandons the stuck call
    await asyncio.wait_for(task, 5)


def work(run_id: str) -> lease_pb.WorkItem:
    item = lease_pb.WorkItem(run_id=run_id)
    item.scheduled_for.FromDatetime(T0)
    item.lease_expires_at.FromDatetime(T0 + timedelta(minutes=1))
    return item


@pytest.mark.asyncio
async def test_due_runs_wait_while_the_session_lapsed_and_go_out_when_it_is_renewed() -> None:
    host, clock = Host(), Monotonic()
    dispatcher: Dispatcher | None = None

    def renewed() -> None:
        assert dispatcher is not None
        dispatcher.pump()

    session, _ = keeper(host, clock, on_renewed=renewed)
    dispatcher = Dispatcher(FakeClock(T0), SchedulerMetrics(), may_dispatch=session.valid)
    sent: list[str] = []
    dispatcher.connect("ex", 10, lambda item: sent.append(item.run_id))

    dispatcher.release([work("before-the-session")])
    assert sent == []
    await session.beat()
    assert sent == ["before-the-session"]

    host.errors = [DOWN] * 5
    clock.now += 1.5
    with contextlib.suppress(ControlError):
        await session.beat()
    dispatcher.release([work("during-the-lapse")])
    assert sent == ["before-the-session"]
    assert dispatcher.ready == 1  # waits, not dropped

    host.errors = []
    await session.beat()
    assert sent == ["before-the-session", "during-the-lapse"]
