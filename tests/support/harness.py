"""A real control plane in-process for tests: a migrated database, a grpc.aio server on a thread, a fake clock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from pacer.control.v1 import control_service_pb2_grpc
from pacer_common.clock import FakeClock
from pacer_common.retries import Attempt
from pacer_control.auth import issue_key
from pacer_control.catalog import Catalog
from pacer_control.database import make_engine
from pacer_control.metrics import ControlMetrics
from pacer_control.models import Endpoint
from pacer_control.pipeline import Pipeline, RunResult
from pacer_control.quotas import Quota
from pacer_control.sealing import Keyring, generate_key
from pacer_control.server import ServerOptions, build_server
from pacer_control.tenancy import create_tenant

MIN_INTERVAL_MS = 1000
LEASE_GRACE_MS = 30_000
SERVICE_TOKEN = "svc_test-service-token"
# The fake clock stands still, so a rate limit would never refill: tests that are not about quotas get none.
UNLIMITED = Quota(rate_per_s=1e9, burst=10**9)


def ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def dt(stamp: Timestamp) -> datetime | None:
    """The aware datetime in a Timestamp; None when it is the unset (zero) value."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def status_of(error: grpc.RpcError) -> grpc.StatusCode:
    return error.code()  # type: ignore[attr-defined, no-any-return]


def violations(error: grpc.RpcError) -> dict[str, str]:
    """Field path -> description, from the call's google.rpc.BadRequest detail."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: dict[str, str] = {}
    for detail in status.details if status else []:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            for violation in bad.field_violations:
                found.setdefault(violation.field, violation.description)
    return found


class Client:
    """A ControlService client that sends one tenant's key with every call."""

    def __init__(self, channel: grpc.Channel, key: str | None) -> None:
        self._stub = control_service_pb2_grpc.ControlServiceStub(channel)
        self.key = key
        self._metadata = [("authorization", f"Bearer {key}")] if key is not None else []

    def __getattr__(self, rpc: str) -> Callable[[Any], Any]:
        method = getattr(self._stub, rpc)

        def call(request: Any) -> Any:
            return method(request, metadata=self._metadata, timeout=30)

        return call


class _ServerThread:
    """Runs the grpc.aio server on its own event loop in a daemon thread."""

    def __init__(
        self,
        catalog: Catalog,
        pipeline: Pipeline,
        clock: FakeClock,
        workers: int,
        quotas: Quota,
        metrics: ControlMetrics,
    ) -> None:
        self._quotas = quotas
        self._metrics = metrics
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db")
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server, self.port, _ = self._call(self._build(catalog, pipeline, clock))
        self._call(self._server.start())

    async def _build(self, catalog: Catalog, pipeline: Pipeline, clock: FakeClock) -> Any:
        options = ServerOptions("127.0.0.1:0", MIN_INTERVAL_MS, SERVICE_TOKEN, LEASE_GRACE_MS, self._quotas)
        return build_server(catalog, pipeline, clock, self._pool, options, metrics=self._metrics)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def stop(self) -> None:
        self._call(self._server.stop(None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._pool.shutdown()


class Harness:
    """The control plane on a fresh database, with tenants `acme` (a) and `globex` (b)."""

    def __init__(self, database_url: str, backend: str, quotas: Quota = UNLIMITED) -> None:
        self.backend = backend
        self.clock = FakeClock()
        self.engine = make_engine(database_url)
        keyring = Keyring([generate_key()])
        self.catalog = Catalog(self.engine, keyring)
        self.pipeline = Pipeline(self.engine, keyring)
        now = self.clock.now()
        self.tenants = {name: create_tenant(self.catalog, name, now) for name in ("acme", "globex")}
        keys = {name: issue_key(self.catalog, tid, "tests", now).secret for name, tid in self.tenants.items()}
        # The server's metrics: `registry.get_sample_value(...)` reads them.
        self.registry = CollectorRegistry()
        metrics = ControlMetrics(self.registry)
        self._server = _ServerThread(
            self.catalog, self.pipeline, self.clock, 1 if backend == "sqlite" else 4, quotas, metrics
        )
        self.address = f"127.0.0.1:{self._server.port}"
        self._channel = grpc.insecure_channel(self.address)
        self.a = Client(self._channel, keys["acme"])
        self.b = Client(self._channel, keys["globex"])

    def client(self, key: str | None) -> Client:
        return Client(self._channel, key)

    def fire(
        self,
        endpoint_id: str,
        *,
        status: str = "SUCCESS",
        duration_ms: int = 50,
        http_status: int = 200,
        error_message: str = "",
        response_body: str = "",
        response_truncated: bool = False,
        attempts: tuple[Attempt, ...] = (),
    ) -> str:
        """Run the endpoint's next run through the real claim and result paths; returns its run id.

        Moves the clock to the endpoint's next_run_at when that is ahead; other endpoints due then succeed.
        """
        with self.engine.connect() as connection:
            next_run_at = connection.scalar(select(Endpoint.next_run_at).where(Endpoint.id == endpoint_id))
        if next_run_at is None:
            raise AssertionError(f"endpoint {endpoint_id} has no next run")
        next_run_at = next_run_at.replace(tzinfo=UTC) if next_run_at.tzinfo is None else next_run_at
        if next_run_at > self.clock.now():
            self.clock.set(next_run_at)
        claimed = self.pipeline.claim_due(self.clock.now(), 0, 1000, LEASE_GRACE_MS)
        ours = [c for c in claimed if c.endpoint_id == endpoint_id]
        if len(ours) != 1:
            raise AssertionError(f"endpoint {endpoint_id} was not claimable at {self.clock.now()}")
        results = []
        for run in claimed:
            mine = run.endpoint_id == endpoint_id
            started = run.scheduled_for
            results.append(
                RunResult(
                    run_id=run.run_id,
                    status=status if mine else "SUCCESS",
                    started_at=started if not mine or status != "LOST" else None,
                    finished_at=started + timedelta(milliseconds=duration_ms if mine else 10),
                    duration_ms=duration_ms if mine else 10,
                    http_status=http_status if mine else 200,
                    error_message=error_message if mine else "",
                    response_body=response_body if mine else "",
                    response_truncated=response_truncated if mine else False,
                    attempts=attempts if mine else (),
                )
            )
        self.pipeline.record_results(results, self.clock.now())
        return ours[0].run_id

    def audit(self, tenant: str = "acme") -> list[dict[str, Any]]:
        return [
            {"action": r.action, "target_id": r.target_id, "reason": r.reason, "at": r.at}
            for r in self.catalog.audit_trail(self.tenants[tenant])
        ]

    def close(self) -> None:
        self._channel.close()
        self._server.stop()
        self.engine.dispose()
