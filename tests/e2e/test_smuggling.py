"""Request smuggling between tenants, end to end: a hostile endpoint row must not let one tenant read another's calls.

Tenant A's endpoint carries `Transfer-Encoding: chunked` (written into its row directly, as rows written before the
control plane refused the header still hold it) and a body whose first line ends a chunked message, followed by a
second request. Tenant B's endpoint carries a secret Authorization header. Both call the same lenient keep-alive
target (`tests.support.raw_target`), which echoes in every answer the path, run id and Authorization of the
request it answers. Were the header sent and a connection shared, the target would answer the smuggled request on
A's connection, B's next run there would receive that answer, and A's next run would receive B's (secret included).

One stack and one stretch of runs serve every test of the module; SQLite only.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import Connection, select, update

from pacer.control.v1 import control_service_pb2 as pb
from pacer_control.database import make_engine
from pacer_control.models import Endpoint
from tests.support.harness import Client
from tests.support.polling import wait_for
from tests.support.processes import BIN
from tests.support.raw_target import RawTarget
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

SECRET = "Bearer secret-of-B"
SMUGGLED_PATH = "/SMUGGLED"
SMUGGLING_BODY = f"0\r\n\r\nGET {SMUGGLED_PATH} HTTP/1.1\r\nHost: smuggled.test\r\n\r\n"
RUNS_EACH = 5
# Long enough for the target's answer to a smuggled request to arrive after the client stopped reading.
ANSWER_DELAY_S = 0.1


@dataclass(frozen=True)
class Tenant:
    name: str
    client: Client
    path: str
    endpoint_id: str
    authorization: str = ""  # what the endpoint sends as Authorization

    def answer_for(self, run: pb.Run) -> dict[str, str]:
        """What the target answers this tenant's request of `run` with."""
        return {"path": self.path, "run_id": run.run_id, "authorization": self.authorization}


@dataclass(frozen=True)
class Scenario:
    target: RawTarget
    tenants: tuple[Tenant, Tenant]
    runs: dict[str, list[pb.Run]]  # each tenant's finished runs, by tenant name
    executor_log: str


def store_headers(stack: Stack, endpoint_id: str, headers: Mapping[str, str]) -> None:
    """Write `headers` into the endpoint's row as the control plane stores them, bypassing its validation: the one
    place that knows how headers are kept at rest (a plain JSON column, or sealed with the embedded profile's
    secrets key in `var/` when the row has a `secrets` column instead)."""
    engine = make_engine(stack.database_url)
    try:
        with engine.begin() as connection:
            values = _stored_headers(stack, connection, endpoint_id, headers)
            connection.execute(update(Endpoint).where(Endpoint.id == endpoint_id).values(**values))
    finally:
        engine.dispose()


def _stored_headers(
    stack: Stack, connection: Connection, endpoint_id: str, headers: Mapping[str, str]
) -> dict[str, Any]:
    if not hasattr(Endpoint, "secrets"):
        return {"headers": dict(headers)}
    from pacer_control import sealing  # only where headers are sealed at rest

    keyring = sealing.Keyring(sealing.read_key_file(stack.var / sealing.DEFAULT_KEY_FILE))
    row = connection.execute(select(Endpoint.secrets).where(Endpoint.id == endpoint_id)).scalar_one()
    kept = sealing.EndpointSecrets.open(keyring, endpoint_id, row)
    return {"secrets": sealing.EndpointSecrets(dict(headers), kept.password).seal(keyring, endpoint_id)}


def admin(database_url: str, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "pacer-admin"), "--database-url", database_url, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def second_tenant(stack: Stack, channel: grpc.Channel, name: str) -> Client:
    """A client with the key of a new tenant `name`, made with the admin tooling."""
    admin(stack.database_url, "create-tenant", name)
    return Client(channel, admin(stack.database_url, "create-key", name))


def add_endpoint(client: Client, url: str, interval_ms: int, **fields: object) -> str:
    job_id = client.CreateJob(pb.CreateJobRequest(name="smuggling")).job_id
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name="target", url=url, baseline=pb.Baseline(interval_ms=interval_ms), **fields
    )
    return str(client.AddEndpointToJob(request).endpoint_id)


def finished(tenant: Tenant) -> list[pb.Run]:
    summaries = tenant.client.ListRuns(pb.ListRunsRequest(endpoint_id=tenant.endpoint_id, limit=100)).runs
    done = [summary.run_id for summary in summaries if summary.status != pb.RUN_STATUS_RUNNING]
    return [tenant.client.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run for run_id in done]


def start_a(stack: Stack, target: RawTarget) -> Tenant:
    """Tenant A (the dev tenant): its hostile endpoint, firing every second from the moment its row is ready."""
    endpoint_id = add_endpoint(stack.client, target.url("/a"), 3_600_000, method="POST", body=SMUGGLING_BODY)
    store_headers(stack, endpoint_id, {"Transfer-Encoding": "chunked"})
    hint = pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=1000, ttl_minutes=10, reason="test")
    stack.client.ApplyIntervalHint(hint)
    return Tenant("A", stack.client, "/a", endpoint_id)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    tmp: Path = tmp_path_factory.mktemp("smuggling")
    target = RawTarget(answer_delay_s=ANSWER_DELAY_S).start()
    stack = Stack(tmp, f"sqlite:///{tmp / 'pacer.db'}")
    channel = grpc.insecure_channel(stack.control_addr)
    try:
        stack.add_scheduler()
        stack.add_executor()
        b_client = second_tenant(stack, channel, "globex")
        a = start_a(stack, target)
        # B's runs fall between A's: after A's answer, while its connection waits idle for A's next run.
        wait_for(lambda: finished(a), 15, "A's first run")
        b_endpoint = add_endpoint(b_client, target.url("/b"), 1000, headers={"Authorization": SECRET})
        b = Tenant("B", b_client, "/b", b_endpoint, authorization=SECRET)
        wait_for(lambda: len(finished(a)) >= RUNS_EACH and len(finished(b)) >= RUNS_EACH, 30, "runs of A and B")
        runs = {tenant.name: finished(tenant) for tenant in (a, b)}
    finally:
        stack.close()  # the executor's log is complete once it has exited
        channel.close()
        target.stop()
    return Scenario(target, (a, b), runs, (tmp / "executor.log").read_text())


def answer(run: pb.Run) -> object:
    try:
        return json.loads(run.response_body)
    except ValueError:
        return run.response_body


def test_every_run_stored_the_answer_to_its_own_request(scenario: Scenario) -> None:
    astray = [
        (tenant.name, run.run_id, run.response_body)
        for tenant in scenario.tenants
        for run in scenario.runs[tenant.name]
        if answer(run) != tenant.answer_for(run)
    ]
    assert astray == []
    assert all(run.status == pb.RUN_STATUS_SUCCESS for runs in scenario.runs.values() for run in runs)


def test_no_run_of_a_holds_b_secret_or_the_smuggled_answer(scenario: Scenario) -> None:
    bodies = [run.response_body for run in scenario.runs["A"]]
    assert not [body for body in bodies if "secret-of-B" in body or SMUGGLED_PATH in body]


def test_the_hostile_header_reached_the_executor_which_dropped_it(scenario: Scenario) -> None:
    # Guards the other tests against passing because the header never left the database.
    lines = [json.loads(line) for line in scenario.executor_log.splitlines() if '"run.headers_dropped"' in line]
    assert {run.run_id for run in scenario.runs["A"]} <= {line["run_id"] for line in lines}
    assert {tuple(line["headers"]) for line in lines} == {("transfer-encoding",)}


def test_the_smuggled_request_never_reaches_the_target(scenario: Scenario) -> None:
    paths = {request.path for request in scenario.target.seen()}
    assert paths == {"/a", "/b"}
    assert all(request.body == SMUGGLING_BODY.encode() for request in scenario.target.seen() if request.path == "/a")


def test_the_tenants_never_share_a_connection(scenario: Scenario) -> None:
    connections = {
        tenant.path: {request.connection for request in scenario.target.seen() if request.path == tenant.path}
        for tenant in scenario.tenants
    }
    assert not connections["/a"] & connections["/b"]
