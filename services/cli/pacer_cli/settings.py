"""pacerctl's settings: where the control plane is, the caller's key and TLS, read once from `PACER_*` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pacer_common.settings import ClientTls, load


@dataclass(frozen=True)
class CliSettings:
    """`addr` (PACER_CONTROL_ADDR, the name every service and front door reads; PACER_ADDR is its older alias) is the
    control plane, `api_key` (PACER_API_KEY) the caller's key, else the dev key in `var_dir` (PACER_VAR_DIR); `tls`
    (PACER_TLS_CA_FILE, PACER_TLS_CLIENT_*) makes the channel TLS. Empty values are unset: the current context (see
    `pacer_cli.contexts`), then the defaults, fill them. `config_file` is where the contexts are."""

    addr: str = ""
    api_key: str = ""
    var_dir: str = "var"
    tls: ClientTls = field(default_factory=ClientTls)
    config_file: Path = Path("config.yaml")


def load_settings(environ: Mapping[str, str] | None = None) -> CliSettings:
    """The settings from `environ` (default: the process environment)."""
    env = os.environ if environ is None else environ
    settings: CliSettings = load(CliSettings, {k: v for k, v in env.items() if k != "PACER_CONFIG_FILE"})
    return replace(settings, addr=env.get("PACER_CONTROL_ADDR") or settings.addr, config_file=config_file(env))


def config_file(env: Mapping[str, str]) -> Path:
    """$PACER_CONFIG, else $XDG_CONFIG_HOME/pacer/config.yaml, else ~/.config/pacer/config.yaml."""
    if env.get("PACER_CONFIG"):
        return Path(env["PACER_CONFIG"]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path(env.get("HOME", "~")) / ".config"
    return base.expanduser() / "pacer" / "config.yaml"
