"""Assembles the control plane's gRPC server: ControlService, LeaseService, health checking and reflection."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from pacer.control.v1 import control_service_pb2 as pb
from pacer.control.v1 import control_service_pb2_grpc as pb_grpc
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer.internal.v1 import lease_service_pb2_grpc as lease_grpc
from pacer_common.clock import Clock
from pacer_common.credentials import ServiceGate
from pacer_common.guard import StatusGuard
from pacer_common.health import Readiness
from pacer_common.ports import grpc_server
from pacer_common.reflection import enable_reflection
from pacer_common.telemetry import ServerMetricsInterceptor
from pacer_common.tls import add_port
from pacer_control.actions import ControlActions
from pacer_control.api import ControlApi
from pacer_control.auth import Authenticator
from pacer_control.catalog import Catalog
from pacer_control.conditions import RuleChecker
from pacer_control.firings import PolicyBook
from pacer_control.lease_api import LeaseApi
from pacer_control.metrics import ControlMetrics
from pacer_control.pipeline import Pipeline
from pacer_control.policies import PolicyEngine
from pacer_control.quotas import Quota, QuotaGuard
from pacer_control.sandbox import Sandbox

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ControlService"].full_name
LEASE_SERVICE_NAME = lease_pb.DESCRIPTOR.services_by_name["LeaseService"].full_name


@dataclass(frozen=True)
class ServerOptions:
    """What the server needs beyond the stores, clock and database pool."""

    listen_addr: str
    min_interval_ms: int
    service_token: str
    lease_grace_ms: int
    quota_defaults: Quota = field(default_factory=Quota)
    # Internal RPCs must carry a verified client certificate (they then only work on the mutual-TLS port).
    internal_needs_client_cert: bool = False
    # How long a scheduler session lives without a heartbeat.
    session_ttl_ms: int = 3000
    # How long one evaluation of an endpoint rule's condition may take before it is stopped.
    condition_deadline_ms: int = 250


def build_server(
    catalog: Catalog,
    pipeline: Pipeline,
    clock: Clock,
    pool: Executor,
    options: ServerOptions,
    *,
    metrics: ControlMetrics | None = None,
    credentials: grpc.ServerCredentials | None = None,
    internal_port: tuple[str, grpc.ServerCredentials | None] | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A server bound to `options.listen_addr`, ready to start; returns it with its port and health servicer.

    Every RPC is measured in `metrics` (a private registry when None). With `credentials` the port speaks TLS
    (mutual TLS when they require client certificates), else plaintext. `internal_port` (address, credentials)
    adds a second port, meant for schedulers: with `options.internal_needs_client_cert` internal RPCs are only
    answered when the caller presented a client certificate, which only a mutual-TLS port asks for. A port that
    cannot be had is a `pacer_common.ports.ListenError` naming PACER_LISTEN_ADDR or PACER_INTERNAL_ADDR.
    """
    metrics = metrics or ControlMetrics(CollectorRegistry())
    quotas = QuotaGuard(catalog, options.quota_defaults, clock)
    rules = RuleChecker(options.min_interval_ms, Sandbox(options.condition_deadline_ms))
    actions = ControlActions(catalog, clock, options.min_interval_ms, quotas, rules)
    engine = PolicyEngine(
        PolicyBook(pipeline.engine, pipeline.keyring), actions, Sandbox(options.condition_deadline_ms), metrics
    )
    pipeline.on_recorded(engine.submit)
    api = ControlApi(actions, Authenticator(catalog), quotas, pool)
    auth = ServiceGate(options.service_token)
    leases = LeaseApi(
        pipeline,
        clock,
        auth,
        pool,
        options.lease_grace_ms,
        metrics,
        options.internal_needs_client_cert,
        options.session_ttl_ms,
    )
    guard = StatusGuard(
        unavailable=(SQLAlchemyError,),
        authenticators={SERVICE_NAME: api.authenticate, LEASE_SERVICE_NAME: leases.authenticate},
    )
    server = grpc_server(interceptors=[ServerMetricsInterceptor(metrics.grpc_server)], guard=guard)
    pb_grpc.add_ControlServiceServicer_to_server(api, server)
    lease_grpc.add_LeaseServiceServicer_to_server(leases, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # Reflection lists LeaseService only where it can be called: to every caller, unless the internal port's client
    # certificate is required for it (then only to callers that presented one).
    enable_reflection(
        server,
        (SERVICE_NAME, health.SERVICE_NAME),
        (LEASE_SERVICE_NAME,),
        internal_needs_client_cert=options.internal_needs_client_cert,
    )
    port = add_port(server, options.listen_addr, credentials, setting="PACER_LISTEN_ADDR")
    if internal_port is not None:
        add_port(server, *internal_port, setting="PACER_INTERNAL_ADDR")
    return server, port, health_servicer


def readiness(health_servicer: health.aio.HealthServicer) -> Readiness:
    """Readiness of the server and of both APIs, which all need the database."""
    return Readiness(health_servicer, (SERVICE_NAME, LEASE_SERVICE_NAME), dependency="database")
