"""Composition root of the REST gateway: settings -> control-plane client -> HTTP server, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from pacer_common.client import AsyncControlClient
from pacer_common.logs import configure_logging
from pacer_common.loops import run_on_loop
from pacer_common.ports import ListenError, bind_socket, parse_addr
from pacer_common.telemetry import new_registry, serve_metrics
from pacer_common.tls import client_tls_credentials
from pacer_gateway.app import create_app
from pacer_gateway.metrics import GatewayMetrics
from pacer_gateway.protocol import GatewayRunner
from pacer_gateway.settings import GatewaySettings, load_settings

log = logging.getLogger("pacer.gateway")
GRACE_S = 5.0


class JsonAccessLogger(AbstractAccessLogger):
    """One structured line per request (`event="http.request"`), in the same JSON logs as everything else."""

    def log(self, request: Any, response: Any, time: float) -> None:
        self.logger.info(
            "request",
            extra={
                "event": "http.request",
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(time * 1000, 1),
            },
        )


async def serve(settings: GatewaySettings) -> None:
    """Serve HTTP until SIGTERM or SIGINT; a ListenError (before anything is served) when the port cannot be had."""
    sock = bind_socket("PACER_GATEWAY_ADDR", settings.gateway_addr)
    registry = new_registry()
    metrics_endpoint = serve_metrics(settings.metrics_addr, registry, setting="PACER_METRICS_ADDR")
    client = AsyncControlClient(settings.control_addr, client_tls_credentials(settings.tls))
    app = create_app(client, GatewayMetrics(registry), settings.min_interval_ms)
    runner = GatewayRunner(app, access_log_class=JsonAccessLogger, access_log=log)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, shutdown_timeout=GRACE_S).start()
        log.info(
            "gateway serving",
            extra={"event": "gateway.started", "addr": settings.gateway_addr, "control_addr": settings.control_addr},
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("gateway stopping", extra={"event": "gateway.stopping"})
    finally:
        await runner.cleanup()
        await client.close()
        if metrics_endpoint is not None:
            metrics_endpoint.close()


def main() -> None:
    try:
        settings = load_settings()
        parse_addr(settings.gateway_addr, "PACER_GATEWAY_ADDR")
        client_tls_credentials(settings.tls)  # refuse bad TLS settings now, with a plain message
    except ValueError as error:
        # Before logging is configured: a plain message on standard error and exit status 1.
        raise SystemExit(f"pacer-gateway: {error}") from None
    configure_logging(settings.log_level)
    try:
        run_on_loop(serve(settings), settings.event_loop)
    except ListenError as error:
        raise SystemExit(f"pacer-gateway: {error}") from None


if __name__ == "__main__":
    main()
