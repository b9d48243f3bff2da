"""The gateway's settings, read once from `PACER_*` environment variables by the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pacer_common.client import DEFAULT_ADDR
from pacer_common.loops import check_event_loop
from pacer_common.settings import ClientTls, load

DEFAULT_MIN_INTERVAL_MS = 1000  # the control plane's own default


@dataclass(frozen=True)
class GatewaySettings:
    """`gateway_addr` is where HTTP is served; `control_addr` is the ControlService the gateway calls, over TLS when
    `tls` names a CA or client certificate (PACER_TLS_CA_FILE, PACER_TLS_CLIENT_*). `event_loop` is `uvloop` (the
    default) or `asyncio` (the standard library's loop, to rule uvloop out when chasing a problem). `metrics_addr`
    serves Prometheus `/metrics` (empty: off). `min_interval_ms` mirrors the control plane's interval floor
    (PACER_MIN_INTERVAL_MS, read by both) so the OpenAPI document states the same minimum; the control plane still
    enforces its own value."""

    gateway_addr: str = "127.0.0.1:8080"
    metrics_addr: str = "127.0.0.1:9467"
    control_addr: str = "127.0.0.1:50051"
    log_level: str = "INFO"
    event_loop: str = "uvloop"
    min_interval_ms: int = DEFAULT_MIN_INTERVAL_MS
    tls: ClientTls = field(default_factory=ClientTls)

    def __post_init__(self) -> None:
        check_event_loop(self.event_loop)


def load_settings(environ: Mapping[str, str] | None = None) -> GatewaySettings:
    """Settings from the environment; without PACER_CONTROL_ADDR the control plane is found at PACER_ADDR (its older
    alias), else at the embedded default."""
    env = os.environ if environ is None else environ
    settings: GatewaySettings = load(GatewaySettings, env)
    if "PACER_CONTROL_ADDR" not in env:
        settings = replace(settings, control_addr=env.get("PACER_ADDR") or DEFAULT_ADDR)
    return settings
