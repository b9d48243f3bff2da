"""Fixtures for end-to-end tests: a fresh database per test on each backend, services as processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import PostgresDatabases


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases | None
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pacer.db'}"
        return
    if postgres_databases is None:
        pytest.skip("PostgreSQL is not reachable (set PACER_TEST_DATABASE_URL, or CI=true to make this an error)")
    url = postgres_databases.create(migrated=False)  # the service migrates it, as in production
    yield url
    postgres_databases.drop(url)
