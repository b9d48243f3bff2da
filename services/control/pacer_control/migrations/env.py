"""Alembic environment: runs migrations on the engine the caller passes in `config.attributes`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine

from pacer_control.models import Base


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


given = context.config.attributes.get("connection")
engine = context.config.attributes.get("engine")
if isinstance(given, Connection):
    run(given)  # the caller's connection, which holds the migration lock
elif isinstance(engine, Engine):
    with engine.connect() as connection:
        run(connection)
else:
    raise RuntimeError("run migrations through pacer_control.database.migrate (or `pacer-admin migrate`)")
