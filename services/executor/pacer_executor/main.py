"""Composition root of the executor: settings -> runner -> worker -> one stream per scheduler, until SIGTERM or
Ctrl-C, then a drain: work not begun is given back, runs begun finish and report, their results are confirmed
recorded, streams close, exit 0.

Beside the streams it serves Prometheus `/metrics` (PACER_METRICS_ADDR) and a small gRPC server with only
grpc.health.v1 (PACER_HEALTH_ADDR): ready while at least one scheduler stream is open, `liveness` while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import AsyncIterator

from grpc_health.v1 import health

from pacer_common.clock import SystemClock
from pacer_common.credentials import bearer, service_token
from pacer_common.health import Readiness, follow, serving_health
from pacer_common.logs import configure_logging
from pacer_common.loops import run_on_loop
from pacer_common.ports import ListenError
from pacer_common.settings import load
from pacer_common.telemetry import ClientMetricsInterceptor, ServerMetricsInterceptor, new_registry, serve_metrics
from pacer_common.tls import client_tls_credentials, open_channel
from pacer_executor.discovery import SchedulerPool
from pacer_executor.egress import EgressPolicy
from pacer_executor.metrics import ExecutorMetrics
from pacer_executor.runner import HttpRunner
from pacer_executor.settings import ExecutorSettings
from pacer_executor.stream import ChannelFactory, SchedulerStream, StreamOptions, reconnect_backoff
from pacer_executor.worker import Worker

log = logging.getLogger("pacer.executor")

READINESS_POLL_S = 0.25  # how soon readiness shows a stream opening or breaking
Metadata = tuple[tuple[str, str], ...]


async def serve(settings: ExecutorSettings, policy: EgressPolicy, metadata: Metadata, stop: asyncio.Event) -> None:
    """Run the executor until `stop` is set, then drain for up to `drain_timeout_ms` and close every stream.

    `metadata` is what every stream carries (the service credential); `policy` judges every destination. The
    metrics and health servers listen where the settings say (nowhere when empty) for as long as this runs.
    """
    registry = new_registry()
    metrics = ExecutorMetrics(registry)
    endpoint = serve_metrics(settings.operations.metrics_addr, registry, setting="PACER_METRICS_ADDR")
    try:
        async with _health(settings.operations.health_addr, metrics) as readiness:
            await _run(settings, policy, metadata, stop, metrics, readiness)
    finally:
        if endpoint is not None:
            endpoint.close()


async def _run(
    settings: ExecutorSettings,
    policy: EgressPolicy,
    metadata: Metadata,
    stop: asyncio.Event,
    metrics: ExecutorMetrics,
    readiness: Readiness,
) -> None:
    clock = SystemClock()
    runner = HttpRunner(
        policy,
        clock,
        capture_limit_bytes=settings.capture_limit_bytes,
        max_connections=settings.capacity,
        tenant_pools=settings.tenant_pools,
        metrics=metrics,
        log_runs=settings.log_runs,
    )
    async with runner:
        worker = Worker(runner, clock, settings.capacity, metrics, max_unacked=settings.max_unacked_results)
        pool = _pool(settings, worker, metadata, _channels(settings, metrics))
        await pool.start()
        follower = asyncio.create_task(follow(readiness, lambda: worker.connected > 0, READINESS_POLL_S))
        log.info(
            "executor started",
            extra={
                "event": "executor.started",
                "executor_id": settings.identity,
                "capacity": settings.capacity,
                "schedulers": pool.addresses,
            },
        )
        await stop.wait()
        await readiness.shutting_down()
        follower.cancel()
        await _shut_down(worker, pool, settings.drain_timeout_ms / 1000)


@contextlib.asynccontextmanager
async def _health(addr: str, metrics: ExecutorMetrics) -> AsyncIterator[Readiness]:
    """Readiness, published by a health-only gRPC server on `addr` while the block runs (unpublished if empty)."""
    servicer = health.aio.HealthServicer()
    readiness = Readiness(servicer, (), dependency="scheduler stream")
    await readiness.start()
    async with serving_health(addr, servicer, [ServerMetricsInterceptor(metrics.grpc_server)]):
        yield readiness


# A scheduler that stops answering (its host froze, the network parted) must be noticed well inside the control
# plane's session TTL (3 s): the executor then tells the other schedulers which of its runs it holds (Held) before
# the control plane would hand them out again. A killed scheduler is noticed at once (the connection is reset); a
# ping every 500 ms unanswered for 1 s catches the silent ones in about 1.5 s. gRPC takes the ping's deadline from
# `grpc.http2.ping_timeout_ms` (its default is a minute), not from the keepalive timeout alone.
STREAM_CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 500),
    ("grpc.keepalive_timeout_ms", 1000),
    ("grpc.http2.ping_timeout_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


def _channels(settings: ExecutorSettings, metrics: ExecutorMetrics) -> ChannelFactory:
    """How each stream opens its channel: TLS per the settings, keepalive, its calls measured in `metrics`."""
    credentials = client_tls_credentials(settings.tls)
    interceptors = [ClientMetricsInterceptor(metrics.grpc_client)]
    return lambda address: open_channel(address, credentials, options=STREAM_CHANNEL_OPTIONS, interceptors=interceptors)


def _pool(settings: ExecutorSettings, worker: Worker, metadata: Metadata, channels: ChannelFactory) -> SchedulerPool:
    """A stream to every scheduler replica behind the configured addresses, following DNS."""
    # One generator for all streams, seeded by the OS, so processes started together draw different jitter.
    jitter = random.Random().random

    def new_stream(address: str, share: int) -> SchedulerStream:
        options = StreamOptions(settings.identity, share, metadata, channels)
        return SchedulerStream(address, worker, options, reconnect_backoff(jitter))

    interval_s = settings.discovery_interval_ms / 1000
    return SchedulerPool(settings.scheduler_addresses, new_stream, settings.capacity, interval_s)


async def _shut_down(worker: Worker, pool: SchedulerPool, drain_timeout_s: float) -> None:
    log.info("executor draining", extra={"event": "executor.draining", "in_flight": worker.unsettled})
    delivered = await worker.drain(drain_timeout_s)
    await pool.close()
    log.info(
        "executor stopped",
        extra={"event": "executor.stopped", "all_reported": delivered, "unacked": worker.unacked},
    )


async def _serve_until_signalled(settings: ExecutorSettings, policy: EgressPolicy, metadata: Metadata) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, policy, metadata, stop)


def main() -> None:
    """The `pacer-executor` command: settings from `PACER_*`, exit status 0 after a drain."""
    try:
        settings = load(ExecutorSettings)
        policy = EgressPolicy.from_strings(settings.egress_allow)
        token = service_token(settings.service_token, settings.var_dir, create=False)
        client_tls_credentials(settings.tls)
    except (ValueError, FileNotFoundError) as error:
        # Before logging is configured: a plain message on standard error and exit status 1.
        raise SystemExit(f"pacer-executor: {error}") from None
    configure_logging(settings.operations.log_level)
    try:
        run_on_loop(_serve_until_signalled(settings, policy, bearer(token)), settings.event_loop)
    except ListenError as error:
        raise SystemExit(f"pacer-executor: {error}") from None


if __name__ == "__main__":
    main()
