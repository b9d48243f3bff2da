"""Composition root of the executor: settings -> runner -> worker -> one stream per scheduler, until SIGTERM or
Ctrl-C, then a drain: no new work, in-flight runs finish and report, streams close, exit 0."""

from __future__ import annotations

import asyncio
import logging
import random
import signal

from pacer_common.clock import SystemClock
from pacer_common.credentials import bearer, service_token
from pacer_common.logs import configure_logging
from pacer_common.settings import load
from pacer_executor.egress import EgressPolicy
from pacer_executor.runner import HttpRunner
from pacer_executor.settings import ExecutorSettings
from pacer_executor.stream import ReconnectBackoff, SchedulerStream, StreamOptions
from pacer_executor.worker import Worker, split_capacity

log = logging.getLogger("pacer.executor")


async def serve(
    settings: ExecutorSettings, policy: EgressPolicy, metadata: tuple[tuple[str, str], ...], stop: asyncio.Event
) -> None:
    """Run the executor until `stop` is set, then drain for up to `drain_timeout_ms` and close every stream.

    `metadata` is what every stream carries (the service credential); `policy` judges every destination.
    """
    clock = SystemClock()
    runner = HttpRunner(
        policy, clock, capture_limit_bytes=settings.capture_limit_bytes, max_connections=settings.capacity
    )
    async with runner:
        worker = Worker(runner, clock, settings.capacity)
        streams = _streams(settings, worker, metadata)
        for stream in streams:
            stream.start()
        log.info(
            "executor started",
            extra={
                "event": "executor.started",
                "executor_id": settings.identity,
                "capacity": settings.capacity,
                "schedulers": [stream.address for stream in streams],
            },
        )
        await stop.wait()
        await _shut_down(worker, streams, settings.drain_timeout_ms / 1000)


def _streams(
    settings: ExecutorSettings, worker: Worker, metadata: tuple[tuple[str, str], ...]
) -> list[SchedulerStream]:
    addresses = settings.scheduler_addresses
    shares = split_capacity(settings.capacity, len(addresses))
    # One generator for all streams, seeded by the OS, so processes started together draw different jitter.
    jitter = random.Random().random
    return [
        SchedulerStream(address, worker, StreamOptions(settings.identity, share, metadata), ReconnectBackoff(jitter))
        for address, share in zip(addresses, shares, strict=True)
    ]


async def _shut_down(worker: Worker, streams: list[SchedulerStream], drain_timeout_s: float) -> None:
    log.info("executor draining", extra={"event": "executor.draining", "in_flight": worker.undelivered})
    delivered = await worker.drain(drain_timeout_s)
    await asyncio.gather(*(stream.close() for stream in streams))
    log.info("executor stopped", extra={"event": "executor.stopped", "all_reported": delivered})


async def _serve_until_signalled(
    settings: ExecutorSettings, policy: EgressPolicy, metadata: tuple[tuple[str, str], ...]
) -> None:
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
    except (ValueError, FileNotFoundError) as error:
        # Before logging is configured: a plain message on standard error and exit status 1.
        raise SystemExit(f"pacer-executor: {error}") from None
    configure_logging(settings.log_level)
    asyncio.run(_serve_until_signalled(settings, policy, bearer(token)))


if __name__ == "__main__":
    main()
