"""Session-wide test setup: the PostgreSQL server the integration and e2e tiers share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databases import PostgresDatabases, postgres_problem
from tests.support.environment import in_ci


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    """Template-based PostgreSQL databases; None (tests skip) when unreachable, an error under CI=true."""
    problem = postgres_problem()
    if problem is not None:
        if in_ci():
            pytest.fail(f"{problem}; PostgreSQL tests must run in CI", pytrace=False)
        yield None
        return
    databases = PostgresDatabases()
    yield databases
    databases.close()
