"""Typed, frozen settings read once from `PACER_*` environment variables by each composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def _convert(name: str, raw: str, kind: Any) -> object:
    if kind in (bool, "bool"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{name}={raw!r} is not a boolean")
    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
    return raw


def load(cls: type[Any], environ: Mapping[str, str] | None = None) -> Any:
    """Build the frozen dataclass `cls`, field `foo` read from `PACER_FOO` when set."""
    env = os.environ if environ is None else environ
    values = {}
    for f in fields(cls):
        name = f"PACER_{f.name.upper()}"
        if name in env:
            values[f.name] = _convert(name, env[name], f.type)
    return cls(**values)


@dataclass(frozen=True)
class ControlSettings:
    """Settings of the control plane (see the README's configuration table and docs/operations.md).

    `metrics_addr` serves Prometheus `/metrics` (empty: off); `health_addr` adds a plaintext server answering only
    grpc.health.v1 (empty: health is on `listen_addr` only). `tls_cert_file` and `tls_key_file` make the API
    TLS; `tls_client_ca_file` as well makes it mutual TLS for every caller (see `pacer_common.tls`), unless
    `internal_addr` is set: then that second port serves the internal API with mutual TLS, the public port keeps
    server TLS only, and internal RPCs must arrive with a client certificate.

    Endpoint secrets are sealed at rest with the keys in `secrets_keys` (`id:base64key`, comma separated, the first
    seals) or in the file `secrets_key_file`; the embedded profile (`bootstrap_dev`) makes `var/secrets-keys`.
    """

    listen_addr: str = "127.0.0.1:50051"
    database_url: str = "sqlite:///var/pacer.db"
    var_dir: str = "var"
    bootstrap_dev: bool = True
    min_interval_ms: int = 1000
    db_pool_size: int = 10
    log_level: str = "INFO"
    service_token: str = ""
    lease_grace_ms: int = 10_000
    reaper_interval_ms: int = 1000
    session_ttl_ms: int = 3000
    # Default limits of every tenant; -1 takes the profile's own (pacer_control.quotas: generous when embedded).
    quota_max_jobs: int = -1
    quota_max_endpoints: int = -1
    quota_min_interval_ms: int = -1
    quota_rate_per_s: int = -1
    quota_burst: int = -1
    metrics_addr: str = "127.0.0.1:9464"
    health_addr: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    internal_addr: str = ""
    secrets_keys: str = ""
    secrets_key_file: str = ""
