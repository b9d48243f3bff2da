"""A small ControlService client for the examples: PACER_CONTROL_ADDR, and PACER_API_KEY or var/dev-api-key."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from pacer.control.v1 import control_service_pb2_grpc

DEFAULT_ADDR = "127.0.0.1:50051"
DEV_KEY_FILE = Path(__file__).resolve().parent.parent / "var" / "dev-api-key"


def api_key() -> str:
    key = os.environ.get("PACER_API_KEY")
    if key:
        return key
    if DEV_KEY_FILE.exists():
        return DEV_KEY_FILE.read_text().strip()
    raise SystemExit("no API key: set PACER_API_KEY or start Pacer with `make run` to create var/dev-api-key")


def control_addr() -> str:
    """Where the control plane is, as pacerctl finds it: PACER_CONTROL_ADDR (or its older alias PACER_ADDR)."""
    return os.environ.get("PACER_CONTROL_ADDR") or os.environ.get("PACER_ADDR") or DEFAULT_ADDR


class Pacer:
    """Call any ControlService RPC by name: `Pacer().CreateJob(pb.CreateJobRequest(name="x"))`."""

    def __init__(self, addr: str | None = None, key: str | None = None) -> None:
        self._addr = addr or control_addr()
        self._channel = grpc.insecure_channel(self._addr)
        self._stub = control_service_pb2_grpc.ControlServiceStub(self._channel)
        self._metadata = [("authorization", f"Bearer {key or api_key()}")]

    def __getattr__(self, rpc: str) -> Callable[[Any], Any]:
        method = getattr(self._stub, rpc)

        def call(request: Any) -> Any:
            try:
                return method(request, metadata=self._metadata, timeout=10)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                    raise SystemExit(
                        f"cannot reach the control plane at {self._addr}: is it running? "
                        "(start it with `make run`, or set PACER_CONTROL_ADDR)"
                    ) from None
                raise

        return call

    def close(self) -> None:
        self._channel.close()
