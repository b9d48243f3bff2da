"""grpc.health.v1 for every service: readiness that follows a real dependency, and a separate liveness service.

Readiness is the server-wide status ("") and each named service: SERVING only while the dependency the service
cannot work without answers (control: its database; scheduler: the control plane; executor: a scheduler).
Liveness is the service named `liveness`: SERVING from start to exit. It is answered on the event loop, so a wedged
loop fails the probe by timeout, and it stays SERVING while a draining process finishes its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pacer_common.logs import first_line
from pacer_common.ports import grpc_server
from pacer_common.tls import add_port

LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

log = logging.getLogger("pacer.health")


class Readiness:
    """Publishes one readiness flag for "" and `services` on `servicer`, and `liveness` as SERVING.

    `dependency` names what readiness depends on, for the log lines (`health.ready`, `health.not_ready`), which
    are written only when the flag changes.
    """

    def __init__(self, servicer: health.aio.HealthServicer, services: Sequence[str], dependency: str) -> None:
        self._servicer = servicer
        self._names = ("", *services)
        self._dependency = dependency
        self._ready: bool | None = None
        self._stopping = False

    @property
    def ready(self) -> bool:
        return bool(self._ready)

    async def start(self) -> None:
        """Report live, and not ready until the first `update(True)`; call before the server starts."""
        await self._servicer.set(LIVENESS, SERVING)
        await self._publish(NOT_SERVING)

    async def update(self, ready: bool, reason: str = "") -> None:
        """Set the readiness flag; a change is published and logged, the same value again costs nothing."""
        if ready == self._ready or self._stopping:
            return
        first = self._ready is None
        self._ready = ready
        await self._publish(SERVING if ready else NOT_SERVING)
        if ready:
            log.info("ready", extra={"event": "health.ready", "dependency": self._dependency})
        elif not first or reason:
            log.warning(
                "not ready", extra={"event": "health.not_ready", "dependency": self._dependency, "reason": reason}
            )

    async def shutting_down(self) -> None:
        """NOT_SERVING for good (load balancers stop sending work); liveness stays SERVING through the drain."""
        await self._publish(NOT_SERVING)
        self._stopping = True

    async def _publish(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in self._names:
            await self._servicer.set(name, status)


async def follow(readiness: Readiness, is_ready: Callable[[], bool], interval_s: float) -> None:
    """Publish `is_ready()` every `interval_s` until cancelled (for state the service already tracks)."""
    while True:
        await readiness.update(is_ready())
        await asyncio.sleep(interval_s)


async def probe_forever(readiness: Readiness, check: Callable[[], object], interval_s: float, timeout_s: float) -> None:
    """Run the blocking `check` on a worker thread every `interval_s` until cancelled; ready while it returns.

    A check that raises, or takes longer than `timeout_s`, makes the service not ready. A check still hanging is
    waited for before the next one starts, so a dead dependency never piles up threads.
    """
    loop = asyncio.get_running_loop()
    while True:
        attempt = loop.run_in_executor(None, check)
        done, _ = await asyncio.wait([attempt], timeout=timeout_s)
        if not done:
            await readiness.update(False, f"no answer within {timeout_s} s")
            await asyncio.wait([attempt])
        error = attempt.exception()
        await readiness.update(error is None, "" if error is None else first_line(error))
        await asyncio.sleep(interval_s)


def health_server(
    addr: str,
    servicer: health.aio.HealthServicer,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    *,
    setting: str,
) -> tuple[grpc.aio.Server, int]:
    """A plaintext grpc.aio server answering only grpc.health.v1 at `addr` (for native Kubernetes probes, which
    speak neither TLS nor a service's own protocol); returns it, not yet started, with its port.

    A `ListenError` naming `setting` (where `addr` came from) when it cannot listen there.
    """
    server = grpc_server(interceptors=interceptors)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return server, add_port(server, addr, None, setting=setting)


@contextlib.asynccontextmanager
async def serving_health(
    addr: str, servicer: health.aio.HealthServicer, interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
) -> AsyncIterator[None]:
    """While the block runs, the optional plaintext health port (PACER_HEALTH_ADDR) for probes that cannot speak
    TLS, answering from `servicer`; nothing when `addr` is empty. A `ListenError` when it cannot listen there."""
    if not addr:
        yield
        return
    server, port = health_server(addr, servicer, interceptors, setting="PACER_HEALTH_ADDR")
    await server.start()
    log.info("health served", extra={"event": "health.serving", "addr": addr, "port": port})
    try:
        yield
    finally:
        await server.stop(None)
