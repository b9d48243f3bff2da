"""grpc.health.v1 end to end: each service's readiness follows the dependency it cannot work without.

Liveness (the `liveness` service) stays SERVING throughout: a missing dependency is no reason to restart a process.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from sqlalchemy.engine import make_url

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.databases import PostgresDatabases, postgres_url, require_postgres
from tests.support.harness import Client, status_of
from tests.support.polling import wait_for
from tests.support.processes import health_status, start_control
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

DISPATCH = "pacer.internal.v1.DispatchService"
CONTROL = "pacer.control.v1.ControlService"
LEASES = "pacer.internal.v1.LeaseService"
# Readiness is re-evaluated every fraction of a second (scheduler, executor) or every 2 s (control's database
# probe); reconnecting after an outage backs off up to 5 s.
FLIP_S = 20


def becomes(addr: str, status: str, service: str = "") -> None:
    wait_for(lambda: health_status(addr, service) == status, FLIP_S, f"{service or 'the server'} at {addr}: {status}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scheduler_is_ready_only_while_the_control_plane_answers(stack: Stack) -> None:
    addr = stack.schedulers["scheduler"][1]
    becomes(addr, "SERVING")

    stack.stop_control()
    becomes(addr, "NOT_SERVING")
    assert health_status(addr, DISPATCH) == "NOT_SERVING"
    assert health_status(addr, "liveness") == "SERVING"

    stack.start_control_again()
    becomes(addr, "SERVING")
    assert health_status(addr, DISPATCH) == "SERVING"
    logs = stack.log_texts()["scheduler.log"]
    assert '"event": "health.not_ready"' in logs
    assert logs.count('"event": "health.ready"') == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_executor_is_ready_only_while_a_scheduler_stream_is_open(stack: Stack) -> None:
    addr = stack.health_addrs["executor"]
    becomes(addr, "SERVING")

    scheduler = stack.schedulers["scheduler"][0].process
    os.kill(scheduler.pid, signal.SIGKILL)
    scheduler.wait()
    becomes(addr, "NOT_SERVING")
    assert health_status(addr, "liveness") == "SERVING"

    stack.restart_scheduler()
    becomes(addr, "SERVING")
    assert health_status(addr, "liveness") == "SERVING"


def admin(statement: str) -> None:
    conninfo = make_url(postgres_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(statement.encode())


def cut_off(database: str) -> None:
    """Refuse new connections to `database` and end the open ones.

    ALLOW_CONNECTIONS rather than REVOKE CONNECT: the test server's role is usually a superuser, which a revoked
    privilege would not stop; to the control plane both look the same (its connections die, new ones are refused).
    """
    admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
    admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")


def restore(database: str) -> None:
    admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')


@pytest.fixture
def postgres_url_for_test(postgres_databases: PostgresDatabases | None) -> Iterator[str]:
    databases = require_postgres(postgres_databases)
    url = databases.create(migrated=False)
    yield url
    restore(str(make_url(url).database))
    databases.drop(url)


def test_the_control_plane_is_ready_only_while_its_database_answers(tmp_path: Path, postgres_url_for_test: str) -> None:
    database = str(make_url(postgres_url_for_test).database)
    control, addr = start_control(tmp_path, postgres_url_for_test)
    key = (tmp_path / "var" / "dev-api-key").read_text().strip()
    try:
        with grpc.insecure_channel(addr) as channel:
            client = Client(channel, key)
            becomes(addr, "SERVING")
            cut_off(database)
            for service in ("", CONTROL, LEASES):
                becomes(addr, "NOT_SERVING", service)
            assert health_status(addr, "liveness") == "SERVING"
            with pytest.raises(grpc.RpcError) as refused:
                client.ListJobs(pb.ListJobsRequest())
            assert status_of(refused.value) == grpc.StatusCode.UNAVAILABLE

            restore(database)
            becomes(addr, "SERVING")
            assert health_status(addr, CONTROL) == "SERVING"
            assert list(client.ListJobs(pb.ListJobsRequest()).jobs) == []
    finally:
        assert control.stop() == 0, control.logs()
    assert '"event": "health.not_ready"' in control.logs()
