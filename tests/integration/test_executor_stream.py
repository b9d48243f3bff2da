"""The executor in-process against a fake scheduler (a real grpc.aio server) and a real local HTTP target.

The fake scheduler records every message the executor sends on each Connect call and sends the work items a test
queues, by default only as many as the executor granted credits for. Only loopback addresses are contacted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import pytest
import pytest_asyncio
from aiohttp import web

from pacer.control.v1 import control_service_pb2 as control_pb
from pacer.internal.v1 import dispatch_service_pb2 as dispatch_pb
from pacer.internal.v1 import dispatch_service_pb2_grpc as dispatch_grpc
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.credentials import bearer
from pacer_common.settings import Operations
from pacer_executor.egress import EgressPolicy
from pacer_executor.main import serve
from pacer_executor.settings import ExecutorSettings
from tests.support import polling

TOKEN = "svc_test-token"
EXECUTOR_ID = "exec-test"
DEADLINE_S = 10.0
SLOW_S = 0.2


eventually = functools.partial(polling.eventually, timeout_s=DEADLINE_S)


def logged(caplog: pytest.LogCaptureFixture, event: str) -> bool:
    return any(getattr(record, "event", None) == event for record in caplog.records)


@dataclass
class Connection:
    """One Connect call as the fake scheduler saw it."""

    metadata: dict[str, str]
    context: grpc.aio.ServicerContext
    received: list[dispatch_pb.ConnectRequest] = field(default_factory=list)
    credits: int = 0
    ended: bool = False
    credit_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def write(self, response: dispatch_pb.ConnectResponse) -> None:
        async with self.write_lock:  # a call takes one write at a time
            await self.context.write(response)

    async def ack(self, *run_ids: str) -> None:
        await self.write(dispatch_pb.ConnectResponse(ack=dispatch_pb.Ack(run_ids=run_ids)))

    def record(self, message: dispatch_pb.ConnectRequest) -> None:
        self.received.append(message)
        if message.HasField("hello"):
            self.credits += message.hello.capacity
        elif message.HasField("credit"):
            self.credits += message.credit.count
        elif message.HasField("progress"):
            self.credits += message.progress.credit
        self.credit_arrived.set()

    def kinds(self) -> list[str]:
        return [str(message.WhichOneof("kind")) for message in self.received]

    def started(self) -> list[str]:
        """Runs reported begun, in Started or in Progress messages."""
        singles = ([m.started.run_id] if m.HasField("started") else [] for m in self.received)
        batched = (list(m.progress.started_run_ids) for m in self.received)
        return [run_id for one, many in zip(singles, batched, strict=True) for run_id in (*one, *many)]

    def results(self) -> list[lease_pb.RunResult]:
        """Results, in RunResult or in Progress messages."""
        return [r for m in self.received for r in ([m.result] if m.HasField("result") else m.progress.results)]

    def held(self) -> list[str]:
        return [run_id for m in self.received if m.HasField("held") for run_id in m.held.run_ids]

    def released(self) -> list[str]:
        return [run_id for m in self.received if m.HasField("released") for run_id in m.released.run_ids]

    def most_started_at_once(self) -> int:
        """The most runs the executor reported started and not yet finished, at any point of the stream."""
        running = peak = 0
        for kind in self.kinds():
            running += {"started": 1, "result": -1}.get(kind, 0)
            peak = max(peak, running)
        return peak

    def result_for(self, run_id: str) -> lease_pb.RunResult | None:
        return next((result for result in self.results() if result.run_id == run_id), None)


class FakeScheduler(dispatch_grpc.DispatchServiceServicer):
    """DispatchService that records what executors send and sends queued work items.

    With `respect_credits` it sends an item only while the executor has credit, like the real scheduler;
    without, it sends everything at once, to test the executor's own bound. With `auto_ack` it acknowledges every
    result at once, as the real scheduler does once the control plane recorded it.
    """

    def __init__(self, *, respect_credits: bool = True, auto_ack: bool = True, batches: bool = False) -> None:
        self.connections: list[Connection] = []
        self.auto_ack = auto_ack
        self._respect_credits = respect_credits
        self._batches = batches
        self._work: asyncio.Queue[lease_pb.WorkItem] = asyncio.Queue()
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def last(self) -> Connection:
        return self.connections[-1]

    def send(self, *items: lease_pb.WorkItem) -> None:
        for item in items:
            self._work.put_nowait(item)

    async def start(self) -> None:
        """Listen on an ephemeral port, or again on the previous one after `stop`."""
        self._server = grpc.aio.server()
        dispatch_grpc.add_DispatchServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port(self.address)
        assert port, f"cannot listen on {self.address}"
        self.port = port
        await self._server.start()

    async def stop(self) -> None:
        """Stop at once: open streams break."""
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    # The reader/writer form of a grpc.aio streaming handler: it reads and writes through `context`, returns None.
    async def Connect(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:  # type: ignore[override]
        connection = Connection(metadata=dict(context.invocation_metadata()), context=context)
        self.connections.append(connection)
        sender = asyncio.create_task(self._send_work(connection))
        try:
            while (message := await context.read()) is not grpc.aio.EOF:
                connection.record(message)
                if self._batches and message.hello.batches:
                    await connection.write(dispatch_pb.ConnectResponse(welcome=dispatch_pb.Welcome(batches=True)))
                run_ids = [r.run_id for r in ([message.result] if message.HasField("result") else [])]
                run_ids += [r.run_id for r in message.progress.results]
                if self.auto_ack and run_ids:
                    await connection.ack(*run_ids)
        finally:
            connection.ended = True
            sender.cancel()

    async def _send_work(self, connection: Connection) -> None:
        while True:
            items = [await self._work.get()]
            while self._respect_credits and connection.credits < 1:
                connection.credit_arrived.clear()
                await connection.credit_arrived.wait()
            while self._batches and not self._work.empty() and connection.credits > len(items):
                items.append(self._work.get_nowait())  # whatever is queued too goes in one WorkBatch
            connection.credits -= len(items)
            if self._batches:
                await connection.write(dispatch_pb.ConnectResponse(work_batch=dispatch_pb.WorkBatch(items=items)))
            else:
                await connection.write(dispatch_pb.ConnectResponse(work=items[0]))


class Target:
    """A real HTTP server on 127.0.0.1: `/ok` answers at once, `/slow` after SLOW_S, `/gated` once `gate` is set.

    It records the run id of every request and the most requests it ever had in progress at once.
    """

    def __init__(self) -> None:
        self.run_ids: list[str] = []
        self.answered: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def url(self, path: str) -> str:
        port: int = self._sock.getsockname()[1]
        return f"http://127.0.0.1:{port}{path}"

    async def start(self) -> None:
        self._sock.bind(("127.0.0.1", 0))
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def close(self) -> None:
        self.gate.set()
        await self._runner.cleanup()
        self._sock.close()

    async def _handle(self, request: web.Request) -> web.Response:
        run_id = request.headers.get("X-Pacer-Run-Id", "")
        self.run_ids.append(run_id)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if request.path == "/slow":
                await asyncio.sleep(SLOW_S)
            elif request.path == "/gated":
                await self.gate.wait()
        finally:
            self.in_flight -= 1
        self.answered.append(run_id)
        return web.Response(text="ok")


class RunningExecutor:
    """The executor's composition root (`serve`) as a task, stopped the way a signal stops it."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.stop = asyncio.Event()
        policy = EgressPolicy.from_strings(settings.egress_allow)
        self.task = asyncio.create_task(serve(settings, policy, bearer(TOKEN), self.stop))

    async def shut_down(self) -> None:
        """Request shutdown and wait until `serve` returned."""
        self.stop.set()
        await asyncio.wait_for(self.task, DEADLINE_S)


def executor_settings(*addresses: str, capacity: int) -> ExecutorSettings:
    return ExecutorSettings(
        scheduler_addrs=",".join(addresses),
        executor_id=EXECUTOR_ID,
        capacity=capacity,
        egress_allow="loopback",
        service_token=TOKEN,
        drain_timeout_ms=int(DEADLINE_S * 1000),
        # the executor's fixed default ports are for processes, not for tests in one process
        operations=Operations(metrics_addr="", health_addr=""),
    )


def work(run_id: str, url: str) -> lease_pb.WorkItem:
    item = lease_pb.WorkItem(
        run_id=run_id, endpoint_id="ep_test", tenant_id="tn_test", url=url, method="GET", timeout_ms=5000
    )
    item.scheduled_for.FromDatetime(datetime.now(UTC))
    return item


@pytest_asyncio.fixture
async def target() -> AsyncIterator[Target]:
    running = Target()
    await running.start()
    yield running
    await running.close()


@pytest_asyncio.fixture
async def scheduler() -> AsyncIterator[FakeScheduler]:
    fake = FakeScheduler()
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture
async def executors() -> AsyncIterator[Callable[[ExecutorSettings], RunningExecutor]]:
    """Starts executors; each is shut down at teardown unless the test did."""
    started: list[RunningExecutor] = []

    def start(settings: ExecutorSettings) -> RunningExecutor:
        started.append(RunningExecutor(settings))
        return started[-1]

    yield start
    for executor in started:
        if not executor.task.done():
            await executor.shut_down()


@pytest.mark.asyncio
async def test_hello_then_started_result_and_credit(
    scheduler: FakeScheduler, target: Target, executors: Callable[[ExecutorSettings], RunningExecutor]
) -> None:
    executors(executor_settings(scheduler.address, capacity=3))
    await eventually(lambda: bool(scheduler.connections) and bool(scheduler.last.received), "the hello")

    connection = scheduler.last
    assert connection.received[0].hello == dispatch_pb.Hello(executor_id=EXECUTOR_ID, capacity=3, batches=True)
    assert connection.metadata["authorization"] == f"Bearer {TOKEN}"

    scheduler.send(work("run_1", target.url("/ok")))
    await eventually(lambda: "credit" in connection.kinds(), "the result and the credit")

    assert target.run_ids == ["run_1"]
    assert connection.kinds() == ["hello", "started", "result", "credit"]
    assert connection.started() == ["run_1"]
    result = connection.result_for("run_1")
    assert result is not None
    assert result.status == control_pb.RUN_STATUS_SUCCESS
    assert result.http_status == 200
    assert result.response_body == "ok"
    assert result.executor_id == EXECUTOR_ID
    assert result.started_at.ToDatetime() <= result.finished_at.ToDatetime()
    assert connection.received[-1].credit.count == 1


@pytest.mark.asyncio
async def test_a_welcomed_executor_takes_a_work_batch_and_reports_runs_results_and_credits_in_few_messages(
    target: Target, executors: Callable[[ExecutorSettings], RunningExecutor]
) -> None:
    scheduler = FakeScheduler(batches=True)
    await scheduler.start()
    try:
        executors(executor_settings(scheduler.address, capacity=4))
        await eventually(lambda: bool(scheduler.connections) and bool(scheduler.last.received), "the hello")
        connection = scheduler.last
        run_ids = [f"run_{n}" for n in range(4)]
        scheduler.send(*(work(run_id, target.url("/ok")) for run_id in run_ids))
        await eventually(lambda: len(connection.results()) == 4 and connection.credits == 4, "results and credits")

        assert sorted(target.run_ids) == run_ids
        assert sorted(connection.started()) == run_ids
        assert [result.status for result in connection.results()] == [control_pb.RUN_STATUS_SUCCESS] * 4
        assert set(connection.kinds()) == {"hello", "progress"}
        # One message each for the four Started, four results and four credits, were it not for Progress.
        assert len(connection.received) - 1 < 12
        begun: set[str] = set()
        for message in connection.received[1:]:
            begun.update(message.progress.started_run_ids)
            finished = {result.run_id for result in message.progress.results}
            assert finished <= begun, "a run is reported begun before, or with, its result"
            assert message.progress.credit == len(finished), "a result and its credit travel together"
    finally:
        await scheduler.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("respect_credits", [True, False], ids=["scheduler-respects-credits", "greedy-scheduler"])
async def test_never_more_runs_at_once_than_capacity(
    respect_credits: bool, target: Target, executors: Callable[[ExecutorSettings], RunningExecutor]
) -> None:
    scheduler = FakeScheduler(respect_credits=respect_credits)
    await scheduler.start()
    try:
        executors(executor_settings(scheduler.address, capacity=2))
        run_ids = [f"run_{n}" for n in range(5)]
        scheduler.send(*(work(run_id, target.url("/slow")) for run_id in run_ids))
        await eventually(
            lambda: bool(scheduler.connections) and scheduler.last.kinds().count("credit") == 5, "five credits back"
        )

        connection = scheduler.last
        assert target.max_in_flight == 2
        assert connection.most_started_at_once() == 2
        assert sorted(target.run_ids) == run_ids
        assert [result.status for result in connection.results()] == [control_pb.RUN_STATUS_SUCCESS] * 5
    finally:
        await scheduler.stop()


@pytest.mark.asyncio
async def test_connects_to_every_scheduler_with_a_share_of_the_capacity(
    scheduler: FakeScheduler, target: Target, executors: Callable[[ExecutorSettings], RunningExecutor]
) -> None:
    other = FakeScheduler()
    await other.start()
    try:
        executors(executor_settings(scheduler.address, other.address, capacity=3))
        await eventually(lambda: all(fake.connections and fake.last.received for fake in (scheduler, other)), "hellos")
        assert scheduler.last.received[0].hello.capacity == 2
        assert other.last.received[0].hello.capacity == 1

        other.send(work("run_other", target.url("/ok")))
        await eventually(lambda: other.last.result_for("run_other") is not None, "the result on the second stream")
        assert scheduler.last.results() == []
    finally:
        await other.stop()


@pytest.mark.asyncio
async def test_result_of_a_run_in_flight_during_an_outage_is_sent_after_reconnecting(
    scheduler: FakeScheduler,
    target: Target,
    executors: Callable[[ExecutorSettings], RunningExecutor],
    caplog: pytest.LogCaptureFixture,
) -> None:
    executors(executor_settings(scheduler.address, capacity=2))
    scheduler.send(work("run_outage", target.url("/gated")))
    await eventually(lambda: bool(scheduler.connections) and scheduler.last.started() == ["run_outage"], "Started")
    first = scheduler.last

    await scheduler.stop()
    await eventually(lambda: logged(caplog, "scheduler.unreachable"), "the executor to notice the outage")
    target.gate.set()
    await eventually(lambda: target.answered == ["run_outage"], "the target's answer during the outage")
    await scheduler.start()
    await eventually(lambda: len(scheduler.connections) == 2, "the reconnect")
    second = scheduler.last
    await eventually(lambda: second.result_for("run_outage") is not None, "the result after reconnecting")

    assert first.results() == []
    # The new stream hears first that the run goes on (Held: never hand it out again), then its result.
    assert second.kinds() == ["hello", "held", "result"]
    assert second.held() == ["run_outage"]
    result = second.result_for("run_outage")
    assert result is not None
    assert result.status == control_pb.RUN_STATUS_SUCCESS
    # The run's credit belonged to the broken stream; the new stream's Hello granted its full share again.
    assert "credit" not in second.kinds()
    assert target.run_ids == ["run_outage"]


@pytest.mark.asyncio
async def test_drain_finishes_the_run_in_flight_and_gives_back_what_it_will_not_begin(
    scheduler: FakeScheduler, target: Target, executors: Callable[[ExecutorSettings], RunningExecutor]
) -> None:
    executor = executors(executor_settings(scheduler.address, capacity=2))
    scheduler.send(work("run_draining", target.url("/gated")))
    await eventually(lambda: bool(scheduler.connections) and scheduler.last.started() == ["run_draining"], "Started")
    connection = scheduler.last

    executor.stop.set()
    await eventually(lambda: "draining" in connection.kinds(), "Draining")
    scheduler.send(work("run_too_late", target.url("/ok")))
    await eventually(lambda: connection.released() == ["run_too_late"], "the late item given back")
    target.gate.set()
    await asyncio.wait_for(executor.task, DEADLINE_S)

    assert connection.kinds() == ["hello", "started", "draining", "released", "result"]
    result = connection.result_for("run_draining")
    assert result is not None
    assert result.status == control_pb.RUN_STATUS_SUCCESS
    assert target.run_ids == ["run_draining"]
    await eventually(lambda: connection.ended, "the stream to end")


@pytest.mark.asyncio
async def test_drain_gives_back_items_beyond_capacity_and_waits_for_the_ack_of_each_result(
    target: Target, executors: Callable[[ExecutorSettings], RunningExecutor]
) -> None:
    scheduler = FakeScheduler(respect_credits=False, auto_ack=False)
    await scheduler.start()
    try:
        executor = executors(executor_settings(scheduler.address, capacity=1))
        scheduler.send(work("run_begun", target.url("/gated")), work("run_waiting", target.url("/ok")))
        await eventually(lambda: bool(scheduler.connections) and scheduler.last.started() == ["run_begun"], "Started")
        connection = scheduler.last

        executor.stop.set()
        await eventually(lambda: "draining" in connection.kinds(), "Draining")
        assert connection.released() == ["run_waiting"]
        target.gate.set()
        await eventually(lambda: connection.result_for("run_begun") is not None, "the result")
        await asyncio.sleep(0.3)  # an executor that did not wait for the ack would be gone by now
        assert not executor.task.done()

        await connection.ack("run_begun")
        await asyncio.wait_for(executor.task, DEADLINE_S)
        assert target.run_ids == ["run_begun"]
    finally:
        await scheduler.stop()


@pytest.mark.asyncio
async def test_an_unacknowledged_result_is_sent_again_on_the_next_stream_and_an_acknowledged_one_is_not(
    target: Target, executors: Callable[[ExecutorSettings], RunningExecutor]
) -> None:
    scheduler = FakeScheduler(auto_ack=False)
    await scheduler.start()
    try:
        executors(executor_settings(scheduler.address, capacity=2))
        scheduler.send(work("run_acked", target.url("/ok")), work("run_unacked", target.url("/ok")))
        await eventually(lambda: bool(scheduler.connections) and len(scheduler.last.results()) == 2, "both results")
        first = scheduler.last
        await first.ack("run_acked")
        # The stream is ordered: once the next item's result is back, the executor has read the ack before it.
        scheduler.send(work("run_marker", target.url("/ok")))
        await eventually(lambda: first.result_for("run_marker") is not None, "the marker's result")
        await first.ack("run_marker")
        scheduler.send(work("run_marker_2", target.url("/ok")))
        await eventually(lambda: first.result_for("run_marker_2") is not None, "the second marker's result")

        await scheduler.stop()  # it died before the control plane recorded run_unacked
        scheduler.auto_ack = True
        await scheduler.start()
        await eventually(lambda: len(scheduler.connections) == 2, "the reconnect")
        second = scheduler.last
        await eventually(lambda: len(second.results()) >= 2, "the unacknowledged results sent again")

        assert sorted(result.run_id for result in second.results()) == ["run_marker_2", "run_unacked"]
        assert sorted(target.run_ids) == ["run_acked", "run_marker", "run_marker_2", "run_unacked"]  # none ran twice
    finally:
        await scheduler.stop()


@pytest.mark.asyncio
async def test_a_run_of_a_broken_stream_is_held_on_another_stream_at_once_and_reports_there(
    scheduler: FakeScheduler, target: Target, executors: Callable[[ExecutorSettings], RunningExecutor]
) -> None:
    other = FakeScheduler()
    await other.start()
    try:
        executors(executor_settings(scheduler.address, other.address, capacity=4))
        await eventually(lambda: all(fake.connections for fake in (scheduler, other)), "both streams")
        scheduler.send(work("run_gated", target.url("/gated")), work("run_ok", target.url("/ok")))
        await eventually(lambda: scheduler.last.result_for("run_ok") is not None, "the quick run's result")
        await eventually(lambda: "run_gated" in scheduler.last.started(), "the gated run begun")

        await scheduler.stop()
        await eventually(lambda: other.last.held() == ["run_gated"], "Held on the other stream")
        assert other.last.results() == []
        target.gate.set()
        await eventually(lambda: other.last.result_for("run_gated") is not None, "the result on the other stream")

        assert target.run_ids.count("run_gated") == 1
    finally:
        await other.stop()


@pytest.mark.asyncio
async def test_a_scheduler_that_never_acknowledges_does_not_stop_the_executor_for_good(
    target: Target,
    executors: Callable[[ExecutorSettings], RunningExecutor],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("pacer_executor.stream.NO_ACKS_AFTER_S", 0.3)
    older = FakeScheduler(auto_ack=False)  # a release before acks, say after a rollback
    await older.start()
    try:
        settings = dataclasses.replace(executor_settings(older.address, capacity=1), max_unacked_results=1)
        executors(settings)
        run_ids = [f"run_{n}" for n in range(3)]
        older.send(*(work(run_id, target.url("/ok")) for run_id in run_ids))

        await eventually(lambda: bool(older.connections) and len(older.last.results()) == 3, "every result")
        assert logged(caplog, "stream.no_acks")
        assert sorted(target.run_ids) == run_ids
    finally:
        await older.stop()
