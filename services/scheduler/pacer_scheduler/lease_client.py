"""The control plane as the scheduler sees it: keep a session alive, claim due runs under it, report results; gRPC
failures become two errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer.internal.v1 import lease_service_pb2_grpc as lease_grpc
from pacer_common.credentials import bearer
from pacer_common.ids import new_id
from pacer_common.tls import open_channel

CLAIM_TIMEOUT_S = 5.0
REPORT_TIMEOUT_S = 10.0
# A heartbeat answered later than this says nothing useful: the session's time is measured from its sending.
HEARTBEAT_TIMEOUT_S = 1.0
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
# own retry pacing (at most 0.5 s): gRPC's default (1 s growing to 120 s) would keep us away for minutes after an outage
# ended, and every second away past the scheduler's session margin is a second without dispatching.
# Claimed work items carry request bodies (up to 256 KiB each), so a full claim can exceed gRPC's default 4 MiB.
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
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
    """The control plane answered and refused the call (bad credential, invalid request, ended session)."""

    @property
    def session_ended(self) -> bool:
        """True when the refusal says the scheduler's session is over (FAILED_PRECONDITION)."""
        return self.code == "FAILED_PRECONDITION"


class ClaimSource(Protocol):
    """Where claimed runs come from."""

    async def claim(self, horizon_ms: int, limit: int, session_id: str) -> list[lease_pb.WorkItem]:
        """Lease up to `limit` runs due within `horizon_ms` to session `session_id`, earliest first; raises
        ControlError."""
        ...


class ResultSink(Protocol):
    """Where run results go."""

    async def report(
        self,
        results: Sequence[lease_pb.RunResult],
        held_run_ids: Sequence[str] = (),
        vanished_run_ids: Sequence[str] = (),
        *,
        released_run_ids: Sequence[str] = (),
    ) -> None:
        """Record the results, and runs executors hold, that vanished or that never began, in one batch; raises
        ControlError, in which case none may be assumed recorded."""
        ...


class SessionHost(Protocol):
    """Where the scheduler's session lives."""

    async def heartbeat(self, session_id: str, *, closing: bool = False) -> int:
        """Open or renew session `session_id` (end it when `closing`); returns its time to live in milliseconds.

        Raises ControlRefused with `session_ended` when the control plane already ended it, else ControlError.
        """
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
    """LeaseService over a channel, authenticated with the service token; implements ClaimSource, ResultSink and
    SessionHost.

    A claim that got no answer (the control plane may have committed it, then died) is repeated with the same claim
    id: the control plane then hands back the runs that claim took instead of leaving them claimed and unknown.
    """

    def __init__(self, channel: grpc.aio.Channel, token: str, scheduler_id: str) -> None:
        self._stub = lease_grpc.LeaseServiceStub(channel)
        self._metadata = bearer(token)
        self._scheduler_id = scheduler_id
        self._unanswered: tuple[str, str] | None = None  # (session id, claim id) of a claim with no answer

    async def claim(self, horizon_ms: int, limit: int, session_id: str) -> list[lease_pb.WorkItem]:
        claim_id = self._claim_id(session_id)
        request = lease_pb.ClaimDueRunsRequest(
            scheduler_id=self._scheduler_id,
            horizon_ms=horizon_ms,
            limit=limit,
            session_id=session_id,
            claim_id=claim_id,
        )
        try:
            response = await self._stub.ClaimDueRuns(request, metadata=self._metadata, timeout=CLAIM_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            failure = _translate(error)
            self._unanswered = (session_id, claim_id) if isinstance(failure, ControlUnreachable) else None
            raise failure from None
        self._unanswered = None
        return list(response.items)

    def _claim_id(self, session_id: str) -> str:
        if self._unanswered is not None and self._unanswered[0] == session_id:
            return self._unanswered[1]
        return new_id("cl")

    async def report(
        self,
        results: Sequence[lease_pb.RunResult],
        held_run_ids: Sequence[str] = (),
        vanished_run_ids: Sequence[str] = (),
        *,
        released_run_ids: Sequence[str] = (),
    ) -> None:
        request = lease_pb.ReportResultsRequest(
            results=results,
            held_run_ids=held_run_ids,
            vanished_run_ids=vanished_run_ids,
            released_run_ids=released_run_ids,
        )
        try:
            await self._stub.ReportResults(request, metadata=self._metadata, timeout=REPORT_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None

    async def heartbeat(self, session_id: str, *, closing: bool = False) -> int:
        request = lease_pb.HeartbeatRequest(scheduler_id=self._scheduler_id, session_id=session_id, closing=closing)
        try:
            response = await self._stub.Heartbeat(request, metadata=self._metadata, timeout=HEARTBEAT_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None
        return int(response.ttl_ms)
