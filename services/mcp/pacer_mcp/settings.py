"""Settings of the MCP server, read once from `PACER_*` environment variables by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pacer_common.settings import load


@dataclass(frozen=True)
class McpSettings:
    """Field `foo` is read from `PACER_FOO` (see docs/mcp.md).

    `min_interval_ms` mirrors the control plane's floor so the tool schemas advertise the same minimum; the control
    plane still enforces its own value.
    """

    mcp_addr: str = "127.0.0.1:8765"
    control_addr: str = "127.0.0.1:50051"
    log_level: str = "INFO"
    min_interval_ms: int = 1000


def load_settings(environ: Mapping[str, str] | None = None) -> McpSettings:
    """The settings from `environ` (default: the process environment); raises SettingsError on a bad value."""
    settings: McpSettings = load(McpSettings, environ)
    return settings


def split_addr(addr: str) -> tuple[str, int]:
    """`host:port` (IPv6 hosts in brackets) -> (host, port); raises ValueError when the port is missing or bad."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {addr!r} must be host:port")
    return host.strip("[]") or "127.0.0.1", int(port)
