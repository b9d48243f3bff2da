"""A ControlService client for Pacer's front doors (CLI, REST gateway, MCP server) and scripts.

Every front door is a client of `pacer.control.v1.ControlService`: it sends the caller's API key and turns the
gRPC status (with its google.rpc details) into an `ApiError` it can render its own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pacer.control.v1 import control_service_pb2_grpc
from pacer_common.credentials import bearer
from pacer_common.errors import FieldViolation, QuotaViolation
from pacer_common.tls import open_channel

DEFAULT_ADDR = "127.0.0.1:50051"
DEV_KEY_FILE = "dev-api-key"
CALL_TIMEOUT_S = 30.0


def api_key(configured: str, var_dir: str) -> str | None:
    """The caller's key: `configured` (PACER_API_KEY), else the embedded dev key in `var_dir/dev-api-key`, else
    None. The file is read at each call, so a dev key written after the caller started is found."""
    if configured:
        return configured.strip()
    path = Path(var_dir or "var") / DEV_KEY_FILE
    return path.read_text().strip() if path.exists() else None


@dataclass(frozen=True)
class ApiError(Exception):
    """A refused call: the gRPC status code name, its message and its google.rpc details."""

    code: str
    message: str
    field_violations: tuple[FieldViolation, ...] = ()
    quota_violations: tuple[QuotaViolation, ...] = ()
    retry_after_s: float | None = None

    def __str__(self) -> str:
        fields = "; ".join(f"{v.field}: {v.description}" for v in self.field_violations)
        return f"{self.code}: {self.message}" + (f" ({fields})" if fields and fields not in self.message else "")


def api_error(error: grpc.RpcError) -> ApiError:
    """Decode a failed call's status and rich details."""
    code = error.code().name if error.code() is not None else "UNKNOWN"
    message = error.details() or ""
    fields: list[FieldViolation] = []
    quotas: list[QuotaViolation] = []
    retry: float | None = None
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        bad, quota, retry_info = (
            error_details_pb2.BadRequest(),
            error_details_pb2.QuotaFailure(),
            error_details_pb2.RetryInfo(),
        )
        if detail.Unpack(bad):
            fields += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif detail.Unpack(quota):
            quotas += [QuotaViolation(v.subject, v.description) for v in quota.violations]
        elif detail.Unpack(retry_info):
            retry = retry_info.retry_delay.ToMilliseconds() / 1000
    return ApiError(code, message, tuple(fields), tuple(quotas), retry)


def _metadata(key: str | None) -> tuple[tuple[str, str], ...]:
    return bearer(key) if key else ()


class ControlClient:
    """Blocking client: `client.call("CreateJob", pb.CreateJobRequest(name="x"))`; `credentials` make it TLS
    (`pacer_common.tls.client_tls_credentials` of the caller's settings), plaintext when None."""

    def __init__(self, addr: str, key: str | None = None, credentials: grpc.ChannelCredentials | None = None) -> None:
        self._channel = grpc.insecure_channel(addr) if credentials is None else grpc.secure_channel(addr, credentials)
        self._stub = control_service_pb2_grpc.ControlServiceStub(self._channel)
        self.key = key

    def call(self, rpc: str, request: Any, key: str | None = None) -> Any:
        try:
            return getattr(self._stub, rpc)(request, metadata=_metadata(key or self.key), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            raise api_error(error) from None

    def close(self) -> None:
        self._channel.close()


class AsyncControlClient:
    """grpc.aio client for asyncio front doors; the key is given per call (each caller brings its own), `credentials`
    make it TLS (plaintext when None)."""

    def __init__(self, addr: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        self._channel = open_channel(addr, credentials)
        self._stub = control_service_pb2_grpc.ControlServiceStub(self._channel)

    async def call(self, rpc: str, request: Any, key: str | None) -> Any:
        try:
            return await getattr(self._stub, rpc)(request, metadata=_metadata(key), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            raise api_error(error) from None

    async def close(self) -> None:
        await self._channel.close()
