"""pacerctl's settings: where the control plane is, the caller's key and TLS, read once from `PACER_*` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pacer_common.client import DEFAULT_ADDR
from pacer_common.settings import ClientTls, load


@dataclass(frozen=True)
class CliSettings:
    """`addr` (PACER_CONTROL_ADDR, the name every service and front door reads; PACER_ADDR is its older alias) is the
    control plane, `api_key` (PACER_API_KEY) the caller's key, else the dev key in
    `var_dir` (PACER_VAR_DIR); `tls` (PACER_TLS_CA_FILE, PACER_TLS_CLIENT_*) makes the channel TLS."""

    addr: str = DEFAULT_ADDR
    api_key: str = ""
    var_dir: str = "var"
    tls: ClientTls = field(default_factory=ClientTls)


def load_settings(environ: Mapping[str, str] | None = None) -> CliSettings:
    """The settings from `environ` (default: the process environment); an empty address is the default."""
    env = os.environ if environ is None else environ
    settings: CliSettings = load(CliSettings, env)
    return replace(settings, addr=env.get("PACER_CONTROL_ADDR") or settings.addr or DEFAULT_ADDR)
