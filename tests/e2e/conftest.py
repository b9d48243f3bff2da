"""Fixtures for end-to-end tests: a fresh database per test on each backend, services as processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import PostgresDatabases, require_postgres
from tests.support.stack import Stack
from tests.support.target import HttpTarget


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases | None
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pacer.db'}"
        return
    databases = require_postgres(postgres_databases)
    url = databases.create(migrated=False)  # the service migrates it, as in production
    yield url
    databases.drop(url)


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    running = HttpTarget().start()
    yield running
    running.stop()


@pytest.fixture
def stack(tmp_path: Path, database_url: str, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Control, one scheduler and one executor (loopback allowed), on a fresh database."""
    running = Stack(tmp_path, database_url)
    running.add_scheduler()
    running.add_executor()
    yield running
    running.close()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(running.logs()[-20_000:])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
