"""Scenario tests run on the real control service over a fresh database of each backend."""

from tests.integration.conftest import database_url, harness, sqlite_databases

__all__ = ["database_url", "harness", "sqlite_databases"]
