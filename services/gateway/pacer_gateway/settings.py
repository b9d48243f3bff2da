"""The gateway's settings, read once from `PACER_*` environment variables by the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from pacer_common.client import control_addr
from pacer_common.settings import load


@dataclass(frozen=True)
class GatewaySettings:
    """`gateway_addr` is where HTTP is served; `control_addr` is the ControlService the gateway calls."""

    gateway_addr: str = "127.0.0.1:8080"
    control_addr: str = "127.0.0.1:50051"
    log_level: str = "INFO"


def load_settings(environ: Mapping[str, str] | None = None) -> GatewaySettings:
    """Settings from the environment; without PACER_CONTROL_ADDR the control plane is found as the CLI finds it
    (PACER_ADDR, else the embedded default)."""
    env = os.environ if environ is None else environ
    settings: GatewaySettings = load(GatewaySettings, env)
    if "PACER_CONTROL_ADDR" not in env:
        settings = replace(settings, control_addr=control_addr(env))
    return settings


def host_and_port(addr: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` split for binding; ValueError when the port is missing or not a number."""
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"PACER_GATEWAY_ADDR={addr!r} is not host:port")
    return host.strip("[]"), int(port)
