"""What the control plane's two stores share: the engine, the keyring that opens endpoint secrets, transactions and
the Core tables. `catalog.Catalog` holds the tenants' objects behind the public actions; `pipeline.Pipeline` moves
runs through claims, results, leases and scheduler sessions. The queries of the service live in these three modules
(engines and migrations in `database`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from sqlalchemy import Connection, Engine, Table, bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from pacer_control.models import ApiKey, Endpoint, Job, Run, SchedulerSession, Tenant
from pacer_control.sealing import Keyring

JOB_ACTIVE: Final = "active"
JOB_ARCHIVED: Final = "archived"

ENDPOINTS: Table = Endpoint.__table__  # type: ignore[assignment]
RUNS: Table = Run.__table__  # type: ignore[assignment]
SESSIONS: Table = SchedulerSession.__table__  # type: ignore[assignment]
JOBS: Table = Job.__table__  # type: ignore[assignment]
API_KEYS: Table = ApiKey.__table__  # type: ignore[assignment]
TENANTS: Table = Tenant.__table__  # type: ignore[assignment]


class Store:
    """One database and the keyring of its endpoint secrets; every public method of a store is one transaction."""

    def __init__(self, engine: Engine, keyring: Keyring) -> None:
        """`keyring` opens endpoint secrets for claims (and the actions seal them with it)."""
        self._engine = engine
        self._keyring = keyring
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        # Row locks in the stores are FOR NO KEY UPDATE (key_share=True) on PostgreSQL: no update changes a key, and
        # a plain FOR UPDATE would conflict with the KEY SHARE locks that inserting a child row (a run, an endpoint)
        # takes on its parents, deadlocking claims against endpoint creation.
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for reads that need no transaction (one statement, or statements that need not agree): in
        autocommit, which spares the BEGIN and COMMIT round trips on PostgreSQL. The hot reads run prepared Core
        statements on it (`bindparam`, built once): no ORM session, no statement built per call."""
        with self._engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    def ping(self) -> None:
        """One round trip to the database (`SELECT 1`); raises SQLAlchemyError when it cannot be reached."""
        with self._engine.connect() as connection:
            connection.execute(select(1))


def by_id_update(table: Table, columns: Sequence[str]) -> Any:
    """An executemany UPDATE of `columns` by primary key; parameters are named `b_<column>` and `b_id`."""
    return (
        update(table).where(table.c.id == bindparam("b_id")).values({name: bindparam(f"b_{name}") for name in columns})
    )


def by_id_row(row_id: str, values: dict[str, Any]) -> dict[str, Any]:
    """The parameters of one row of a `by_id_update`."""
    return {"b_id": row_id, **{f"b_{name}": value for name, value in values.items()}}
