"""The control plane as the scheduler sees it: claim due runs, report results; gRPC failures become two errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer.internal.v1 import lease_service_pb2_grpc as lease_grpc
from pacer_common.credentials import bearer
from pacer_common.tls import open_channel

CLAIM_TIMEOUT_S = 5.0
REPORT_TIMEOUT_S = 10.0
# Codes that mean "try again later": the control plane is down, restarting, overloaded or slow.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)
# Keepalive notices a dead control plane connection within ~30 s even between calls. Reconnect backoff matches our
# own retry pacing: gRPC's default (1 s growing to 120 s) would keep us away for minutes after an outage ended.
# Claimed work items carry request bodies (up to 256 KiB each), so a full claim can exceed gRPC's default 4 MiB.
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


class ControlError(Exception):
    """A call to the control plane failed; `code` is the gRPC status code name."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class ControlUnreachable(ControlError):
    """The control plane did not answer (down, restarting, timed out): retry later."""


class ControlRefused(ControlError):
    """The control plane answered and refused the call (bad credential, invalid request)."""


class ClaimSource(Protocol):
    """Where claimed runs come from."""

    async def claim(self, horizon_ms: int, limit: int) -> list[lease_pb.WorkItem]:
        """Lease up to `limit` runs due within `horizon_ms`, earliest first; raises ControlError."""
        ...


class ResultSink(Protocol):
    """Where run results go."""

    async def report(self, results: Sequence[lease_pb.RunResult]) -> None:
        """Record the results in one batch; raises ControlError, in which case none may be assumed recorded."""
        ...


def control_channel(
    address: str,
    credentials: grpc.ChannelCredentials | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A channel to the control plane with keepalive on: TLS with `credentials`, else plaintext."""
    return open_channel(address, credentials, options=CHANNEL_OPTIONS, interceptors=interceptors)


def _translate(error: grpc.aio.AioRpcError) -> ControlError:
    code = error.code()
    kind = ControlUnreachable if code in TRANSIENT else ControlRefused
    return kind(code.name, error.details() or "")


class LeaseClient:
    """LeaseService over a channel, authenticated with the service token; implements ClaimSource and ResultSink."""

    def __init__(self, channel: grpc.aio.Channel, token: str, scheduler_id: str) -> None:
        self._stub = lease_grpc.LeaseServiceStub(channel)
        self._metadata = bearer(token)
        self._scheduler_id = scheduler_id

    async def claim(self, horizon_ms: int, limit: int) -> list[lease_pb.WorkItem]:
        request = lease_pb.ClaimDueRunsRequest(scheduler_id=self._scheduler_id, horizon_ms=horizon_ms, limit=limit)
        try:
            response = await self._stub.ClaimDueRuns(request, metadata=self._metadata, timeout=CLAIM_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None
        return list(response.items)

    async def report(self, results: Sequence[lease_pb.RunResult]) -> None:
        request = lease_pb.ReportResultsRequest(results=results)
        try:
            await self._stub.ReportResults(request, metadata=self._metadata, timeout=REPORT_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None
