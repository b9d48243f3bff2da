"""The scheduler's settings: a frozen dataclass read once from `PACER_*` variables by the composition root."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from pacer_common.loops import check_event_loop
from pacer_common.settings import ClientTls, Operations, ServerTls, SettingsError

# The control plane refuses claims beyond these (see LeaseService); settings outside them cannot work.
MAX_CLAIM_HORIZON_MS = 60_000
MAX_CLAIM_BATCH = 5000
MAX_RESULT_BATCH = 5000
MAX_METRICS_JOBS = 50


@dataclass(frozen=True)
class SchedulerSettings:
    """Settings of the scheduler; field `foo` comes from `PACER_FOO` (see `pacer_common.settings.load`).

    `scheduler_addr` is where executors connect (named apart from the shared PACER_LISTEN_ADDR), `control_addr`
    where the control plane's LeaseService answers. The service token is `service_token`, else the file the
    control plane writes in `var_dir`.

    Broken executor streams: the runs sent on a stream that ended wait `vanish_grace_ms` for a result or a Held
    (the executor reconnecting, or telling another stream it still performs them) before they are reported
    vanished, which the control plane settles LOST at once. Shorter makes a dead executor's endpoints fire again
    sooner; longer gives a briefly disconnected executor more time to say what it holds.

    Session: the scheduler dispatches only until the last answered heartbeat's send time plus the session TTL (the
    control plane's) minus `session_margin_ms`, so it never hands out a run after the control plane may have given
    it back; the margin covers clock rate differences and the time a work item takes to reach an executor.
    `event_loop` is `uvloop` (the default: the same work for less CPU) or `asyncio` (the standard library's loop,
    to rule uvloop out when chasing a problem).

    Per-tenant metrics: a run that reaches an executor more than `late_threshold_ms` after it was due counts as
    started late (`pacer_runs_started_late_total`, by tenant). `metrics_jobs` (comma-separated job ids, at most
    MAX_METRICS_JOBS) opts those jobs into a `job` label as well, which keeps the series bounded whatever the number
    of jobs.

    Operations (docs/operations.md): `metrics_addr` serves Prometheus `/metrics` (empty: off); `health_addr` adds
    a plaintext server answering only grpc.health.v1 (empty: health on `scheduler_addr` only). TLS: the server
    side `tls` (mutual with executors when it names a client CA) and the client side `control_tls` toward the
    control plane; see `pacer_common.tls`.
    """

    scheduler_addr: str = "127.0.0.1:50052"
    control_addr: str = "127.0.0.1:50051"
    service_token: str = ""
    var_dir: str = "var"
    claim_horizon_ms: int = 1500
    claim_interval_ms: int = 200
    claim_batch: int = 1000
    max_pending: int = 20_000
    result_batch: int = 500
    result_flush_ms: int = 50
    drain_timeout_ms: int = 30_000
    vanish_grace_ms: int = 2000
    session_margin_ms: int = 500
    scheduler_id: str = ""
    event_loop: str = "uvloop"
    late_threshold_ms: int = 10_000
    metrics_jobs: str = ""
    operations: Operations = field(default_factory=lambda: Operations(metrics_addr="127.0.0.1:9465"))
    tls: ServerTls = field(default_factory=ServerTls)
    control_tls: ClientTls = field(default_factory=ClientTls)

    def __post_init__(self) -> None:
        _in_range("PACER_CLAIM_HORIZON_MS", self.claim_horizon_ms, 0, MAX_CLAIM_HORIZON_MS)
        _in_range("PACER_CLAIM_INTERVAL_MS", self.claim_interval_ms, 1, 60_000)
        _in_range("PACER_CLAIM_BATCH", self.claim_batch, 1, MAX_CLAIM_BATCH)
        _in_range("PACER_MAX_PENDING", self.max_pending, 1, 10_000_000)
        _in_range("PACER_RESULT_BATCH", self.result_batch, 1, MAX_RESULT_BATCH)
        _in_range("PACER_RESULT_FLUSH_MS", self.result_flush_ms, 1, 60_000)
        _in_range("PACER_DRAIN_TIMEOUT_MS", self.drain_timeout_ms, 0, 3_600_000)
        _in_range("PACER_VANISH_GRACE_MS", self.vanish_grace_ms, 0, 600_000)
        _in_range("PACER_SESSION_MARGIN_MS", self.session_margin_ms, 0, 60_000)
        _in_range("PACER_LATE_THRESHOLD_MS", self.late_threshold_ms, 1, 86_400_000)
        if len(self.measured_jobs) > MAX_METRICS_JOBS:
            raise SettingsError(f"PACER_METRICS_JOBS names {len(self.measured_jobs)} jobs; at most {MAX_METRICS_JOBS}")
        check_event_loop(self.event_loop)

    @property
    def measured_jobs(self) -> frozenset[str]:
        """The job ids PACER_METRICS_JOBS opts into the per-job metrics."""
        return frozenset(job.strip() for job in self.metrics_jobs.split(",") if job.strip())

    @property
    def identity(self) -> str:
        """The id this scheduler claims under: `scheduler_id`, else `<hostname>-<pid>`."""
        return self.scheduler_id or f"{socket.gethostname()}-{os.getpid()}"


def _in_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} must be between {low} and {high}")
