"""The executor stream server (pacer.internal.v1.DispatchService): one bidirectional stream per executor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import grpc

from pacer.control.v1 import control_service_pb2 as pb
from pacer.internal.v1 import dispatch_service_pb2 as dispatch_pb
from pacer.internal.v1 import dispatch_service_pb2_grpc as dispatch_grpc
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.credentials import ServiceGate
from pacer_common.errors import InvalidArgument, PacerError
from pacer_common.outbox import Outbox
from pacer_common.status import to_grpc_status
from pacer_scheduler.dispatch import Dispatcher, ExecutorSession
from pacer_scheduler.results import ResultBatcher

log = logging.getLogger("pacer.scheduler.stream")

MAX_CAPACITY = 100_000
MAX_EXECUTOR_ID = 200
# Run ids are `run_` and 26 characters; anything much longer is not one, and would make the control plane refuse the
# whole report it travels in.
MAX_RUN_ID = 64
# A WorkBatch takes no more items once it holds this much, so it stays far below gRPC's default 4 MiB message limit
# on the executor's side (one item, whose body is at most 256 KiB, may still go over it).
MAX_BATCH_BYTES = 1024 * 1024
# How long a stream the scheduler ends may take to write what is queued on it (acks above all).
FLUSH_ON_CLOSE_S = 1.0
REPORTABLE = frozenset({pb.RUN_STATUS_SUCCESS, pb.RUN_STATUS_FAILURE, pb.RUN_STATUS_TIMEOUT, pb.RUN_STATUS_BLOCKED})


def _hello_problem(message: dispatch_pb.ConnectRequest) -> InvalidArgument | None:
    if not message.HasField("hello"):
        return InvalidArgument.single("hello", "the first message of a stream must be hello")
    if not 0 < len(message.hello.executor_id) <= MAX_EXECUTOR_ID:
        return InvalidArgument.single("hello.executor_id", f"must be 1 to {MAX_EXECUTOR_ID} characters")
    if not 0 < message.hello.capacity <= MAX_CAPACITY:
        return InvalidArgument.single("hello.capacity", f"must be between 1 and {MAX_CAPACITY}")
    return None


def _result_problem(result: lease_pb.RunResult) -> str | None:
    if not result.run_id:
        return "run_id is empty"
    if result.status not in REPORTABLE:
        return "status must be SUCCESS, FAILURE, TIMEOUT or BLOCKED"
    if not result.HasField("finished_at"):
        return "finished_at is required"
    return None


async def _abort(context: grpc.aio.ServicerContext, error: PacerError) -> None:
    await context.abort_with_status(to_grpc_status(error))


class _Outbox:
    """What the scheduler has to say on one stream: work items and acks, written in order by the stream's writer.

    Implements the batcher's Acker: acks for a stream that ended are dropped (the executor sends its results again
    on its next stream, and they are acknowledged there). `unwritten` are the work items queued whose write never
    began: they cannot have reached the executor.

    To an executor that batches, work items queued back to back share one WorkBatch (see pacer_common.outbox), of
    at most MAX_BATCH_BYTES. Items are queued only once due, so a batch holds items due now and none waits for
    another: the timer releases everything due at one tick together, and whatever becomes due while a write is on
    the wire goes out with the next one.
    """

    def __init__(self, *, batches: bool = False) -> None:
        self._queue: Outbox[dispatch_pb.ConnectResponse] = Outbox(MAX_BATCH_BYTES)
        self._batches = batches
        self.unwritten: set[str] = set()
        self.open = True

    def work(self, item: lease_pb.WorkItem) -> None:
        self.unwritten.add(item.run_id)
        if not self._batches:
            self._queue.put(dispatch_pb.ConnectResponse(work=item))
            return
        self._queue.batch(_new_work_batch).work_batch.items.append(item)
        self._queue.added(item.ByteSize())

    def ack(self, run_ids: Sequence[str]) -> None:
        if self.open and run_ids:
            self._queue.put(dispatch_pb.ConnectResponse(ack=dispatch_pb.Ack(run_ids=run_ids)))

    def finish(self) -> None:
        """Let the writer end once everything queued so far is written."""
        self._queue.put(None)

    def stop(self) -> None:
        """Let the writer end after the write in flight: what is queued is dropped (its work items stay unwritten)."""
        self.open = False
        self._queue.clear()
        self._queue.put(None)

    async def next(self) -> dispatch_pb.ConnectResponse | None:
        """The next message to write; its work items count as written from here on (they may reach the executor)."""
        response = await self._queue.take()
        if response is not None:
            match response.WhichOneof("kind"):
                case "work":
                    self.unwritten.discard(response.work.run_id)
                case "work_batch":
                    self.unwritten.difference_update(item.run_id for item in response.work_batch.items)
        return response


def _new_work_batch() -> dispatch_pb.ConnectResponse:
    return dispatch_pb.ConnectResponse(work_batch=dispatch_pb.WorkBatch())


class DispatchApi(dispatch_grpc.DispatchServiceServicer):
    """Serves executor streams: hello and credits in, work items out (never beyond credit), results to the batcher
    and acks back once they are recorded; Released items back to the dispatcher, Held ids to the control plane.

    Only the service token may connect (UNAUTHENTICATED otherwise, PERMISSION_DENIED for a tenant key). When a
    stream ends for any reason, the runs sent on it and not reported become vanished candidates (see Dispatcher).
    """

    def __init__(self, dispatcher: Dispatcher, batcher: ResultBatcher, gate: ServiceGate) -> None:
        self._dispatcher = dispatcher
        self._batcher = batcher
        self._gate = gate
        self._closing = asyncio.Event()

    def close(self) -> None:
        """End every open stream with OK once what is queued on it (acks above all) is written, so executors
        reconnect elsewhere instead of waiting to be cut off."""
        self._closing.set()

    # The stub types Connect as a generator; this one uses grpc.aio's read()/write() API instead, so reading and
    # writing run independently, and returns None.
    async def Connect(  # type: ignore[override]
        self, request_iterator: object, context: grpc.aio.ServicerContext
    ) -> None:
        """Serve one executor stream until it ends; the first message must be Hello."""
        try:
            self._gate.check(context.invocation_metadata())
        except PacerError as error:
            await _abort(context, error)
        hello = await context.read()
        if hello is grpc.aio.EOF:
            return
        problem = _hello_problem(hello)
        if problem is not None:
            await _abort(context, problem)
        if hello.hello.batches:
            # Written before the reader starts: no write may be in flight when a bad message aborts the call.
            await context.write(dispatch_pb.ConnectResponse(welcome=dispatch_pb.Welcome(batches=True)))
        outbox = _Outbox(batches=hello.hello.batches)
        session = self._dispatcher.connect(hello.hello.executor_id, hello.hello.capacity, outbox.work)
        try:
            await self._serve(session, outbox, context)
        finally:
            outbox.open = False
            self._dispatcher.disconnect(session, unwritten=outbox.unwritten)

    async def _serve(self, session: ExecutorSession, outbox: _Outbox, context: grpc.aio.ServicerContext) -> None:
        reader = asyncio.create_task(self._read(session, outbox, context))
        writer = asyncio.create_task(self._write(outbox, context))
        closing = asyncio.create_task(self._closing.wait())
        refused: PacerError | None = None
        try:
            done, _ = await asyncio.wait((reader, writer, closing), return_when=asyncio.FIRST_COMPLETED)
            # The call ends only once no write is in flight: grpc refuses to finish a call with a write pending.
            if reader in done and isinstance(reader.exception(), PacerError):
                # A bad message: the call ends with its status; what is queued is dropped, unwritten.
                refused = reader.exception()  # type: ignore[assignment]
                outbox.stop()
            elif not writer.done():
                outbox.finish()  # the executor closed its side, or this scheduler is closing: write what is queued
            if not writer.done():
                await asyncio.wait((writer,), timeout=FLUSH_ON_CLOSE_S)
        finally:
            for task in (reader, writer, closing):
                task.cancel()
                # Collect the outcome so a cancelled or broken half never surfaces as an unretrieved error.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if refused is not None:
            await _abort(context, refused)
        if reader.done() and not reader.cancelled():
            reader.result()  # re-raises anything else the reader ended with

    async def _read(self, session: ExecutorSession, outbox: _Outbox, context: grpc.aio.ServicerContext) -> None:
        while True:
            message = await context.read()
            if message is grpc.aio.EOF:
                return
            await self._handle(session, outbox, message, context)

    async def _write(self, outbox: _Outbox, context: grpc.aio.ServicerContext) -> None:
        while (response := await outbox.next()) is not None:
            await context.write(response)

    async def _handle(
        self,
        session: ExecutorSession,
        outbox: _Outbox,
        message: dispatch_pb.ConnectRequest,
        context: grpc.aio.ServicerContext,
    ) -> None:
        kind = message.WhichOneof("kind")
        match kind:
            case "credit":
                if message.credit.count <= 0:
                    raise InvalidArgument.single("credit.count", "must be positive")
                self._dispatcher.grant(session, message.credit.count)
            case "started":
                self._dispatcher.started(session, message.started.run_id)
            case "result":
                await self._result(session, outbox, message.result)
            case "progress":
                await self._progress(session, outbox, message.progress, context)
            case "released":
                self._released(session, list(message.released.run_ids))
            case "held":
                self._held(session, list(message.held.run_ids))
            case "draining":
                self._dispatcher.drain(session)
            case "hello":
                raise InvalidArgument.single("hello", "hello is sent once, first")
            case None:
                pass  # an empty message, or a kind newer than this scheduler: nothing to do
            case _:
                log.warning("unknown message kind", extra={"event": "stream.unknown", "kind": kind})

    async def _progress(
        self,
        session: ExecutorSession,
        outbox: _Outbox,
        progress: dispatch_pb.Progress,
        context: grpc.aio.ServicerContext,
    ) -> None:
        """Runs begun, then results, then the credit: in that order, as if each had come in a message of its own."""
        if progress.credit < 0:
            raise InvalidArgument.single("progress.credit", "must not be negative")
        for run_id in progress.started_run_ids:
            self._dispatcher.started(session, run_id)
        self._dispatcher.finished(*(result.run_id for result in progress.results))
        for result in progress.results:
            await self._record(session, outbox, result)
        if progress.credit:
            self._dispatcher.grant(session, progress.credit)

    async def _result(self, session: ExecutorSession, outbox: _Outbox, result: lease_pb.RunResult) -> None:
        self._dispatcher.finished(result.run_id)
        await self._record(session, outbox, result)

    async def _record(self, session: ExecutorSession, outbox: _Outbox, result: lease_pb.RunResult) -> None:
        """Hand a result to the batcher (acknowledged once recorded), or drop and acknowledge an invalid one."""
        problem = _result_problem(result)
        if problem is not None:
            # The control plane would reject the whole batch; drop this one (its lease settles it as LOST) and
            # acknowledge it, so the executor does not offer it again on every stream.
            log.warning(
                "invalid result dropped",
                extra={
                    "event": "result.invalid",
                    "run_id": result.run_id,
                    "executor_id": session.executor_id,
                    "reason": problem,
                },
            )
            outbox.ack([result.run_id])
            return
        await self._batcher.put(result, outbox)

    def _released(self, session: ExecutorSession, run_ids: list[str]) -> None:
        returned = self._dispatcher.released(session, run_ids)
        log.info(
            "executor released runs",
            extra={
                "event": "runs.released",
                "executor_id": session.executor_id,
                "count": len(run_ids),
                "returned": returned,
            },
        )

    def _held(self, session: ExecutorSession, run_ids: list[str]) -> None:
        """Runs the executor began on a stream that broke (to this or another scheduler): their results follow."""
        run_ids = [run_id for run_id in run_ids if 0 < len(run_id) <= MAX_RUN_ID]
        self._dispatcher.held(run_ids)
        self._batcher.put_held(run_ids)
        log.info(
            "executor holds runs of a broken stream",
            extra={"event": "runs.held", "executor_id": session.executor_id, "count": len(run_ids)},
        )
