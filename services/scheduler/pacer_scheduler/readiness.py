"""Whether the scheduler can do its job: the control plane answers. Its readiness (grpc.health.v1) follows this.

The scheduler's own calls are the evidence: its heartbeats (every TTL/4) and its claims, whichever came last. When
neither called lately, a health check of the control plane's LeaseService stands in: an idle scheduler must still
become ready, or executors that find schedulers through readiness never arrive.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pacer.internal.v1 import lease_service_pb2 as lease_pb

LEASE_SERVICE = lease_pb.DESCRIPTOR.services_by_name["LeaseService"].full_name
PROBE_TIMEOUT_S = 2.0

Probe = Callable[[], Awaitable[bool]]


class ClaimEvidence(Protocol):
    """What the claim loop knows: how its last call to the control plane went, and when (monotonic seconds)."""

    @property
    def reachable(self) -> bool | None: ...

    @property
    def called_at(self) -> float | None: ...


class LatestEvidence:
    """The verdict of whichever of `sources` called the control plane last."""

    def __init__(self, *sources: ClaimEvidence) -> None:
        self._sources = sources

    def _latest(self) -> ClaimEvidence | None:
        called = [source for source in self._sources if source.called_at is not None]
        return max(called, key=lambda source: source.called_at or 0.0, default=None)

    @property
    def reachable(self) -> bool | None:
        latest = self._latest()
        return None if latest is None else latest.reachable

    @property
    def called_at(self) -> float | None:
        latest = self._latest()
        return None if latest is None else latest.called_at


class ControlReachability:
    """`reachable()`: the claim loop's verdict while it called within `fresh_s`, else `probe()`'s (run at most
    once per `fresh_s`)."""

    def __init__(
        self,
        claims: ClaimEvidence,
        probe: Probe,
        fresh_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._claims = claims
        self._probe = probe
        self._fresh_s = fresh_s
        self._monotonic = monotonic
        self._probed: bool = False
        self._probed_at: float | None = None

    async def reachable(self) -> bool:
        now = self._monotonic()
        called_at = self._claims.called_at
        if called_at is not None and now - called_at < self._fresh_s:
            return self._claims.reachable is True
        if self._probed_at is None or now - self._probed_at >= self._fresh_s:
            self._probed = await self._probe()
            self._probed_at = self._monotonic()
        return self._probed


def lease_service_probe(channel: grpc.aio.Channel) -> Probe:
    """A probe asking the control plane, over `channel`, whether its LeaseService is SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=LEASE_SERVICE)

    async def probe() -> bool:
        try:
            answer = await stub.Check(request, timeout=PROBE_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    return probe
