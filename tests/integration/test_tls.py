"""TLS and mutual TLS on the real servers: the control plane's public API and the scheduler's DispatchService.

Certificates come from a throwaway PKI made for the test module. Everything runs in the test's event loop: the
control plane's grpc.aio server on a fresh SQLite database, a `Scheduler` and an executor as their composition
roots build them from settings, and plain grpc.aio clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pacer.control.v1 import control_service_pb2 as pb
from pacer.control.v1 import control_service_pb2_grpc as pb_grpc
from pacer.internal.v1 import dispatch_service_pb2 as dispatch_pb
from pacer.internal.v1 import dispatch_service_pb2_grpc as dispatch_grpc
from pacer_common.clock import SystemClock
from pacer_common.credentials import bearer
from pacer_common.settings import ClientTls, Operations, ServerTls
from pacer_common.tls import TlsError, channel_credentials, client_tls_credentials, open_channel, server_credentials
from pacer_control.auth import issue_key
from pacer_control.catalog import Catalog
from pacer_control.database import make_engine
from pacer_control.pipeline import Pipeline
from pacer_control.sealing import Keyring, generate_key
from pacer_control.server import ServerOptions, build_server
from pacer_control.tenancy import create_tenant
from pacer_executor.egress import EgressPolicy
from pacer_executor.main import serve as serve_executor
from pacer_executor.settings import ExecutorSettings
from pacer_scheduler.main import Scheduler
from pacer_scheduler.settings import SchedulerSettings
from tests.support import polling
from tests.support.certs import Identity, Pki, make_pki
from tests.support.databases import SqliteDatabases

pytestmark = pytest.mark.timeout(60)

TOKEN = "svc_tls-test-service-token"
OK = grpc.StatusCode.OK
REFUSED = grpc.StatusCode.UNAVAILABLE  # a failed handshake: the call never reaches the service


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(Path(tmp_path_factory.mktemp("pki")))


def trusting(ca: Identity, client: Identity | None = None) -> grpc.ChannelCredentials | None:
    """Client credentials trusting `ca`, presenting `client` when given."""
    if client is None:
        return channel_credentials(ca.cert_file)
    return channel_credentials(ca.cert_file, client.cert_file, client.key_file)


eventually = functools.partial(polling.eventually, timeout_s=15.0, poll_s=0.02)


class ControlPlane:
    """The real control plane server on a fresh SQLite database, with one tenant and its API key."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        keyring = Keyring([generate_key()])
        catalog = Catalog(self.engine, keyring)
        now = SystemClock().now()
        self.key = issue_key(catalog, create_tenant(catalog, "acme", now), "tls tests", now).secret
        self._catalog = catalog
        self._pipeline = Pipeline(self.engine, keyring)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._server: grpc.aio.Server | None = None

    async def start(self, credentials: grpc.ServerCredentials | None) -> str:
        """Serve on a free port with `credentials`; returns the address (127.0.0.1, which the certificate names)."""
        options = ServerOptions("127.0.0.1:0", 1000, TOKEN, 30_000)
        self._server, port, _ = build_server(
            self._catalog, self._pipeline, SystemClock(), self._pool, options, credentials=credentials
        )
        await self._server.start()
        return f"127.0.0.1:{port}"

    async def create_job(self, addr: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
        """The status of a CreateJob call made over a channel with `credentials` (None: plaintext)."""
        async with open_channel(addr, credentials) as channel:
            try:
                request = pb.CreateJobRequest(name="over tls")
                await pb_grpc.ControlServiceStub(channel).CreateJob(request, metadata=bearer(self.key), timeout=10)
            except grpc.aio.AioRpcError as error:
                return error.code()
        return OK

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
        self._pool.shutdown()
        self.engine.dispose()


@pytest_asyncio.fixture
async def control(sqlite_databases: SqliteDatabases) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(sqlite_databases.create())
    yield plane
    await plane.close()


@pytest.mark.asyncio
async def test_the_public_api_over_tls_answers_only_clients_that_trust_its_ca(control: ControlPlane, pki: Pki) -> None:
    addr = await control.start(server_credentials(pki.server.cert_file, pki.server.key_file))

    assert await control.create_job(addr, None) == REFUSED  # plaintext
    assert await control.create_job(addr, trusting(pki.rogue_ca)) == REFUSED  # the server's certificate is unknown
    assert await control.create_job(addr, trusting(pki.ca)) == OK
    assert await control.create_job(addr, trusting(pki.ca, pki.client)) == OK  # a client certificate is not needed


@pytest.mark.asyncio
async def test_mutual_tls_on_the_control_plane_requires_a_client_certificate_from_its_ca(
    control: ControlPlane, pki: Pki
) -> None:
    credentials = server_credentials(pki.server.cert_file, pki.server.key_file, pki.ca.cert_file)
    addr = await control.start(credentials)

    assert await control.create_job(addr, trusting(pki.ca)) == REFUSED  # no client certificate
    assert await control.create_job(addr, trusting(pki.ca, pki.rogue_client)) == REFUSED  # signed by another CA
    assert await control.create_job(addr, trusting(pki.ca, pki.client)) == OK


def scheduler_settings(control_addr: str, pki: Pki, *, client: Identity | None) -> SchedulerSettings:
    """A scheduler serving executors over mutual TLS and claiming over TLS (presenting `client`, if given)."""
    return SchedulerSettings(
        scheduler_addr="127.0.0.1:0",
        control_addr=control_addr,
        service_token=TOKEN,
        scheduler_id="tls-scheduler",
        drain_timeout_ms=0,
        tls=ServerTls(pki.server.cert_file, pki.server.key_file, pki.ca.cert_file),
        control_tls=ClientTls(pki.ca.cert_file, client.cert_file if client else "", client.key_file if client else ""),
    )


@contextlib.asynccontextmanager
async def running(settings: SchedulerSettings) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(settings, TOKEN, SystemClock())
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.drain_and_stop()


async def stream_status(addr: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """How a DispatchService stream that says Hello ends when the scheduler does not let the client in."""
    async with open_channel(addr, credentials) as channel:
        call = dispatch_grpc.DispatchServiceStub(channel).Connect(metadata=bearer(TOKEN), timeout=10)
        hello = dispatch_pb.ConnectRequest(hello=dispatch_pb.Hello(executor_id="intruder", capacity=1))
        with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
            await call.write(hello)
        return await call.code()  # type: ignore[no-any-return]


async def liveness(addr: str, credentials: grpc.ChannelCredentials | None) -> int:
    async with open_channel(addr, credentials) as channel:
        request = health_pb2.HealthCheckRequest(service="liveness")
        return int((await health_pb2_grpc.HealthStub(channel).Check(request, timeout=10)).status)


def executor_settings(scheduler_addr: str, pki: Pki) -> ExecutorSettings:
    return ExecutorSettings(
        scheduler_addrs=scheduler_addr,
        executor_id="tls-executor",
        capacity=1,
        service_token=TOKEN,
        drain_timeout_ms=1000,
        operations=Operations(metrics_addr="", health_addr=""),
        tls=ClientTls(pki.ca.cert_file, pki.client.cert_file, pki.client.key_file),
    )


@pytest.mark.asyncio
async def test_the_scheduler_admits_only_executors_with_a_certificate_and_claims_over_mutual_tls(
    control: ControlPlane, pki: Pki
) -> None:
    control_addr = await control.start(server_credentials(pki.server.cert_file, pki.server.key_file, pki.ca.cert_file))
    async with running(scheduler_settings(control_addr, pki, client=pki.client)) as scheduler:
        await eventually(lambda: scheduler.claims.reachable is True, "claims over mutual TLS")
        addr = f"127.0.0.1:{scheduler.port}"

        assert await stream_status(addr, None) == REFUSED
        assert await stream_status(addr, trusting(pki.ca)) == REFUSED
        assert await stream_status(addr, trusting(pki.ca, pki.rogue_client)) == REFUSED
        assert scheduler.dispatcher.executors == 0
        assert await liveness(addr, trusting(pki.ca, pki.client)) == health_pb2.HealthCheckResponse.SERVING

        stop = asyncio.Event()
        settings = executor_settings(addr, pki)
        executor = asyncio.create_task(serve_executor(settings, EgressPolicy(), bearer(TOKEN), stop))
        await eventually(lambda: scheduler.dispatcher.executors == 1, "the executor's stream over mutual TLS")
        stop.set()
        await asyncio.wait_for(executor, 15)


@pytest.mark.asyncio
async def test_a_scheduler_without_a_client_certificate_cannot_claim(control: ControlPlane, pki: Pki) -> None:
    control_addr = await control.start(server_credentials(pki.server.cert_file, pki.server.key_file, pki.ca.cert_file))
    async with running(scheduler_settings(control_addr, pki, client=None)) as scheduler:
        # The session is opened before any claim: its Heartbeat is the call refused at the handshake.
        await eventually(lambda: scheduler.session.reachable is False, "the session refused at the handshake")
        assert scheduler.session.valid() is False
        assert scheduler.claims.claimed == 0
        assert scheduler.readiness.ready is False


def test_tls_settings_are_all_or_nothing(pki: Pki, tmp_path: Path) -> None:
    assert server_credentials("", "") is None
    assert channel_credentials("") is None
    with pytest.raises(TlsError, match="PACER_TLS_KEY_FILE"):
        server_credentials(pki.server.cert_file, "")
    with pytest.raises(TlsError, match="PACER_TLS_CLIENT_CA_FILE needs"):
        server_credentials("", "", pki.ca.cert_file)
    with pytest.raises(TlsError, match="PACER_TLS_CLIENT_KEY_FILE"):
        channel_credentials(pki.ca.cert_file, pki.client.cert_file, "")
    missing = tmp_path / "missing.pem"
    with pytest.raises(TlsError, match=f"PACER_TLS_CA_FILE={missing}: cannot read it"):
        channel_credentials(str(missing))


@pytest.mark.asyncio
async def test_front_doors_reach_a_tls_control_plane_with_the_tls_variables(control: ControlPlane, pki: Pki) -> None:
    from pacer_common.client import ApiError, AsyncControlClient
    from pacer_gateway.settings import load_settings

    addr = await control.start(server_credentials(pki.server.cert_file, pki.server.key_file))
    plain = AsyncControlClient(addr, client_tls_credentials(load_settings({}).tls))
    with pytest.raises(ApiError) as refused:
        await plain.call("ListJobs", pb.ListJobsRequest(), control.key)
    assert refused.value.code == "UNAVAILABLE"
    await plain.close()
    settings = load_settings({"PACER_TLS_CA_FILE": pki.ca.cert_file})
    secured = AsyncControlClient(addr, client_tls_credentials(settings.tls))
    assert (await secured.call("ListJobs", pb.ListJobsRequest(), control.key)).jobs == []
    await secured.close()


@pytest.mark.asyncio
async def test_an_internal_port_gives_mutual_tls_to_internal_traffic_and_server_tls_to_the_public_api(
    control: ControlPlane, pki: Pki
) -> None:
    from pacer.internal.v1 import lease_service_pb2 as lease_pb
    from pacer.internal.v1 import lease_service_pb2_grpc as lease_grpc
    from tests.support.processes import free_port

    internal_addr = f"127.0.0.1:{free_port()}"
    mutual = server_credentials(pki.server.cert_file, pki.server.key_file, pki.ca.cert_file)
    options = ServerOptions("127.0.0.1:0", 1000, TOKEN, 30_000, internal_needs_client_cert=True)
    control._server, port, _ = build_server(
        control._catalog,
        control._pipeline,
        SystemClock(),
        control._pool,
        options,
        credentials=server_credentials(pki.server.cert_file, pki.server.key_file),
        internal_port=(internal_addr, mutual),
    )
    await control._server.start()
    public_addr = f"127.0.0.1:{port}"

    async def claim(addr: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
        async with open_channel(addr, credentials) as channel:
            try:
                # An internal RPC: a scheduler's heartbeat.
                request = lease_pb.HeartbeatRequest(scheduler_id="tls", session_id="ss_tls")
                await lease_grpc.LeaseServiceStub(channel).Heartbeat(request, metadata=bearer(TOKEN), timeout=10)
            except grpc.aio.AioRpcError as error:
                return error.code()
        return OK

    assert await control.create_job(public_addr, trusting(pki.ca)) == OK  # public API: no client certificate
    assert await claim(public_addr, trusting(pki.ca)) == grpc.StatusCode.PERMISSION_DENIED
    assert await claim(internal_addr, trusting(pki.ca)) == REFUSED  # the internal port demands a certificate
    assert await claim(internal_addr, trusting(pki.ca, pki.client)) == OK
