"""Composition root of the control plane: settings -> database -> server, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import grpc
from sqlalchemy import Engine

from pacer_common.clock import SystemClock
from pacer_common.credentials import service_token
from pacer_common.health import Readiness, probe_forever, serving_health
from pacer_common.logs import configure_logging
from pacer_common.loops import run_on_loop
from pacer_common.ports import ListenError
from pacer_common.settings import load
from pacer_common.telemetry import ServerMetricsInterceptor, new_registry, serve_metrics
from pacer_common.tls import server_tls_credentials
from pacer_control.catalog import Catalog
from pacer_control.database import make_engine, migrate
from pacer_control.metrics import ControlMetrics, watch_database
from pacer_control.pipeline import Pipeline
from pacer_control.quotas import default_quota
from pacer_control.reaper import end_sessions_forever, reap_forever
from pacer_control.retention import RunHistory, prune_forever, retention_policy
from pacer_control.sealing import Keyring, settings_keyring
from pacer_control.server import SERVICE_NAME, ServerOptions, build_server, readiness
from pacer_control.settings import ControlSettings
from pacer_control.tenancy import ensure_dev_key

log = logging.getLogger("pacer.control")
T = TypeVar("T")
GRACE_S = 5.0
# Readiness follows the database: a `SELECT 1` this often, failing when it takes longer than the timeout.
DB_PROBE_INTERVAL_S = 2.0
DB_PROBE_TIMEOUT_S = 3.0


def _options(settings: ControlSettings) -> ServerOptions:
    return ServerOptions(
        internal_needs_client_cert=bool(settings.internal_addr and settings.tls.client_ca_file),
        listen_addr=settings.listen_addr,
        min_interval_ms=settings.min_interval_ms,
        service_token=service_token(settings.service_token, settings.var_dir, create=settings.bootstrap_dev),
        lease_grace_ms=settings.lease_grace_ms,
        session_ttl_ms=settings.session_ttl_ms,
        quota_defaults=default_quota(settings),
        condition_deadline_ms=settings.policy_deadline_ms,
    )


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _prepare_database(settings: ControlSettings, engine: Engine, catalog: Catalog) -> None:
    """Migrate the database, and make the dev tenant when the embedded profile asks for it."""
    migrate(engine, keyring=catalog.keyring)
    log.info("schema up to date", extra={"event": "control.migrated", "backend": engine.dialect.name})
    if settings.bootstrap_dev:
        key_path = ensure_dev_key(catalog, Path(settings.var_dir), SystemClock().now())
        log.info("dev tenant ready", extra={"event": "control.dev_key", "key_file": str(key_path)})


def _background(
    settings: ControlSettings, pipeline: Pipeline, pool: Executor, ready: Readiness, metrics: ControlMetrics
) -> list[asyncio.Task[None]]:
    """The reapers of expired leases and of silent scheduler sessions, the pruning of old runs, and the database
    probe behind readiness."""
    reaper = reap_forever(
        pipeline,
        SystemClock(),
        pool,
        settings.reaper_interval_ms / 1000,
        settings.lease_grace_ms / 1000,
        metrics,
    )
    sessions = end_sessions_forever(pipeline, SystemClock(), pool, settings.session_ttl_ms / 1000, metrics)
    history = RunHistory(pipeline.engine, pipeline.keyring)
    pruning = prune_forever(history, SystemClock(), pool, retention_policy(settings), metrics)
    probe = probe_forever(ready, pipeline.ping, DB_PROBE_INTERVAL_S, DB_PROBE_TIMEOUT_S)
    return [asyncio.create_task(t) for t in (reaper, sessions, pruning, probe)]


async def serve(
    settings: ControlSettings,
    keyring: Keyring,
    credentials: grpc.ServerCredentials | None = None,
    internal_credentials: grpc.ServerCredentials | None = None,
) -> None:
    """Run the control plane until SIGTERM or SIGINT; `credentials` make its port TLS (see pacer_common.tls), and
    `internal_credentials` the internal port's, when `settings.internal_addr` asks for one."""
    engine = make_engine(settings.database_url, settings.db_pool_size)
    catalog, pipeline = Catalog(engine, keyring), Pipeline(engine, keyring)
    registry = new_registry()
    metrics = ControlMetrics(registry)
    endpoint = serve_metrics(settings.operations.metrics_addr, registry, setting="PACER_METRICS_ADDR")
    # SQLite takes one writer at a time: one database thread serializes it; PostgreSQL gets a pool.
    workers = 1 if engine.dialect.name == "sqlite" else settings.db_pool_size
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db") as pool:
        internal = (settings.internal_addr, internal_credentials) if settings.internal_addr else None
        server, port, health_servicer = build_server(
            catalog,
            pipeline,
            SystemClock(),
            pool,
            _options(settings),
            metrics=metrics,
            credentials=credentials,
            internal_port=internal,
        )
        ready = readiness(health_servicer)
        await ready.start()
        interceptors = [ServerMetricsInterceptor(metrics.grpc_server)]
        async with serving_health(settings.operations.health_addr, health_servicer, interceptors):
            # Only with every port held: a second control plane started on a port in use must not migrate its
            # database, nor rewrite the dev key file the one already serving hands out.
            _prepare_database(settings, engine, catalog)
            watch_database(registry, engine, catalog.endpoint_counts)
            await server.start()
            tasks = _background(settings, pipeline, pool, ready, metrics)
            log.info(
                "control plane serving",
                extra={
                    "event": "control.started",
                    "addr": settings.listen_addr,
                    "internal_addr": settings.internal_addr or settings.listen_addr,
                    "port": port,
                    "service": SERVICE_NAME,
                    "tls": _tls_mode(settings),
                },
            )
            await _until_signalled()
            log.info("control plane stopping", extra={"event": "control.stopping"})
            await ready.shutting_down()
            for task in tasks:
                task.cancel()
            await server.stop(GRACE_S)
    if endpoint is not None:
        endpoint.close()
    engine.dispose()


def _tls_mode(settings: ControlSettings) -> str:
    if not settings.tls.cert_file:
        return "off"
    if settings.internal_addr and settings.tls.client_ca_file:
        return "server (public), mutual (internal)"
    return "mutual" if settings.tls.client_ca_file else "server"


def _credentials(settings: ControlSettings) -> tuple[grpc.ServerCredentials | None, grpc.ServerCredentials | None]:
    """(public, internal) port credentials: with an internal port, client certificates are asked for there only."""
    full = server_tls_credentials(settings.tls)
    if not settings.internal_addr:
        return full, None
    return server_tls_credentials(settings.tls, client_certificates=False), full


def main() -> None:
    try:
        settings = load(ControlSettings)
        credentials, internal_credentials = _credentials(settings)
        keyring = settings_keyring(settings)
    except ValueError as error:
        # Before logging is configured: a plain message on standard error and exit status 1.
        raise SystemExit(f"pacer-control: {error}") from None
    configure_logging(settings.operations.log_level)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line of our own says the schema is current
    try:
        run_on_loop(serve(settings, keyring, credentials, internal_credentials), settings.event_loop)
    except ListenError as error:
        raise SystemExit(f"pacer-control: {error}") from None


if __name__ == "__main__":
    main()
