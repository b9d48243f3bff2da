"""The claim loop's pacing and resilience, the service credential check and the scheduler's settings."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.clock import FakeClock
from pacer_common.credentials import ServiceGate
from pacer_common.errors import PermissionDenied, Unauthenticated
from pacer_common.retrying import JitteredBackoff
from pacer_common.settings import SettingsError, load
from pacer_scheduler.claims import ClaimLoop, ClaimPolicy
from pacer_scheduler.lease_client import ControlRefused, ControlUnreachable
from pacer_scheduler.retry import INITIAL_DELAY_S, MAX_DELAY_S
from pacer_scheduler.settings import SchedulerSettings
from pacer_scheduler.timer import Timer
from tests.support import polling

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
HOUR_MS = 3_600_000


class Session:
    """A scheduler session whose validity and id the test sets."""

    def __init__(self, valid: bool = True) -> None:
        self.session_id = "ss_test"
        self.is_valid = valid

    def valid(self) -> bool:
        return self.is_valid


class Source:
    """A control plane with `available` runs due far ahead; `script` lists errors to raise on the next calls."""

    def __init__(self, available: int, script: list[Exception] | None = None) -> None:
        self.available = available
        self.script = list(script or [])
        self.limits: list[int] = []
        self.sessions: list[str] = []
        self.calls = 0
        self._next = 0

    async def claim(self, horizon_ms: int, limit: int, session_id: str) -> list[lease_pb.WorkItem]:
        self.calls += 1
        self.sessions.append(session_id)
        if self.script:
            raise self.script.pop(0)
        self.limits.append(limit)
        count = min(limit, self.available)
        self.available -= count
        items = []
        for _ in range(count):
            item = lease_pb.WorkItem(run_id=f"r{self._next}")
            item.scheduled_for.FromDatetime(FAR_FUTURE)
            items.append(item)
            self._next += 1
        return items


def policy(batch: int = 10, max_pending: int = 1000, interval_ms: int = HOUR_MS) -> ClaimPolicy:
    return ClaimPolicy(horizon_ms=1500, interval_ms=interval_ms, batch=batch, max_pending=max_pending)


def fast_retry() -> JitteredBackoff:
    return JitteredBackoff(initial_s=0.001, max_s=0.004, draw=lambda: 0.0)


until = functools.partial(polling.eventually, timeout_s=5.0, poll_s=0.002)


@contextlib.asynccontextmanager
async def looping(source: Source, claim_policy: ClaimPolicy, session: Session | None = None):
    timer = Timer(FakeClock(), lambda items: None)
    loop = ClaimLoop(source, timer, lambda: len(timer), claim_policy, session or Session(), retry=fast_retry())
    task = asyncio.create_task(loop.run())
    try:
        yield loop, timer
    finally:
        loop.stop()
        await asyncio.wait_for(task, 5)


@pytest.mark.asyncio
async def test_a_full_batch_is_followed_by_another_claim_at_once():
    source = Source(available=25)
    async with looping(source, policy(batch=10)) as (_, timer):
        await until(lambda: len(timer) == 25)

    # Three claims in a row although the interval is an hour: 10 + 10 + 5 (short batch, then the long pause).
    assert source.limits == [10, 10, 10]


@pytest.mark.asyncio
async def test_claims_never_take_more_than_the_pending_bound(caplog):
    caplog.set_level(logging.DEBUG, logger="pacer.scheduler.claims")
    source = Source(available=100)

    def skipped() -> int:
        return [getattr(r, "event", None) for r in caplog.records].count("claim.backpressure")

    async with looping(source, policy(batch=10, max_pending=25, interval_ms=1)) as (loop, timer):
        await until(lambda: skipped() >= 3)  # the loop kept going, but held back

        assert len(timer) == 25
        assert loop.claimed == 25
    assert source.limits == [10, 10, 5]


@pytest.mark.asyncio
async def test_an_outage_is_retried_with_backoff_and_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="pacer.scheduler.claims")
    outage = [ControlUnreachable("UNAVAILABLE", "connection refused")] * 5
    source = Source(available=3, script=[*outage, ControlUnreachable("DEADLINE_EXCEEDED", "slow")])
    async with looping(source, policy()) as (_, timer):
        await until(lambda: len(timer) == 3)

    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("control.unreachable") == 1
    assert events.count("control.reachable") == 1
    assert source.calls == 7


@pytest.mark.asyncio
async def test_a_refused_claim_is_logged_and_retried(caplog):
    caplog.set_level(logging.INFO, logger="pacer.scheduler.claims")
    source = Source(available=1, script=[ControlRefused("PERMISSION_DENIED", "tenant API keys cannot call")] * 2)
    async with looping(source, policy()) as (_, timer):
        await until(lambda: len(timer) == 1)

    assert [getattr(r, "event", None) for r in caplog.records].count("claim.refused") == 2


@pytest.mark.asyncio
async def test_stop_ends_the_loop_during_its_pause():
    source = Source(available=0)
    async with looping(source, policy(interval_ms=HOUR_MS)):
        await until(lambda: source.calls == 1)
    # Leaving the block stopped the loop within its 5 s bound although the pause is an hour.


def test_retry_delays_double_from_100_ms_to_half_a_second_and_restart_after_a_success():
    retry = JitteredBackoff(INITIAL_DELAY_S, MAX_DELAY_S, draw=lambda: 0.0)

    assert [retry.next_delay_s() for _ in range(7)] == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5]
    retry.reset()
    assert retry.next_delay_s() == 0.1


@given(draws=st.lists(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), min_size=1, max_size=20))
def test_retry_jitter_keeps_each_delay_between_half_and_all_of_its_step(draws: list[float]) -> None:
    values = iter(draws)
    retry = JitteredBackoff(INITIAL_DELAY_S, MAX_DELAY_S, draw=lambda: next(values))
    nominal = 0.1
    for _ in draws:
        assert nominal / 2 <= retry.next_delay_s() <= nominal
        nominal = min(nominal * 2, MAX_DELAY_S)


@pytest.mark.asyncio
async def test_no_claim_without_a_live_session_and_claims_carry_the_session_id():
    source, session = Source(available=3), Session(valid=False)
    async with looping(source, policy(interval_ms=1), session) as (_, timer):
        for _ in range(20):
            await asyncio.sleep(0.002)
        assert source.calls == 0

        session.is_valid = True
        await until(lambda: len(timer) == 3)

    assert set(source.sessions) == {"ss_test"}


@pytest.mark.asyncio
async def test_a_claim_answered_after_its_session_ended_is_dropped(caplog):
    caplog.set_level(logging.INFO, logger="pacer.scheduler.claims")
    session = Session()

    class EndsMidClaim(Source):
        async def claim(self, horizon_ms: int, limit: int, session_id: str) -> list[lease_pb.WorkItem]:
            items = await super().claim(horizon_ms, limit, session_id)
            session.session_id = "ss_next"  # the heartbeat learnt meanwhile that the control plane ended it
            return items

    timer = Timer(FakeClock(), lambda items: None)
    loop = ClaimLoop(EndsMidClaim(available=2), timer, lambda: len(timer), policy(), session, retry=fast_retry())

    assert await loop._claim_once() == 0.0  # claim again at once, under the new session
    assert len(timer) == 0
    assert [getattr(r, "event", None) for r in caplog.records].count("claim.discarded") == 1


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ([("authorization", "Bearer svc_right")], None),
        ([("Authorization", b"bearer svc_right")], None),
        ([("authorization", "Bearer svc_wrong")], Unauthenticated),
        ([("authorization", "Bearer pk_abcdefgh_" + "x" * 40)], PermissionDenied),
        ([("authorization", "Basic svc_right")], Unauthenticated),
        ([], Unauthenticated),
        (None, Unauthenticated),
    ],
)
def test_only_the_service_token_opens_an_executor_stream(metadata, error):
    gate = ServiceGate("svc_right")
    if error is None:
        gate.check(metadata)
    else:
        with pytest.raises(error):
            gate.check(metadata)


def test_settings_come_from_pacer_variables_and_are_checked():
    settings = load(SchedulerSettings, {"PACER_SCHEDULER_ADDR": "0.0.0.0:6000", "PACER_CLAIM_BATCH": "50"})

    assert settings.scheduler_addr == "0.0.0.0:6000"
    assert settings.claim_batch == 50
    assert settings.claim_horizon_ms == 1500
    assert settings.identity  # hostname-pid when not set
    assert load(SchedulerSettings, {"PACER_SCHEDULER_ID": "sched-a"}).identity == "sched-a"
    assert (settings.vanish_grace_ms, settings.session_margin_ms) == (2000, 500)
    assert load(SchedulerSettings, {"PACER_VANISH_GRACE_MS": "500"}).vanish_grace_ms == 500
    refused = (("PACER_CLAIM_BATCH", "6000"), ("PACER_VANISH_GRACE_MS", "-1"), ("PACER_SESSION_MARGIN_MS", "x"))
    for name, value in refused:
        with pytest.raises(SettingsError, match=name):
            load(SchedulerSettings, {name: value})


@pytest.mark.asyncio
async def test_without_an_executor_the_loop_only_probes_and_claims_nothing() -> None:
    asked: list[int] = []

    class Source:
        async def claim(self, horizon_ms: int, limit: int, session_id: str) -> list[object]:
            asked.append(limit)
            return []

    class NoTimer:
        def add(self, items: list[object]) -> None:
            assert items == [], "nothing may be claimed"

    policy = ClaimPolicy(horizon_ms=1500, interval_ms=200, batch=100, max_pending=1000)
    loop = ClaimLoop(Source(), NoTimer(), lambda: 0, policy, Session(), staffed=lambda: False)  # type: ignore[arg-type]
    assert await loop._claim_once() == 0.2
    assert asked == [0]
    assert loop.reachable is True
