"""Composition root of the MCP server: `pacer-mcp --transport stdio|http`.

stdio serves one agent that started this process (the key comes from the environment); http serves any number of
agents at `http://<PACER_MCP_ADDR>/mcp`, each sending its own key as `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any, Literal

import uvicorn
from mcp.server import Server
from mcp.server.stdio import stdio_server

from pacer_common.client import AsyncControlClient
from pacer_common.clock import SystemClock
from pacer_common.logs import configure_logging
from pacer_common.loops import run_on_loop
from pacer_common.ports import ListenError, bind_socket, parse_addr
from pacer_common.telemetry import new_registry, serve_metrics
from pacer_common.tls import client_tls_credentials
from pacer_mcp.metrics import McpMetrics
from pacer_mcp.server import EnvironmentKey, bearer_key, build_server
from pacer_mcp.settings import McpSettings, load_settings
from pacer_mcp.transport import OpaqueTransportErrors

log = logging.getLogger("pacer.mcp")

Transport = Literal["stdio", "http"]
HTTP_PATH = "/mcp"
HTTP_METRICS_ADDR = "127.0.0.1:9468"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: `--transport stdio` (default) or `--transport http`."""
    parser = argparse.ArgumentParser(prog="pacer-mcp", description="Pacer's MCP server for AI agents.")
    parser.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio: one agent that launched this process, key from PACER_API_KEY; "
        "http: streamable HTTP on PACER_MCP_ADDR at /mcp, key from each request's Authorization header",
    )
    return parser.parse_args(argv)


async def serve(settings: McpSettings, transport: Transport) -> None:
    """Serve MCP on `transport` until stdin closes (stdio) or SIGTERM/SIGINT (http)."""
    default_metrics = HTTP_METRICS_ADDR if transport == "http" else ""
    metrics_addr = default_metrics if settings.metrics_addr is None else settings.metrics_addr
    registry = new_registry()
    metrics_endpoint = serve_metrics(metrics_addr, registry, setting="PACER_METRICS_ADDR")
    metrics = McpMetrics(registry)
    # grpc.aio binds the channel to this event loop
    control = AsyncControlClient(settings.control_addr, client_tls_credentials(settings.tls))
    try:
        if transport == "stdio":
            await _serve_stdio(settings, control, metrics)
        else:
            await _serve_http(settings, control, metrics)
    finally:
        await control.close()
        if metrics_endpoint is not None:
            metrics_endpoint.close()


async def _serve_stdio(settings: McpSettings, control: AsyncControlClient, metrics: McpMetrics) -> None:
    key_source = EnvironmentKey(settings.api_key, settings.var_dir)
    server = build_server(control, key_source, SystemClock(), settings.min_interval_ms, metrics)
    log.info("mcp serving on stdio", extra={"event": "mcp.started", "transport": "stdio"})
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def _serve_http(settings: McpSettings, control: AsyncControlClient, metrics: McpMetrics) -> None:
    host, port = parse_addr(settings.mcp_addr, "PACER_MCP_ADDR")
    # Bound here rather than by uvicorn, which exits on a port in use without naming the setting.
    sock = bind_socket("PACER_MCP_ADDR", settings.mcp_addr)
    server: Server[Any] = build_server(control, bearer_key, SystemClock(), settings.min_interval_ms, metrics)
    # Stateless: every request stands alone (its own key, no session to pin), so replicas need no affinity.
    sdk_app = server.streamable_http_app(streamable_http_path=HTTP_PATH, stateless_http=True, host=host)
    app = OpaqueTransportErrors(sdk_app)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level=settings.log_level.lower())
    log.info(
        "mcp serving on http",
        extra={"event": "mcp.started", "transport": "http", "url": f"http://{settings.mcp_addr}{HTTP_PATH}"},
    )
    await uvicorn.Server(config).serve(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = load_settings()
        if args.transport == "http":
            parse_addr(settings.mcp_addr, "PACER_MCP_ADDR")
    except ValueError as error:
        # Before logging is configured: a plain message on standard error and exit status 1.
        raise SystemExit(f"pacer-mcp: {error}") from None
    configure_logging(settings.log_level)
    # grpc's event-loop plumbing logs a line per call at DEBUG, which would drown our own debug events.
    logging.getLogger("grpc._cython.cygrpc").setLevel(max(logging.INFO, logging.getLogger().level))
    # The SDK logs every stateless HTTP exchange at INFO ("Terminating session: None"); our tool-call events suffice.
    logging.getLogger("mcp").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        run_on_loop(serve(settings, args.transport), settings.event_loop)
    except ListenError as error:
        raise SystemExit(f"pacer-mcp: {error}") from None


if __name__ == "__main__":
    main()
