"""The executor's stream to one scheduler: Hello and credits out, work items and acks in; Started, results, Held,
Released and Draining out.

`SchedulerStream` keeps the stream up: it connects, says Hello with its share of the capacity, serves the stream
through a `_Link`, and reconnects with jittered exponential backoff when the stream breaks or the scheduler is
down. A link has one writer task (a gRPC call takes one write at a time), fed by an `_Outbox`, and one reader task.

Batching: the Hello says the executor batches; a scheduler that answers with Welcome gets the runs begun, their
results and the credits they give back in Progress messages, one per write: whatever was queued while the previous
write was on the wire goes out together, so a busy stream sends few messages and an idle one adds no delay. It may
send several work items due now in one WorkBatch. A scheduler that sends no Welcome gets one message per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Final, Protocol

import grpc

from pacer.internal.v1 import dispatch_service_pb2 as dispatch_pb
from pacer.internal.v1 import dispatch_service_pb2_grpc as dispatch_grpc
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common import retries, runs
from pacer_common.outbox import Outbox
from pacer_common.retries import NO_RETRY
from pacer_common.retrying import JitteredBackoff
from pacer_executor.runner import Outcome, WorkItem
from pacer_executor.worker import Worker

log = logging.getLogger("pacer.executor.stream")

INITIAL_BACKOFF_S: Final = 0.1
# A restarted scheduler has no executors, and claims nothing, until they come back: keep the wait short.
MAX_BACKOFF_S: Final = 2.0


def reconnect_backoff(draw: Callable[[], float]) -> JitteredBackoff:
    """Delays between connection attempts, jitter drawn from `draw`, so executors restarted together do not
    reconnect in step."""
    return JitteredBackoff(INITIAL_BACKOFF_S, MAX_BACKOFF_S, draw)


# A stream that stayed up this long resets the backoff; one refused right after Hello (say, a bad token) does not,
# so a scheduler that turns the executor away is not retried ten times a second.
HEALTHY_AFTER_S: Final = 1.0
# A Progress takes no more once it holds this much, so it stays far below gRPC's default 4 MiB message limit on the
# scheduler's side (one result, at most the capture limit of body, may still go over it).
MAX_PROGRESS_BYTES: Final = 1024 * 1024
# How long a closing stream waits for the scheduler to end its side after the executor half-closed.
CLOSE_GRACE_S: Final = 2.0
# A scheduler that acknowledged no result this long after the first one was written is of a release before acks
# (say, after a rollback): results written to it count as delivered, as they did then, so the executor does not
# stop taking work when its store of unacknowledged results fills up.
NO_ACKS_AFTER_S: Final = 30.0


ChannelFactory = Callable[[str], grpc.aio.Channel]


def plaintext_channel(address: str) -> grpc.aio.Channel:
    """A plaintext channel to `address`, without interceptors."""
    return grpc.aio.insecure_channel(address)


@dataclass(frozen=True)
class StreamOptions:
    """What a stream announces and carries: the executor's id, this stream's share of the capacity (its Hello
    and first credit grant) and the call metadata (the service credential); `open_channel` makes the channel of
    each connection attempt (TLS and metrics interceptors are its business)."""

    executor_id: str
    capacity: int
    metadata: tuple[tuple[str, str], ...]
    open_channel: ChannelFactory = plaintext_channel


def decode_work(item: lease_pb.WorkItem) -> WorkItem:
    """The runner's view of a work item received from the scheduler."""
    return WorkItem(
        run_id=item.run_id,
        endpoint_id=item.endpoint_id,
        scheduled_for=item.scheduled_for.ToDatetime(tzinfo=UTC),
        url=item.url,
        method=item.method,
        headers=dict(item.headers),
        body=item.body,
        timeout_ms=item.timeout_ms,
        tenant_id=item.tenant_id,
        signing_secrets=tuple(item.signing_secrets),
        retry=retries.policy(item.retry.max_attempts, item.retry.backoff_ms) if item.HasField("retry") else NO_RETRY,
        lease_expires_at=item.lease_expires_at.ToDatetime(tzinfo=UTC) if item.HasField("lease_expires_at") else None,
    )


def encode_result(outcome: Outcome, executor_id: str) -> lease_pb.RunResult:
    """The RunResult reporting `outcome`; `started_at` stays unset for BLOCKED runs, which never sent anything."""
    result = lease_pb.RunResult()
    fill_result(result, outcome, executor_id)
    return result


def fill_result(result: lease_pb.RunResult, outcome: Outcome, executor_id: str) -> None:
    """Write `outcome` into an empty `result` (one added to a Progress in place, so it is never copied)."""
    result.run_id = outcome.run_id
    result.status = runs.to_proto(runs.RunStatus(outcome.status))
    result.duration_ms = outcome.duration_ms
    result.http_status = outcome.http_status
    # Unset strings stay off the wire as they would when left empty; assigning only what is set saves the calls.
    if outcome.error_message:
        result.error_message = outcome.error_message
    if outcome.response_body:
        result.response_body = outcome.response_body
    result.response_truncated = outcome.response_truncated
    result.executor_id = executor_id
    if outcome.status != "BLOCKED":
        result.started_at.FromDatetime(outcome.started_at)
    result.finished_at.FromDatetime(outcome.finished_at)
    for attempt in outcome.attempts:
        attempt.fill(result.attempts.add())


class ConnectCall(Protocol):
    """The part of grpc.aio's stream-stream call object a link uses."""

    async def wait_for_connection(self) -> None: ...

    async def write(self, request: dispatch_pb.ConnectRequest) -> None: ...

    async def read(self) -> object: ...

    async def done_writing(self) -> None: ...

    def cancel(self) -> bool: ...


class StreamEnded(Exception):
    """The stream ended; `reason` says how, for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Outbox(Outbox[dispatch_pb.ConnectRequest]):
    """What the executor has to say on one stream, in order, for its one writer.

    Once `batches` is on, runs begun, results and credits queued back to back go into one Progress (see
    pacer_common.outbox), of at most MAX_PROGRESS_BYTES. Any other message closes it, so Released and Draining keep
    their place after the results queued before them.
    """

    def __init__(self) -> None:
        super().__init__(MAX_PROGRESS_BYTES)
        self.batches = False

    def progress(self) -> dispatch_pb.Progress:
        """The Progress to add to: the open one, else a new one queued last."""
        return self.batch(_new_progress).progress


def _new_progress() -> dispatch_pb.ConnectRequest:
    return dispatch_pb.ConnectRequest(progress=dispatch_pb.Progress())


class _Link:
    """One open Connect call after Hello: the worker's `Link` to this scheduler.

    `credits` mirrors the scheduler's count: the Hello share, minus items received, plus credits granted. Items
    beyond it (a scheduler sending more than granted) wait here unacknowledged until a credit frees up.
    """

    def __init__(self, call: ConnectCall, worker: Worker, options: StreamOptions) -> None:
        self._call = call
        self._worker = worker
        self._executor_id = options.executor_id
        self._credits = options.capacity
        self._backlog: deque[WorkItem] = deque()
        self._outbox = _Outbox()
        self._open = True
        self._leaving = False  # said Draining: whatever still arrives is given back
        self._acks = _AckSupport(worker.acked)

    @property
    def is_open(self) -> bool:
        return self._open

    def send_started(self, run_id: str) -> None:
        if self._outbox.batches:
            self._outbox.progress().started_run_ids.append(run_id)
            return
        self._outbox.put(dispatch_pb.ConnectRequest(started=dispatch_pb.Started(run_id=run_id)))

    def send_result(self, outcome: Outcome) -> None:
        if self._outbox.batches:
            result = self._outbox.progress().results.add()
            fill_result(result, outcome, self._executor_id)
            self._outbox.added(result.ByteSize())
            return
        self._outbox.put(dispatch_pb.ConnectRequest(result=encode_result(outcome, self._executor_id)))

    def send_credit(self, count: int) -> None:
        self._credits += count
        if self._outbox.batches:
            self._outbox.progress().credit += count
        else:
            self._outbox.put(dispatch_pb.ConnectRequest(credit=dispatch_pb.Credit(count=count)))
        self._admit()

    def send_held(self, run_ids: Sequence[str]) -> None:
        self._outbox.put(dispatch_pb.ConnectRequest(held=dispatch_pb.Held(run_ids=run_ids)))

    def send_released(self, run_ids: Sequence[str]) -> None:
        self._outbox.put(dispatch_pb.ConnectRequest(released=dispatch_pb.Released(run_ids=run_ids)))

    def send_draining(self, released: Sequence[str]) -> None:
        self._leaving = True
        backlog = [item.run_id for item in self._backlog]
        self._backlog.clear()
        if released or backlog:
            self.send_released([*released, *backlog])
        self._outbox.put(dispatch_pb.ConnectRequest(draining=dispatch_pb.Draining()))

    def finish(self) -> None:
        """Half-close the stream once everything queued so far is written."""
        self._outbox.put(None)

    async def serve(self) -> None:
        """Exchange messages until the stream ends; raises StreamEnded unless it ended because of `finish`."""
        reader = asyncio.create_task(self._read())
        writer = asyncio.create_task(self._write())
        try:
            done, _ = await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
            if writer in done and writer.exception() is None:
                # We half-closed; the scheduler ends its side when it has read everything.
                await asyncio.wait((reader,), timeout=CLOSE_GRACE_S)
                return
            for task in done:
                _raise_ended(task)
        finally:
            self._open = False
            self._acks.cancel()
            reader.cancel()
            writer.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            self._call.cancel()

    async def _read(self) -> None:
        while True:
            response = await self._call.read()
            if not isinstance(response, dispatch_pb.ConnectResponse):
                raise StreamEnded("the scheduler ended the stream")
            match response.WhichOneof("kind"):
                case "work":
                    self._receive(decode_work(response.work))
                case "work_batch":
                    for item in response.work_batch.items:
                        self._receive(decode_work(item))
                case "ack":
                    self._acks.seen()
                    self._worker.acked(list(response.ack.run_ids))
                case "welcome":
                    self._outbox.batches = response.welcome.batches
                case _:
                    pass  # a kind newer than this executor: nothing it must act on

    async def _write(self) -> None:
        while (message := await self._outbox.take()) is not None:
            await self._call.write(message)
            match message.WhichOneof("kind"):
                case "result":
                    self._acks.written(message.result.run_id)
                case "progress":
                    for result in message.progress.results:
                        self._acks.written(result.run_id)
        await self._call.done_writing()

    def _receive(self, item: WorkItem) -> None:
        if self._leaving or self._worker.draining:
            # Given back at once: the scheduler dispatches it to another executor.
            log.info("work refused while draining", extra=_item_fields("work.refused", item))
            self._worker.refuse(item.run_id, self)
            return
        if self._credits == 0:
            log.warning("scheduler sent more work than granted", extra=_item_fields("stream.credit_exceeded", item))
        self._backlog.append(item)
        self._admit()

    def _admit(self) -> None:
        while self._credits > 0 and self._backlog and not self._leaving:
            self._credits -= 1
            self._worker.accept(self._backlog.popleft(), self)


class _AckSupport:
    """Whether the scheduler acknowledges results. Until it is known, the results written that count as delivered
    if it turns out not to (NO_ACKS_AFTER_S after the first one, checked by a timer so that a full store of
    unacknowledged results, which stops new work and so new results, cannot hide it)."""

    def __init__(self, settle: Callable[[list[str]], None]) -> None:
        self._settle = settle
        self._acks_seen = False
        self._timer: asyncio.TimerHandle | None = None
        self._unconfirmed: list[str] = []
        self._legacy = False

    def seen(self) -> None:
        self._acks_seen = True
        self._unconfirmed.clear()
        self.cancel()

    def written(self, run_id: str) -> None:
        if self._acks_seen:
            return
        if self._legacy:
            self._settle([run_id])
            return
        self._unconfirmed.append(run_id)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(NO_ACKS_AFTER_S, self._give_up)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _give_up(self) -> None:
        if self._acks_seen:
            return
        self._legacy = True
        log.warning(
            "scheduler does not acknowledge results (an older release?): results written to it count as delivered",
            extra={"event": "stream.no_acks", "unconfirmed": len(self._unconfirmed)},
        )
        settled, self._unconfirmed = self._unconfirmed, []
        self._settle(settled)


class SchedulerStream:
    """Keeps a stream to the scheduler at `address` open from `start` until `close`.

    Connects, says Hello, serves work through a `_Link`, and when the stream breaks or the scheduler is down logs
    `scheduler.unreachable` and tries again after a backoff delay (reset once a stream stayed up HEALTHY_AFTER_S).
    """

    def __init__(self, address: str, worker: Worker, options: StreamOptions, backoff: JitteredBackoff) -> None:
        self._address = address
        self._worker = worker
        self._options = options
        self._backoff = backoff
        self._closing = asyncio.Event()
        self._link: _Link | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return self._address

    def start(self) -> None:
        """Begin connecting in the background."""
        if self._task is not None:
            raise RuntimeError("stream already started")
        self._task = asyncio.create_task(self._run(), name=f"stream {self._address}")

    async def close(self) -> None:
        """Stop reconnecting; give back the work from an open stream not begun yet, write what is queued on it,
        half-close it and wait (a bounded time) for the scheduler to end it. A stream not connected is abandoned at
        once."""
        self._closing.set()
        if self._task is None:
            return
        if self._link is None:
            self._task.cancel()
        else:
            self._worker.leave(self._link)
            self._link.finish()
        done, _ = await asyncio.wait((self._task,), timeout=2 * CLOSE_GRACE_S)
        if not done:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing.is_set():
            began = loop.time()
            opened, reason = await self._session()
            if self._closing.is_set():
                return
            if opened and loop.time() - began >= HEALTHY_AFTER_S:
                self._backoff.reset()
            delay_s = self._backoff.next_delay_s()
            log.warning(
                "scheduler unreachable",
                extra={
                    "event": "scheduler.unreachable",
                    "scheduler": self._address,
                    "reason": reason,
                    "retry_in_ms": round(delay_s * 1000),
                },
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay_s)

    async def _session(self) -> tuple[bool, str]:
        """One connection attempt and the stream's life: whether Hello went out, and why the stream ended."""
        opened = False
        try:
            async with self._options.open_channel(self._address) as channel:
                call: ConnectCall = dispatch_grpc.DispatchServiceStub(channel).Connect(metadata=self._options.metadata)
                await call.wait_for_connection()
                await call.write(self._hello())
                opened = True
                await self._serve(call)
        except StreamEnded as ended:
            return opened, ended.reason
        except grpc.aio.AioRpcError as error:
            return opened, f"{error.code().name}: {error.details()}"
        except asyncio.InvalidStateError:
            return opened, "the stream ended"
        except Exception as error:
            # A bug must not end the stream for good: log it and reconnect like after any other break.
            log.exception("stream failed", extra={"event": "stream.crashed", "scheduler": self._address})
            return opened, f"executor error: {type(error).__name__}"
        return opened, "closed"

    async def _serve(self, call: ConnectCall) -> None:
        link = _Link(call, self._worker, self._options)
        self._link = link
        self._worker.link_opened(link)
        log.info(
            "scheduler stream open",
            extra={"event": "stream.connected", "scheduler": self._address, "capacity": self._options.capacity},
        )
        try:
            await link.serve()
        finally:
            self._link = None
            self._worker.link_closed(link)

    def _hello(self) -> dispatch_pb.ConnectRequest:
        hello = dispatch_pb.Hello(executor_id=self._options.executor_id, capacity=self._options.capacity, batches=True)
        return dispatch_pb.ConnectRequest(hello=hello)


def _raise_ended(task: asyncio.Task[None]) -> None:
    """Re-raise how a reader or writer task ended (the reader only ends by raising)."""
    error = task.exception()
    raise error if error is not None else StreamEnded("the stream ended")


def _item_fields(event: str, item: WorkItem) -> dict[str, object]:
    return {"event": event, "run_id": item.run_id, "endpoint_id": item.endpoint_id, "tenant": item.tenant_id}
