"""Assembles the control plane's gRPC server: ControlService, health checking and reflection."""

from __future__ import annotations

from concurrent.futures import Executor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pacer.control.v1 import control_service_pb2 as pb
from pacer.control.v1 import control_service_pb2_grpc as pb_grpc
from pacer_common.clock import Clock
from pacer_control.actions import ControlActions
from pacer_control.api import ControlApi
from pacer_control.auth import Authenticator
from pacer_control.repository import Repository

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ControlService"].full_name


def build_server(
    repository: Repository, clock: Clock, pool: Executor, min_interval_ms: int, listen_addr: str
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A started-ready server bound to `listen_addr`; returns it with its port and health servicer."""
    server = grpc.aio.server()
    actions = ControlActions(repository, clock, min_interval_ms)
    pb_grpc.add_ControlServiceServicer_to_server(ControlApi(actions, Authenticator(repository), pool), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(listen_addr)
    if port == 0:
        raise OSError(f"cannot listen on {listen_addr}")
    return server, port, health_servicer


async def mark_serving(health_servicer: health.aio.HealthServicer) -> None:
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
