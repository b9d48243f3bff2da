"""Assembles the scheduler's gRPC server: DispatchService for executors, health checking and reflection."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from pacer.internal.v1 import dispatch_service_pb2 as dispatch_pb
from pacer.internal.v1 import dispatch_service_pb2_grpc as dispatch_grpc
from pacer_common.health import Readiness
from pacer_common.ports import grpc_server
from pacer_common.reflection import enable_reflection
from pacer_common.tls import add_port
from pacer_scheduler.stream import DispatchApi

SERVICE_NAME = dispatch_pb.DESCRIPTOR.services_by_name["DispatchService"].full_name
# Executor streams live for hours: ping them to notice a vanished executor (and re-dispatch its unstarted work)
# within ~30 s, and let executors ping us as often as every 10 s without being cut off.
SERVER_OPTIONS = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 250),  # executors ping every 500 ms (see their main.py)
    ("grpc.http2.max_ping_strikes", 0),
)


def build_server(
    api: DispatchApi,
    listen_addr: str,
    *,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A server bound to `listen_addr`, ready to start; returns it with its port and health servicer.

    With `credentials` the port speaks TLS (mutual TLS when they require executors' client certificates). A port
    that cannot be had is a `pacer_common.ports.ListenError` naming PACER_SCHEDULER_ADDR.
    """
    server = grpc_server(options=SERVER_OPTIONS, interceptors=interceptors)
    dispatch_grpc.add_DispatchServiceServicer_to_server(api, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, (SERVICE_NAME, health.SERVICE_NAME))
    port = add_port(server, listen_addr, credentials, setting="PACER_SCHEDULER_ADDR")
    return server, port, health_servicer


def readiness(health_servicer: health.aio.HealthServicer) -> Readiness:
    """Readiness of the server and of DispatchService: executors get work only while claims succeed."""
    return Readiness(health_servicer, (SERVICE_NAME,), dependency="control plane")
