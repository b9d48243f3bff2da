"""Settings of the MCP server, read once from `PACER_*` environment variables by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pacer_common.loops import check_event_loop
from pacer_common.settings import ClientTls, load


@dataclass(frozen=True)
class McpSettings:
    """Field `foo` is read from `PACER_FOO` (see docs/mcp.md).

    `min_interval_ms` mirrors the control plane's floor so the tool schemas advertise the same minimum; the control
    plane still enforces its own value. Over stdio the agent's key is `api_key`, else the dev key in `var_dir`;
    `tls` makes the channel to the control plane TLS. `event_loop` is `uvloop` (the default) or `asyncio` (the
    standard library's loop, to rule uvloop out when chasing a problem). `metrics_addr` serves Prometheus `/metrics`:
    unset, 127.0.0.1:9468 over HTTP and off over stdio (every agent starts its own stdio server); empty, off.
    """

    mcp_addr: str = "127.0.0.1:8765"
    metrics_addr: str | None = None
    control_addr: str = "127.0.0.1:50051"
    log_level: str = "INFO"
    event_loop: str = "uvloop"
    min_interval_ms: int = 1000
    api_key: str = ""
    var_dir: str = "var"
    tls: ClientTls = field(default_factory=ClientTls)

    def __post_init__(self) -> None:
        check_event_loop(self.event_loop)


def load_settings(environ: Mapping[str, str] | None = None) -> McpSettings:
    """The settings from `environ` (default: the process environment); raises SettingsError on a bad value."""
    settings: McpSettings = load(McpSettings, environ)
    return settings
