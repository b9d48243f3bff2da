"""Engines for the two supported backends and the Alembic migration entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from pacer_control.sealing import Keyring

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine for `url`; SQLite files get WAL and a busy timeout, their folder is created.

    Statement parameters are left out of error messages: they hold endpoint headers (credentials of the targets)
    and key hashes, and database errors get logged.
    """
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True)


MIGRATION_LOCK = 0x70616365  # "pace": the advisory lock that serializes migrations on PostgreSQL


def alembic_config(
    engine: Engine | None = None, connection: Connection | None = None, keyring: Keyring | None = None
) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    config.attributes["connection"] = connection
    config.attributes["keyring"] = keyring
    return config


def migrate(engine: Engine, revision: str = "head", keyring: Keyring | None = None) -> None:
    """Bring the schema up to `revision`; `keyring` seals endpoint secrets that a migration moves.

    On PostgreSQL the migration holds an advisory lock, so control replicas starting together and the migration
    Job never migrate at the same time: the later ones wait, then find the schema current.
    """
    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(engine, keyring=keyring), revision)
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        connection.commit()
        try:
            command.upgrade(alembic_config(engine, connection, keyring), revision)
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
