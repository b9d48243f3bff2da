"""Fixtures for integration tests: every test runs on a fresh SQLite and a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import PostgresDatabases, SqliteDatabases, require_postgres
from tests.support.harness import Harness


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, sqlite_databases: SqliteDatabases, postgres_databases: PostgresDatabases | None
) -> Iterator[str]:
    """A fresh migrated database on each backend."""
    databases = sqlite_databases if request.param == "sqlite" else require_postgres(postgres_databases)
    url = databases.create()
    yield url
    databases.drop(url)


@pytest.fixture
def harness(request: pytest.FixtureRequest, database_url: str) -> Iterator[Harness]:
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    running = Harness(database_url, backend)
    yield running
    running.close()


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> SqliteDatabases:
    return SqliteDatabases(Path(tmp_path_factory.mktemp("sqlite")))
