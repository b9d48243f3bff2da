"""Typed, frozen settings read once from `PACER_*` environment variables by each composition root.

This module (with each service's own settings module) is the only place the process environment is read: the rest
of the code is given settings, so it never depends on what the process happens to have in its environment.
Settings classes are frozen dataclasses; field `foo` is read from `PACER_FOO`. A field whose type is itself a
settings dataclass (`ServerTls`, `ClientTls`, `Operations`) groups fields several services share: its fields are
read with that class's `ENV_PREFIX`, so `ServerTls.cert_file` is `PACER_TLS_CERT_FILE` wherever it is used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass, replace
from typing import Any, ClassVar, get_type_hints


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


@dataclass(frozen=True)
class ServerTls:
    """TLS of a gRPC server (see `pacer_common.tls.server_credentials`): a certificate and key give TLS;
    `client_ca_file` as well makes it mutual TLS. All empty: plaintext."""

    ENV_PREFIX: ClassVar[str] = "TLS_"
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""


@dataclass(frozen=True)
class ClientTls:
    """TLS of a gRPC client (see `pacer_common.tls.channel_credentials`): `ca_file` to trust,
    `client_cert_file`/`client_key_file` to present (mutual TLS). All empty: plaintext."""

    ENV_PREFIX: ClassVar[str] = "TLS_"
    ca_file: str = ""
    client_cert_file: str = ""
    client_key_file: str = ""


@dataclass(frozen=True)
class Operations:
    """What operators point tools at (docs/operations.md): the log level, Prometheus `/metrics` at `metrics_addr`
    and a plaintext grpc.health.v1 server at `health_addr`; an empty address turns that server off. Each service
    gives its own default addresses, so services on one machine do not collide."""

    ENV_PREFIX: ClassVar[str] = ""
    log_level: str = "INFO"
    metrics_addr: str = ""
    health_addr: str = ""


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


def _group_prefix(kind: Any) -> str | None:
    """The ENV_PREFIX of a grouped settings class, None for a plain field."""
    return str(kind.ENV_PREFIX) if is_dataclass(kind) and hasattr(kind, "ENV_PREFIX") else None


def _values(cls: type[Any], env: Mapping[str, str], prefix: str) -> dict[str, object]:
    """The fields of `cls` set in `env`, converted; a group is included only when one of its variables is set."""
    hints = get_type_hints(cls)
    values: dict[str, object] = {}
    for f in fields(cls):
        group = _group_prefix(hints[f.name])
        if group is None:
            name = f"PACER_{prefix}{f.name}".upper()
            if name in env:
                values[f.name] = _convert(name, env[name], hints[f.name])
        elif nested := _values(hints[f.name], env, group):
            values[f.name] = nested
    return values


def _group_default(f: Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _build(cls: type[Any], values: dict[str, object]) -> Any:
    """`cls` from `values`; a group's variables override only their own fields of the group's default in `cls`."""
    groups = {f.name: f for f in fields(cls) if isinstance(values.get(f.name), dict)}
    merged = {name: replace(_group_default(f), **values[name]) for name, f in groups.items()}  # type: ignore[arg-type]
    return cls(**{**values, **merged})


def load(cls: type[Any], environ: Mapping[str, str] | None = None) -> Any:
    """Build the frozen dataclass `cls`, field `foo` read from `PACER_FOO` when set (grouped fields by their
    class's prefix, over the group's default in `cls`); `environ` defaults to the process environment."""
    return _build(cls, _values(cls, os.environ if environ is None else environ, ""))


def process_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with `overrides` on top: what a service started from here inherits."""
    return {**os.environ, **(overrides or {})}
