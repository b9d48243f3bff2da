"""Real databases for tests: a migrated template per backend, and a fresh copy of it per test."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from pacer_control.database import make_engine, migrate
from tests.support.environment import variable

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_url() -> str:
    """Where the PostgreSQL tests connect: PACER_TEST_DATABASE_URL, else the local server."""
    return variable("PACER_TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        with psycopg.connect(_libpq(postgres_url()), connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL at {postgres_url()} is not reachable: {error}"


def require_postgres(databases: PostgresDatabases | None) -> PostgresDatabases:
    """The session's PostgreSQL databases; skips the test when none answers, which only happens outside CI (under
    CI=true the `postgres_databases` fixture fails the run first)."""
    if databases is None:
        pytest.skip("PostgreSQL is not reachable (set PACER_TEST_DATABASE_URL, or CI=true to make this an error)")
    return databases


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresDatabases:
    """Creates `CREATE DATABASE … TEMPLATE` copies of one migrated template database."""

    def __init__(self) -> None:
        self._admin = _libpq(postgres_url())
        self._prefix = f"pacer_test_{os.getpid()}"
        self._template = f"{self._prefix}_template"
        self._counter = itertools.count()
        self._execute(f'DROP DATABASE IF EXISTS "{self._template}"')
        self._execute(f'CREATE DATABASE "{self._template}"')
        engine = make_engine(self.url_of(self._template))
        migrate(engine)
        engine.dispose()

    def _execute(self, statement: str) -> None:
        with psycopg.connect(self._admin, autocommit=True) as connection:
            connection.execute(statement.encode())

    def url_of(self, name: str) -> str:
        return make_url(postgres_url()).set(database=name).render_as_string(hide_password=False)

    def create(self, *, migrated: bool = True) -> str:
        """A new database: a copy of the migrated template, or an empty one when `migrated` is False."""
        name = f"{self._prefix}_{next(self._counter)}"
        template = self._template if migrated else "template0"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url_of(name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self._template}" WITH (FORCE)')


class SqliteDatabases:
    """Copies of one migrated template SQLite file."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._template = folder / "template.db"
        self._counter = itertools.count()
        engine = make_engine(f"sqlite:///{self._template}")
        migrate(engine)
        engine.dispose()

    def create(self) -> str:
        path = self._folder / f"test-{next(self._counter)}.db"
        shutil.copyfile(self._template, path)
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
