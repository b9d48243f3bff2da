"""Prometheus telemetry every service shares: gRPC metrics by method and status code, and the `/metrics` endpoint.

Each service declares its metrics in its own `metrics.py` on a `CollectorRegistry` made by its composition root;
this module supplies the pieces that must look the same everywhere: the `grpc_{server,client}_*` families (named as
go-grpc-prometheus names them, so stock dashboards work), the interceptors that fill them, and the HTTP endpoint.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from pacer_common.ports import ListenError, listen_error, parse_addr

log = logging.getLogger("pacer.telemetry")

# From a millisecond to an hour: unary calls take milliseconds, executor streams live for hours.
HANDLING_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
Side = Literal["server", "client"]
Record = Callable[[grpc.StatusCode, float], None]


def new_registry() -> CollectorRegistry:
    """A registry for one process, with the standard process, platform and garbage collector metrics on it.

    Also turns off prometheus_client's `*_created` series for the process: in the text format they double the
    series count, and Prometheus has no use for them.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def split_method(full_method: str | bytes) -> tuple[str, str]:
    """`/pkg.Service/Method` as (`pkg.Service`, `Method`); anything else as ("unknown", the text)."""
    text = full_method.decode() if isinstance(full_method, bytes) else full_method
    service, _, method = text.lstrip("/").rpartition("/")
    return (service, method) if service else ("unknown", text)


@dataclass(frozen=True)
class GrpcMetrics:
    """`grpc_<side>_handled_total{grpc_service,grpc_method,grpc_code}` and `grpc_<side>_handling_seconds`."""

    handled: Counter
    handling_seconds: Histogram

    def observe(self, full_method: str | bytes, code: grpc.StatusCode, seconds: float) -> None:
        """Count one finished RPC (a stream when it ends) with its status code and how long it took."""
        service, method = split_method(full_method)
        self.handled.labels(service, method, code.name).inc()
        self.handling_seconds.labels(service, method).observe(seconds)

    def recorder(self, full_method: str | bytes) -> Record:
        """`observe` bound to one method."""
        return lambda code, seconds: self.observe(full_method, code, seconds)


def grpc_metrics(registry: CollectorRegistry, side: Side) -> GrpcMetrics:
    """Declare the gRPC families of one side (`server`: RPCs this process answers; `client`: RPCs it makes)."""
    whose = "handled by this server" if side == "server" else "made by this client"
    labels = ("grpc_service", "grpc_method")
    return GrpcMetrics(
        handled=Counter(
            f"grpc_{side}_handled_total",
            f"gRPC calls {whose} that finished, by method and status code (a stream counts when it ends).",
            (*labels, "grpc_code"),
            registry=registry,
        ),
        handling_seconds=Histogram(
            f"grpc_{side}_handling_seconds",
            f"Duration of gRPC calls {whose}, from start to status (a stream's whole life), by method.",
            labels,
            buckets=HANDLING_BUCKETS_S,
            registry=registry,
        ),
    )


class ServerMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Observes every RPC a grpc.aio server handles in `metrics`, with the code the caller receives.

    A handler that returns gives OK unless it set another code; `abort` gives the aborted code; an uncaught
    exception UNKNOWN; a call cancelled by the client CANCELLED. Methods the server does not know are not counted.
    """

    def __init__(self, metrics: GrpcMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        return _measured(handler, self._metrics.recorder(details.method))


def _measured(handler: grpc.RpcMethodHandler, record: Record) -> grpc.RpcMethodHandler:
    """The same handler, each behaviour wrapped to record its outcome."""
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_wrap(handler.unary_unary, record), **codec)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_wrap(handler.unary_stream, record), **codec)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_wrap(handler.stream_unary, record), **codec)
    return grpc.stream_stream_rpc_method_handler(_wrap(handler.stream_stream, record), **codec)


def _wrap(behaviour: Callable[..., Any], record: Record) -> Callable[..., Any]:
    # grpc.aio tells a response generator from a coroutine by the function's kind: the wrapper must keep it.
    if inspect.isasyncgenfunction(behaviour):
        return _wrap_generator(behaviour, record)
    return _wrap_coroutine(behaviour, record)


def _final_code(context: Any, error: BaseException | None) -> grpc.StatusCode:
    """The status the caller gets: set or aborted on `context`, else derived from how the handler ended."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


def _wrap_coroutine(behaviour: Callable[..., Any], record: Record) -> Callable[..., Awaitable[Any]]:
    async def measured(request: Any, context: Any) -> Any:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            result = behaviour(request, context)
            return await result if inspect.isawaitable(result) else result
        except BaseException as raised:
            error = raised
            raise
        finally:
            record(_final_code(context, error), time.perf_counter() - started)

    return measured


def _wrap_generator(behaviour: Callable[..., AsyncIterator[Any]], record: Record) -> Callable[..., AsyncIterator[Any]]:
    async def measured(request: Any, context: Any) -> AsyncIterator[Any]:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            async for response in behaviour(request, context):
                yield response
        except BaseException as raised:
            error = raised
            raise
        finally:
            record(_final_code(context, error), time.perf_counter() - started)

    return measured


class ClientMetricsInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Observes the unary and bidirectional-stream calls a grpc.aio channel makes in `metrics`.

    A unary call is recorded when its status arrives; a stream when it ends (a watcher task awaits its status, so
    the caller keeps the untouched call for its reads and writes).
    """

    def __init__(self, metrics: GrpcMetrics) -> None:
        self._metrics = metrics
        self._watchers: set[asyncio.Task[None]] = set()

    async def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Awaitable[Any]], details: Any, request: Any
    ) -> Any:
        record = self._metrics.recorder(details.method)
        started = time.perf_counter()
        call = await continuation(details, request)
        try:
            code = await call.code()
        except asyncio.CancelledError:
            call.cancel()
            record(grpc.StatusCode.CANCELLED, time.perf_counter() - started)
            raise
        record(code, time.perf_counter() - started)
        return call

    async def intercept_stream_stream(
        self, continuation: Callable[[Any, Any], Awaitable[Any]], details: Any, request_iterator: Any
    ) -> Any:
        started = time.perf_counter()
        call = await continuation(details, request_iterator)
        watcher = asyncio.create_task(self._watch(call, self._metrics.recorder(details.method), started))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return call

    @staticmethod
    async def _watch(call: Any, record: Record, started: float) -> None:
        record(await call.code(), time.perf_counter() - started)


@dataclass(frozen=True)
class MetricsEndpoint:
    """A running `/metrics` HTTP server (on a daemon thread) and the port it listens on."""

    server: WSGIServer
    port: int

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(addr: str, registry: CollectorRegistry, *, setting: str) -> MetricsEndpoint | None:
    """Serve `registry` at `http://addr/metrics` (any path answers) until closed; None when `addr` is empty.

    Binding happens here, so a taken port fails the process at start rather than leaving it unobserved: a
    `ListenError` (`PortInUse` when taken) names `setting`, the setting `addr` came from.
    """
    if not addr:
        return None
    try:
        host, port = parse_addr(addr)
        server, _ = start_http_server(port, addr=host, registry=registry)
    except ValueError:
        raise ListenError(setting, addr, "is not host:port") from None
    except OSError as error:
        raise listen_error(setting, addr, error) from None
    endpoint = MetricsEndpoint(server, int(server.server_port))
    log.info("metrics served", extra={"event": "metrics.serving", "addr": addr, "port": endpoint.port})
    return endpoint
