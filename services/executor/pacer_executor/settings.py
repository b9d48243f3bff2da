"""The executor's settings: a frozen dataclass read once from `PACER_*` variables by the composition root."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from pacer_common.loops import check_event_loop
from pacer_common.settings import ClientTls, Operations, SettingsError


@dataclass(frozen=True)
class ExecutorSettings:
    """Settings of the executor; field `foo` comes from `PACER_FOO` (see `pacer_common.settings.load`).

    `scheduler_addrs` is a comma separated list: the executor keeps one stream to every scheduler named and splits
    `capacity` (its bound on concurrent runs) between them. `egress_allow` widens the egress policy
    (`EgressPolicy.from_strings`). `tenant_pools` is how many tenants keep a pool of keep-alive connections (runs
    of different tenants never share a connection; the least recently used tenant's pool is closed first): beyond
    it, tenants calling in turn pay for new connections more often. The service token is `service_token`, else the
    file the control plane writes in `var_dir`.

    `max_unacked_results` bounds the results kept until a scheduler confirms the control plane recorded them (they
    are sent again after a stream breaks, so a dying scheduler loses none): at the bound the executor takes no new
    work until confirmations arrive, rather than drop a result. Each kept result holds up to
    `capture_limit_bytes` of body.
    `log_runs` logs every run's outcome at INFO (`make run` turns it on); otherwise a success is logged at DEBUG
    only, since a line per run costs more CPU than the run itself at a thousand runs a second.

    `event_loop` is `uvloop` (the default: the same work for less CPU) or `asyncio` (the standard library's loop,
    to rule uvloop out when chasing a problem).

    Operations (docs/operations.md): `metrics_addr` serves Prometheus `/metrics`, `health_addr` a plaintext
    grpc.health.v1 server (ready while a scheduler stream is open); empty turns either off. TLS toward the
    schedulers: `tls` (a CA to trust, and a client certificate to present for mutual TLS).
    """

    scheduler_addrs: str = "127.0.0.1:50052"
    executor_id: str = ""
    capacity: int = 100
    egress_allow: str = ""
    capture_limit_bytes: int = 65536
    tenant_pools: int = 256
    service_token: str = ""
    var_dir: str = "var"
    drain_timeout_ms: int = 30_000
    max_unacked_results: int = 10_000
    discovery_interval_ms: int = 10_000
    event_loop: str = "uvloop"
    log_runs: bool = False
    operations: Operations = field(
        default_factory=lambda: Operations(metrics_addr="127.0.0.1:9466", health_addr="127.0.0.1:50053")
    )
    tls: ClientTls = field(default_factory=ClientTls)

    def __post_init__(self) -> None:
        if not self.scheduler_addresses:
            raise SettingsError("PACER_SCHEDULER_ADDRS must name at least one scheduler (host:port)")
        _at_least("PACER_CAPACITY", self.capacity, 1)
        _at_least("PACER_CAPTURE_LIMIT_BYTES", self.capture_limit_bytes, 0)
        _at_least("PACER_TENANT_POOLS", self.tenant_pools, 1)
        _at_least("PACER_DRAIN_TIMEOUT_MS", self.drain_timeout_ms, 0)
        _at_least("PACER_MAX_UNACKED_RESULTS", self.max_unacked_results, 1)
        _at_least("PACER_DISCOVERY_INTERVAL_MS", self.discovery_interval_ms, 100)
        check_event_loop(self.event_loop)

    @property
    def scheduler_addresses(self) -> tuple[str, ...]:
        """The schedulers to connect to, in the order given, blanks and repeats dropped."""
        named = (part.strip() for part in self.scheduler_addrs.split(","))
        return tuple(dict.fromkeys(address for address in named if address))

    @property
    def identity(self) -> str:
        """The id this executor announces: `executor_id`, else `<hostname>-<pid>`."""
        return self.executor_id or f"{socket.gethostname()}-{os.getpid()}"


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise SettingsError(f"{name}={value} must be at least {low}")
