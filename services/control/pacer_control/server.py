"""Assembles the control plane's gRPC server: ControlService, health checking and reflection."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pacer.control.v1 import control_service_pb2 as pb
from pacer.control.v1 import control_service_pb2_grpc as pb_grpc
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer.internal.v1 import lease_service_pb2_grpc as lease_grpc
from pacer_common.clock import Clock
from pacer_control.actions import ControlActions
from pacer_control.api import ControlApi
from pacer_control.auth import Authenticator, ServiceAuthenticator
from pacer_control.leases import LeaseApi
from pacer_control.quotas import Quota, QuotaGuard
from pacer_control.repository import Repository

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ControlService"].full_name
LEASE_SERVICE_NAME = lease_pb.DESCRIPTOR.services_by_name["LeaseService"].full_name


@dataclass(frozen=True)
class ServerOptions:
    """What the server needs beyond the repository, clock and database pool."""

    listen_addr: str
    min_interval_ms: int
    service_token: str
    lease_grace_ms: int
    quota_defaults: Quota = field(default_factory=Quota)


def build_server(
    repository: Repository, clock: Clock, pool: Executor, options: ServerOptions
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A server bound to `options.listen_addr`, ready to start; returns it with its port and health servicer."""
    server = grpc.aio.server()
    quotas = QuotaGuard(repository, options.quota_defaults, clock)
    actions = ControlActions(repository, clock, options.min_interval_ms, quotas)
    pb_grpc.add_ControlServiceServicer_to_server(ControlApi(actions, Authenticator(repository), quotas, pool), server)
    leases = LeaseApi(repository, clock, ServiceAuthenticator(options.service_token), pool, options.lease_grace_ms)
    lease_grpc.add_LeaseServiceServicer_to_server(leases, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (SERVICE_NAME, LEASE_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(options.listen_addr)
    if port == 0:
        raise OSError(f"cannot listen on {options.listen_addr}")
    return server, port, health_servicer


async def mark_serving(health_servicer: health.aio.HealthServicer) -> None:
    for name in ("", SERVICE_NAME, LEASE_SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
