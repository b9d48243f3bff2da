"""Pacer's services as real processes for end-to-end tests, started with the shared launcher
(`pacer_common.processes`): health-checked start, clean stop, logs kept for the failure message."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

from pacer_common.processes import BIN, ServiceProcess, StartError, free_addr, free_port, health_status

__all__ = [
    "BIN",
    "ServiceProcess",
    "free_addr",
    "free_port",
    "health_status",
    "start_control",
    "start_listener",
    "start_service",
]


def start_service(command: str, addr: str | None, env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    """Start a service; when it listens on `addr`, return only once it reports SERVING (asked on its plaintext
    health port, PACER_HEALTH_ADDR, when it has one: `addr` may speak TLS)."""
    service = ServiceProcess(command, env, log_path)
    if addr is None:
        return service
    try:
        service.wait_serving(env.get("PACER_HEALTH_ADDR") or addr)
    except StartError:
        service.stop()
        raise AssertionError(f"{command} did not start:\n{service.logs()}") from None
    return service


def start_control(
    tmp: Path, database_url: str, name: str = "control", addr: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[ServiceProcess, str]:
    """Start pacer-control (on a free port unless `addr`) with its state in `tmp`; returns it once healthy.

    Its metrics go to a free port too, unless `env` names one: the default port would collide between tests.
    """
    addr = addr or free_addr()
    settings = {
        "PACER_LISTEN_ADDR": addr,
        "PACER_DATABASE_URL": database_url,
        "PACER_VAR_DIR": str(tmp / "var"),
        "PACER_METRICS_ADDR": free_addr(),
    }
    return start_service("pacer-control", addr, {**settings, **(env or {})}, tmp / f"{name}.log"), addr


def start_listener(
    command: str, addr: str, env: Mapping[str, str], log_path: Path, args: Sequence[str] = ()
) -> ServiceProcess:
    """Start an HTTP service (the REST gateway, the MCP server) that has no gRPC health port; return once `addr`
    accepts connections."""
    service = ServiceProcess(command, env, log_path, args=args)
    try:
        service.wait_until(lambda: _accepts(addr), f"listening on {addr}")
    except StartError:
        service.stop()
        raise AssertionError(f"{command} did not start:\n{service.logs()}") from None
    return service


def _accepts(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False
