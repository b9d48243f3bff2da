"""The control plane's settings: a frozen dataclass read once from `PACER_*` variables by the composition roots
(`pacer-control` and `pacer-admin`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pacer_common.loops import check_event_loop
from pacer_common.settings import Operations, ServerTls


@dataclass(frozen=True)
class ControlSettings:
    """Settings of the control plane (see the README's configuration table and docs/operations.md).

    `operations.metrics_addr` serves Prometheus `/metrics` (empty: off); `operations.health_addr` adds a plaintext
    server answering only grpc.health.v1 (empty: health is on `listen_addr` only). `tls.cert_file` and
    `tls.key_file` make the API TLS; `tls.client_ca_file` as well makes it mutual TLS for every caller (see
    `pacer_common.tls`), unless `internal_addr` is set: then that second port serves the internal API with mutual
    TLS, the public port keeps server TLS only, and internal RPCs must arrive with a client certificate.

    Endpoint secrets are sealed at rest with the keys in `secrets_keys` (`id:base64key`, comma separated, the first
    seals) or in the file `secrets_key_file`; the embedded profile (`bootstrap_dev`) makes `var/secrets-keys`.

    Finished runs older than `run_retention_days` (0: kept for ever; a tenant's own `run_retention_days` quota wins)
    are deleted every `run_retention_sweep_s`, `run_retention_batch` rows per transaction with
    `run_retention_pause_ms` between transactions, so the deletes never hold up claims and results for long.

    Each evaluation of an endpoint rule's condition may take `policy_deadline_ms` before it is stopped and recorded
    as the rule's error (see pacer_control.sandbox).

    `event_loop` is `uvloop` (the default: the same work for less CPU) or `asyncio` (the standard library's loop,
    to rule uvloop out when chasing a problem).
    """

    listen_addr: str = "127.0.0.1:50051"
    database_url: str = "sqlite:///var/pacer.db"
    var_dir: str = "var"
    bootstrap_dev: bool = True
    min_interval_ms: int = 1000
    db_pool_size: int = 10
    service_token: str = ""
    lease_grace_ms: int = 10_000
    reaper_interval_ms: int = 1000
    session_ttl_ms: int = 3000
    event_loop: str = "uvloop"
    # Default limits of every tenant; -1 takes the profile's own (pacer_control.quotas: generous when embedded).
    quota_max_jobs: int = -1
    quota_max_endpoints: int = -1
    quota_min_interval_ms: int = -1
    quota_rate_per_s: int = -1
    quota_burst: int = -1
    run_retention_days: int = 30
    run_retention_batch: int = 2000
    run_retention_pause_ms: int = 500
    run_retention_sweep_s: int = 60
    operations: Operations = field(default_factory=lambda: Operations(metrics_addr="127.0.0.1:9464"))
    tls: ServerTls = field(default_factory=ServerTls)
    internal_addr: str = ""
    secrets_keys: str = ""
    secrets_key_file: str = ""
    policy_deadline_ms: int = 250

    def __post_init__(self) -> None:
        check_event_loop(self.event_loop)
