"""Composition root of the control plane: settings -> database -> server, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pacer_common.clock import SystemClock
from pacer_common.credentials import service_token
from pacer_common.logs import configure_logging
from pacer_common.settings import ControlSettings, load
from pacer_control.database import make_engine, migrate
from pacer_control.quotas import Quota
from pacer_control.reaper import reap_forever
from pacer_control.repository import Repository
from pacer_control.server import SERVICE_NAME, ServerOptions, build_server, mark_serving
from pacer_control.tenancy import ensure_dev_key

log = logging.getLogger("pacer.control")
GRACE_S = 5.0


async def serve(settings: ControlSettings) -> None:
    engine = make_engine(settings.database_url, settings.db_pool_size)
    migrate(engine)
    log.info("schema up to date", extra={"event": "control.migrated", "backend": engine.dialect.name})
    repository = Repository(engine)
    clock = SystemClock()
    if settings.bootstrap_dev:
        key_path = ensure_dev_key(repository, Path(settings.var_dir), clock.now())
        log.info("dev tenant ready", extra={"event": "control.dev_key", "key_file": str(key_path)})
    # SQLite takes one writer at a time: one database thread serializes it; PostgreSQL gets a pool.
    workers = 1 if engine.dialect.name == "sqlite" else settings.db_pool_size
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db") as pool:
        options = ServerOptions(
            listen_addr=settings.listen_addr,
            min_interval_ms=settings.min_interval_ms,
            service_token=service_token(settings.service_token, settings.var_dir, create=settings.bootstrap_dev),
            lease_grace_ms=settings.lease_grace_ms,
            quota_defaults=Quota(
                max_jobs=settings.quota_max_jobs,
                max_endpoints=settings.quota_max_endpoints,
                min_interval_ms=settings.quota_min_interval_ms,
                rate_per_s=settings.quota_rate_per_s,
                burst=settings.quota_burst,
            ),
        )
        server, port, health = build_server(repository, clock, pool, options)
        await server.start()
        await mark_serving(health)
        reaper = asyncio.create_task(
            reap_forever(repository, clock, pool, settings.reaper_interval_ms / 1000, settings.lease_grace_ms / 1000)
        )
        log.info(
            "control plane serving",
            extra={"event": "control.started", "addr": settings.listen_addr, "port": port, "service": SERVICE_NAME},
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("control plane stopping", extra={"event": "control.stopping"})
        await health.enter_graceful_shutdown()
        reaper.cancel()
        await server.stop(GRACE_S)
    engine.dispose()


def main() -> None:
    settings = load(ControlSettings)
    configure_logging(settings.log_level)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line of our own says the schema is current
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
