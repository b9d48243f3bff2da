"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from pacer_control.database import alembic_config, make_engine, migrate
from pacer_control.models import Base
from tests.support.databases import require_postgres

NOW = "'2026-01-05 10:00:00'"


def test_migrated_schema_equals_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)  # already at head: a no-op that must not fail
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_migrations_create_every_table_and_the_claim_index(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        inspector = inspect(engine)
        assert set(Base.metadata.tables) <= set(inspector.get_table_names())
        assert "ix_endpoints_due" in {index["name"] for index in inspector.get_indexes("endpoints")}
    finally:
        engine.dispose()


def test_concurrent_migrations_on_postgresql_wait_for_each_other(postgres_databases) -> None:
    """Control replicas and the migration Job may start together on one database: every one of them succeeds."""
    databases = require_postgres(postgres_databases)
    url = databases.create(migrated=False)
    engines = [make_engine(url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(migrate, engines))
        assert "ix_endpoints_due" in {index["name"] for index in inspect(engines[0]).get_indexes("endpoints")}
    finally:
        for engine in engines:
            engine.dispose()
        databases.drop(url)


def test_run_retention_migration_keeps_existing_quotas_on_the_default(database_url: str) -> None:
    """0006 adds `tenant_quotas.run_retention_days` (NULL: the service default) to rows made before it, and goes
    back down cleanly."""
    engine = make_engine(database_url)
    try:
        command.downgrade(alembic_config(engine), "0005")
        assert "run_retention_days" not in {c["name"] for c in inspect(engine).get_columns("tenant_quotas")}
        with engine.begin() as connection:
            connection.execute(text(f"INSERT INTO tenants (id, name, created_at) VALUES ('tn_old', 'old', {NOW})"))
            connection.execute(
                text(f"INSERT INTO tenant_quotas (tenant_id, max_jobs, updated_at) VALUES ('tn_old', 3, {NOW})")
            )
        migrate(engine)
        with engine.connect() as connection:
            row = connection.execute(text("SELECT max_jobs, run_retention_days FROM tenant_quotas")).one()
        assert tuple(row) == (3, None)
    finally:
        engine.dispose()
