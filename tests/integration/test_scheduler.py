"""The scheduler against a real control plane (SQLite and PostgreSQL), on the wall clock, with fake executors.

Everything runs in the test's event loop: the control plane's grpc.aio server (restartable on its port), the
scheduler's parts and its DispatchService on 127.0.0.1:0, and executors speaking the stream protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pacer.control.v1 import control_service_pb2 as pb
from pacer.control.v1 import control_service_pb2_grpc as pb_grpc
from pacer.internal.v1 import dispatch_service_pb2 as dispatch_pb
from pacer.internal.v1 import dispatch_service_pb2_grpc as dispatch_grpc
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.clock import SystemClock
from pacer_common.credentials import bearer
from pacer_control.auth import issue_key
from pacer_control.catalog import Catalog
from pacer_control.database import make_engine
from pacer_control.pipeline import Pipeline
from pacer_control.sealing import Keyring, generate_key
from pacer_control.server import ServerOptions, build_server
from pacer_control.tenancy import create_tenant
from pacer_scheduler.main import Scheduler
from pacer_scheduler.settings import SchedulerSettings
from tests.support import polling

pytestmark = pytest.mark.timeout(60)

SERVICE_TOKEN = "svc_scheduler-integration-token"
MIN_INTERVAL_MS = 1000
LEASE_GRACE_MS = 30_000
URL = "https://target.example.com/ping"
VANISH_GRACE_MS = 500


eventually = functools.partial(polling.eventually, timeout_s=8.0)


class ControlPlane:
    """The real control plane on a fresh database and the wall clock, with one tenant and its API key."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        keyring = Keyring([generate_key()])
        self.catalog = Catalog(self.engine, keyring)
        self.pipeline = Pipeline(self.engine, keyring)
        now = SystemClock().now()
        tenant_id = create_tenant(self.catalog, "acme", now)
        self.key = issue_key(self.catalog, tenant_id, "tests", now).secret
        sqlite = database_url.startswith("sqlite")
        self._pool = ThreadPoolExecutor(max_workers=1 if sqlite else 4, thread_name_prefix="db")
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on the same port as before, or a free one the first time."""
        options = ServerOptions(f"127.0.0.1:{self.port}", MIN_INTERVAL_MS, SERVICE_TOKEN, LEASE_GRACE_MS)
        self._server, self.port, _ = build_server(self.catalog, self.pipeline, SystemClock(), self._pool, options)
        await self._server.start()
        self._channel = grpc.aio.insecure_channel(self.address)
        self.api = pb_grpc.ControlServiceStub(self._channel)

    async def stop(self) -> None:
        assert self._server is not None
        await self._channel.close()
        await self._server.stop(None)
        self._server = None

    async def close(self) -> None:
        if self._server is not None:
            await self.stop()
        self._pool.shutdown()
        self.engine.dispose()

    async def call(self, rpc: str, request: object) -> object:
        return await getattr(self.api, rpc)(request, metadata=bearer(self.key), timeout=10)

    async def add_endpoints(self, count: int, interval_ms: int = 1000) -> list[str]:
        job = await self.call("CreateJob", pb.CreateJobRequest(name="scheduler tests"))
        ids = []
        for n in range(count):
            request = pb.AddEndpointToJobRequest(
                job_id=job.job_id, name=f"ep-{n}", url=URL, baseline=pb.Baseline(interval_ms=interval_ms)
            )
            ids.append((await self.call("AddEndpointToJob", request)).endpoint_id)
        return ids

    async def runs(self, **filters: object) -> list[pb.RunSummary]:
        response = await self.call("ListRuns", pb.ListRunsRequest(limit=500, **filters))
        return list(response.runs)


class FakeExecutor:
    """Speaks the executor side of DispatchService and checks the scheduler never sends beyond its credits.

    `ack` sends Started then a SUCCESS result for each item; `hold_results` keeps results until
    `release_results()`; each result is followed by a one-credit grant, `credit_delay_s` later. Acks the scheduler
    sends are collected in `acked`; `give_back`, `hold` and `report` send Released, Held and results at will.
    """

    def __init__(
        self,
        address: str,
        name: str,
        capacity: int,
        *,
        ack: bool = True,
        hold_results: bool = False,
        credit_delay_s: float = 0.0,
        batches: bool = False,
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.batches = batches
        self.welcomed = False
        self.work_messages: list[list[lease_pb.WorkItem]] = []  # the items of each message that carried work
        self.ack = ack
        self.credit_delay_s = credit_delay_s
        self.received: list[lease_pb.WorkItem] = []
        self.lateness_s: list[float] = []
        self.reported: list[str] = []
        self.acked: list[str] = []
        self.granted = 0
        self.overdrawn = False
        self._results_released = asyncio.Event()
        if not hold_results:
            self._results_released.set()
        self._channel = grpc.aio.insecure_channel(address)
        self._write_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def run_ids(self) -> list[str]:
        return [item.run_id for item in self.received]

    async def connect(self) -> None:
        stub = dispatch_grpc.DispatchServiceStub(self._channel)
        self._call = stub.Connect(metadata=bearer(SERVICE_TOKEN))
        self.granted = self.capacity
        await self._write(
            dispatch_pb.ConnectRequest(
                hello=dispatch_pb.Hello(executor_id=self.name, capacity=self.capacity, batches=self.batches)
            )
        )
        self._spawn(self._read())

    def release_results(self) -> None:
        self._results_released.set()

    async def disconnect(self) -> None:
        self._call.cancel()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
                await task
        await self._channel.close()

    def _spawn(self, work: object) -> None:
        task = asyncio.create_task(work)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, message: dispatch_pb.ConnectRequest) -> None:
        async with self._write_lock:
            await self._call.write(message)

    async def give_back(self, run_ids: list[str]) -> None:
        await self._write(dispatch_pb.ConnectRequest(released=dispatch_pb.Released(run_ids=run_ids)))

    async def hold(self, run_ids: list[str]) -> None:
        await self._write(dispatch_pb.ConnectRequest(held=dispatch_pb.Held(run_ids=run_ids)))

    async def start(self, run_id: str) -> None:
        await self._write(dispatch_pb.ConnectRequest(started=dispatch_pb.Started(run_id=run_id)))

    async def report(self, run_id: str) -> None:
        await self._write(dispatch_pb.ConnectRequest(result=success(run_id, self.name)))

    async def _read(self) -> None:
        async for response in self._call:
            match response.WhichOneof("kind"):
                case "ack":
                    self.acked.extend(response.ack.run_ids)
                case "welcome":
                    self.welcomed = response.welcome.batches
                case "work":
                    self._take([response.work])
                case "work_batch":
                    self._take(list(response.work_batch.items))

    def _take(self, items: list[lease_pb.WorkItem]) -> None:
        """Items that arrived in one message, each started at once (as the executor does)."""
        self.work_messages.append(items)
        for item in items:
            self.received.append(item)
            self.lateness_s.append((datetime.now(UTC) - item.scheduled_for.ToDatetime(tzinfo=UTC)).total_seconds())
            self.overdrawn |= len(self.received) > self.granted
            if self.ack:
                self._spawn(self._perform(item))

    async def _perform(self, item: lease_pb.WorkItem) -> None:
        await self.start(item.run_id)
        result = success(item.run_id, self.name)
        await self._results_released.wait()
        await self._write(dispatch_pb.ConnectRequest(result=result))
        self.reported.append(item.run_id)
        await asyncio.sleep(self.credit_delay_s)  # a slow executor: capacity comes back late
        self.granted += 1
        await self._write(dispatch_pb.ConnectRequest(credit=dispatch_pb.Credit(count=1)))


def success(run_id: str, executor_id: str) -> lease_pb.RunResult:
    result = lease_pb.RunResult(
        run_id=run_id, status=pb.RUN_STATUS_SUCCESS, duration_ms=1, http_status=200, executor_id=executor_id
    )
    result.started_at.GetCurrentTime()
    result.finished_at.GetCurrentTime()
    return result


@pytest_asyncio.fixture
async def control(database_url: str) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(database_url)
    await plane.start()
    yield plane
    await plane.close()


@pytest_asyncio.fixture
async def scheduler(control: ControlPlane) -> AsyncIterator[Scheduler]:
    settings = SchedulerSettings(
        scheduler_addr="127.0.0.1:0",
        control_addr=control.address,
        service_token=SERVICE_TOKEN,
        scheduler_id="scheduler-under-test",
        drain_timeout_ms=5000,
        vanish_grace_ms=VANISH_GRACE_MS,
    )
    running = Scheduler(settings, SERVICE_TOKEN, SystemClock())
    await running.start()
    yield running
    await running.drain_and_stop()


@pytest_asyncio.fixture
async def executors(scheduler: Scheduler) -> AsyncIterator[Callable[..., FakeExecutor]]:
    """Makes connected-on-demand fake executors and disconnects them all at the end."""
    made: list[FakeExecutor] = []

    def make(name: str, capacity: int, **behaviour: object) -> FakeExecutor:
        executor = FakeExecutor(f"127.0.0.1:{scheduler.port}", name, capacity, **behaviour)  # type: ignore[arg-type]
        made.append(executor)
        return executor

    yield make
    await scheduler.drain_and_stop()  # while executors are still there to take what was claimed
    for executor in made:
        with contextlib.suppress(Exception):
            await executor.disconnect()


def seconds_between(runs: list[pb.RunSummary]) -> list[float]:
    times = sorted(r.scheduled_for.ToDatetime(tzinfo=UTC) for r in runs)
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


@pytest.mark.asyncio
async def test_an_interval_endpoint_runs_on_cadence_and_every_result_is_recorded(control, scheduler, executors):
    executor = executors("ex-1", capacity=4)
    await executor.connect()
    [endpoint_id] = await control.add_endpoints(1, interval_ms=1000)

    await eventually(lambda: len(executor.reported) >= 3, what="three runs performed")
    await scheduler.drain_and_stop()

    runs = await control.runs(endpoint_id=endpoint_id)
    assert sorted(r.run_id for r in runs) == sorted(executor.run_ids)
    assert {pb.RunStatus.Name(r.status) for r in runs} == {"RUN_STATUS_SUCCESS"}  # none left RUNNING
    assert all(0.99 <= gap <= 1.3 for gap in seconds_between(runs)), seconds_between(runs)
    assert max(scheduler.metrics.recent_lateness_s) < 0.2
    assert max(executor.lateness_s) < 0.25
    assert not executor.overdrawn


@pytest.mark.asyncio
async def test_due_runs_wait_for_credit_instead_of_overdrawing_a_slow_executor(control, scheduler, executors):
    executor = executors("slow", capacity=1, credit_delay_s=0.3)
    await executor.connect()
    endpoint_ids = await control.add_endpoints(3, interval_ms=1000)

    await eventually(lambda: len(executor.reported) >= 3, what="three runs performed one at a time")

    assert not executor.overdrawn
    assert {item.endpoint_id for item in executor.received[:3]} == set(endpoint_ids)
    # The three were due within milliseconds of each other; the later ones waited for credit, in due order.
    assert max(executor.lateness_s[:3]) >= 0.25
    firsts = executor.received[:3]
    assert [i.scheduled_for.ToDatetime() for i in firsts] == sorted(i.scheduled_for.ToDatetime() for i in firsts)
    performed = set(executor.reported[:3])

    async def recorded() -> bool:
        return {r.run_id for r in await control.runs(status=pb.RUN_STATUS_FILTER_SUCCESS)} >= performed

    await eventually_async(recorded, what="the three results recorded")


@pytest.mark.asyncio
async def test_runs_due_together_reach_a_batching_executor_in_one_message_and_each_at_its_own_due_time(
    control, scheduler, executors
):
    executor = executors("batching", capacity=20, batches=True)
    await executor.connect()
    endpoint_ids = await control.add_endpoints(6, interval_ms=3_600_000)  # no baseline run within the test
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    due = {endpoint_id: first + timedelta(milliseconds=400 * (n % 2)) for n, endpoint_id in enumerate(endpoint_ids)}
    for endpoint_id, run_at in due.items():
        request = pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id, ttl_minutes=5, reason="batching")
        request.run_at.FromDatetime(run_at)
        await control.call("ScheduleOneShotRun", request)

    await eventually(lambda: len(executor.received) >= 6, what="the six one-shot runs")

    assert executor.welcomed
    assert len(executor.work_messages) < len(executor.received)
    for items in executor.work_messages:
        assert len({item.scheduled_for.ToDatetime() for item in items}) == 1, "a batch holds runs due together"
    assert {item.endpoint_id: item.scheduled_for.ToDatetime(tzinfo=UTC) for item in executor.received} == due
    # Each run reached the executor at its own due time: never before it, and within the usual lateness after it.
    assert all(0 <= lateness < 0.25 for lateness in executor.lateness_s), executor.lateness_s
    assert not executor.overdrawn


async def statuses(control: ControlPlane, run_ids: set[str]) -> dict[str, str]:
    return {r.run_id: pb.RunStatus.Name(r.status) for r in await control.runs() if r.run_id in run_ids}


@pytest.mark.asyncio
async def test_work_sent_to_an_executor_that_vanishes_is_never_sent_again_and_is_settled_lost(
    control, scheduler, executors
):
    silent = executors("silent", capacity=5, ack=False)
    await silent.connect()
    await control.add_endpoints(2, interval_ms=1000)
    await eventually(lambda: len(silent.received) == 2, what="both runs sent to the first executor")
    stranded = set(silent.run_ids)
    await silent.start(silent.run_ids[0])  # begun or not, once on the wire a run may have reached its target

    healthy = executors("healthy", capacity=5)
    await healthy.connect()
    await silent.disconnect()

    async def lost() -> bool:
        return set((await statuses(control, stranded)).values()) == {"RUN_STATUS_LOST"}

    await eventually_async(lost, what="the stranded runs settled LOST")
    assert not stranded & set(healthy.run_ids)
    assert scheduler.metrics.vanished == 2
    assert scheduler.metrics.redispatched == 0


@pytest.mark.asyncio
async def test_work_given_back_with_released_goes_to_another_executor(control, scheduler, executors):
    draining = executors("draining", capacity=5, ack=False)
    await draining.connect()
    await control.add_endpoints(2, interval_ms=1000)
    await eventually(lambda: len(draining.received) == 2, what="both runs sent to the first executor")
    given_back = set(draining.run_ids)
    await draining._write(dispatch_pb.ConnectRequest(draining=dispatch_pb.Draining()))
    healthy = executors("healthy", capacity=5)
    await healthy.connect()

    await draining.give_back(sorted(given_back))

    await eventually(lambda: given_back <= set(healthy.reported), what="released runs performed elsewhere")

    async def succeeded() -> bool:
        return set((await statuses(control, given_back)).values()) == {"RUN_STATUS_SUCCESS"}

    await eventually_async(succeeded, what="released runs recorded as SUCCESS")
    assert (scheduler.metrics.released, scheduler.metrics.redispatched) == (2, 2)


@pytest.mark.asyncio
async def test_a_run_an_executor_holds_is_not_settled_lost_when_its_stream_breaks(control, scheduler, executors):
    origin = executors("ex-1", capacity=5, ack=False)
    await origin.connect()
    await control.add_endpoints(2, interval_ms=1000)
    await eventually(lambda: len(origin.received) == 2, what="both runs sent")
    held, vanished = origin.run_ids
    other = executors("ex-1-again", capacity=5)
    await other.connect()

    await origin.disconnect()
    await other.hold([held])  # the executor goes on with it and says so on its other stream

    async def settled() -> bool:
        return (await statuses(control, {held, vanished})).get(vanished) == "RUN_STATUS_LOST"

    await eventually_async(settled, what="the run nobody holds settled LOST")
    assert (await statuses(control, {held}))[held] == "RUN_STATUS_RUNNING"
    await other.report(held)

    async def reported() -> bool:
        return (await statuses(control, {held}))[held] == "RUN_STATUS_SUCCESS"

    await eventually_async(reported, what="the held run's result recorded")
    await eventually(lambda: held in other.acked, what="its ack on the stream it came on")
    assert scheduler.metrics.vanished == 1


@pytest.mark.asyncio
async def test_results_are_acknowledged_only_once_the_control_plane_recorded_them(control, scheduler, executors):
    executor = executors("ex-1", capacity=2, hold_results=True)
    await executor.connect()
    await control.add_endpoints(1, interval_ms=1000)
    await eventually(lambda: len(executor.received) == 1, what="a run dispatched")
    [run_id] = executor.run_ids

    await control.stop()
    executor.release_results()
    await eventually(lambda: executor.reported == [run_id], what="the result sent")
    await eventually(lambda: scheduler.metrics.report_failures >= 2, what="reports failing during the outage")
    assert executor.acked == []  # the scheduler has it, but it is not recorded: the executor must keep it

    await control.start()
    await eventually(lambda: executor.acked == [run_id], what="the ack once recorded")
    assert (await statuses(control, {run_id}))[run_id] == "RUN_STATUS_SUCCESS"


@pytest.mark.asyncio
async def test_a_session_the_control_plane_ended_drops_the_runs_it_held_and_a_new_one_carries_on(
    control, scheduler, executors
):
    executor = executors("ex-1", capacity=1, hold_results=True)  # takes one run and keeps its slot
    await executor.connect()
    await control.add_endpoints(3, interval_ms=1000)
    await eventually(lambda: scheduler.pending() >= 1, what="claimed runs waiting for credit")
    old_session = scheduler.session.session_id
    before = set(executor.run_ids)

    # What the control plane does when the session's heartbeats stop for its TTL: end it, hand its runs back.
    now = SystemClock().now()
    control.pipeline.heartbeat(old_session, "scheduler-under-test", now, timedelta(seconds=2), closing=True)

    await eventually(lambda: scheduler.metrics.sessions_lost == 1, what="the scheduler to learn its session ended")
    assert scheduler.metrics.dropped >= 1
    await eventually(lambda: scheduler.session.valid(), what="a new session")
    assert scheduler.session.session_id != old_session

    executor.release_results()  # credit again: runs claimed under the new session go out
    await eventually(lambda: len(set(executor.run_ids) - before) >= 2, what="runs of the new session")
    fresh = set(executor.run_ids) - before

    async def recorded() -> bool:
        return set((await statuses(control, fresh)).values()) <= {"RUN_STATUS_SUCCESS", "RUN_STATUS_RUNNING"} and (
            len(await statuses(control, fresh)) == len(fresh)
        )

    await eventually_async(recorded, what="every run dispatched since to be one the control plane knows")


@pytest.mark.asyncio
async def test_results_reported_while_the_control_plane_is_down_arrive_after_it_returns(
    control, scheduler, executors, caplog
):
    caplog.set_level(logging.INFO, logger="pacer.scheduler")
    executor = executors("ex-1", capacity=2, hold_results=True)
    await executor.connect()
    [endpoint_id] = await control.add_endpoints(1, interval_ms=1000)
    await eventually(lambda: len(executor.received) == 1, what="a run dispatched")

    await control.stop()
    executor.release_results()
    await eventually(lambda: scheduler.metrics.report_failures >= 2, what="reports failing during the outage")
    await control.start()

    [run_id] = executor.run_ids[:1]

    async def recorded() -> bool:
        return any(r.run_id == run_id and r.status == pb.RUN_STATUS_SUCCESS for r in await control.runs())

    await eventually_async(recorded, what="the result recorded after the outage")
    assert endpoint_id == executor.received[0].endpoint_id
    unreachable = [r for r in caplog.records if getattr(r, "event", None) == "control.unreachable"]
    assert sum(r.caller == "results" for r in unreachable) == 1  # one warning per outage, not one per retry


@pytest.mark.asyncio
async def test_only_the_service_token_may_open_an_executor_stream(control, scheduler):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scheduler.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "pacer.internal.v1.DispatchService", "liveness"):
            # Ready once a claim succeeded: the control plane is reachable.
            await eventually_async(lambda s=service: serving(health, s), what=f"{service!r} SERVING")

        stub = dispatch_grpc.DispatchServiceStub(channel)
        hello = dispatch_pb.ConnectRequest(hello=dispatch_pb.Hello(executor_id="x", capacity=1))
        assert await refusal(stub, [hello], bearer(control.key)) == grpc.StatusCode.PERMISSION_DENIED
        assert await refusal(stub, [hello], bearer("svc_wrong")) == grpc.StatusCode.UNAUTHENTICATED
        assert await refusal(stub, [hello], ()) == grpc.StatusCode.UNAUTHENTICATED
        credit = dispatch_pb.ConnectRequest(credit=dispatch_pb.Credit(count=1))
        assert await refusal(stub, [credit], bearer(SERVICE_TOKEN)) == grpc.StatusCode.INVALID_ARGUMENT
        bad_credit = dispatch_pb.ConnectRequest(credit=dispatch_pb.Credit(count=-1))
        assert await refusal(stub, [hello, bad_credit], bearer(SERVICE_TOKEN)) == grpc.StatusCode.INVALID_ARGUMENT


async def serving(health: health_pb2_grpc.HealthStub, service: str) -> bool:
    answer = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


async def refusal(
    stub: dispatch_grpc.DispatchServiceStub, messages: list[dispatch_pb.ConnectRequest], metadata: object
) -> grpc.StatusCode:
    """The status code a stream that sends `messages` ends with."""
    call = stub.Connect(metadata=metadata, timeout=5)
    with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
        for message in messages:
            await call.write(message)
    with contextlib.suppress(grpc.RpcError):
        async for _ in call:
            pass
    return await call.code()


eventually_async = functools.partial(polling.eventually, timeout_s=8.0, poll_s=0.05)  # a coroutine function
