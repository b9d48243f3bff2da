"""Server reflection as grpcurl and Postman use it: v1 (which they ask first) and v1alpha, on a control plane with a
public server-TLS port and an internal mutual-TLS port, where LeaseService is listed only on the internal one, and on
a scheduler connected to that internal port."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as messages
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.support.certs import Pki, make_pki
from tests.support.processes import ServiceProcess, free_addr, start_control, start_service

pytestmark = pytest.mark.e2e

CONTROL = "pacer.control.v1.ControlService"
LEASE = "pacer.internal.v1.LeaseService"
DISPATCH = "pacer.internal.v1.DispatchService"
HEALTH = "grpc.health.v1.Health"
V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


class Ports:
    """The running control plane's two ports and the credentials a public and an internal client use."""

    def __init__(self, public: str, internal: str, scheduler: str, pki: Pki) -> None:
        self.public, self.internal, self.scheduler = public, internal, scheduler
        ca = pki.ca.cert.read_bytes()
        self.server_tls = grpc.ssl_channel_credentials(ca)
        self.mutual_tls = grpc.ssl_channel_credentials(ca, pki.client.key.read_bytes(), pki.client.cert.read_bytes())


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    tmp = tmp_path_factory.mktemp("reflection")
    pki = make_pki(tmp / "pki")
    internal = free_addr()
    env = {
        "PACER_TLS_CERT_FILE": pki.server.cert_file,
        "PACER_TLS_KEY_FILE": pki.server.key_file,
        "PACER_TLS_CLIENT_CA_FILE": pki.ca.cert_file,
        "PACER_INTERNAL_ADDR": internal,
        "PACER_HEALTH_ADDR": free_addr(),
        "PACER_SERVICE_TOKEN": "reflection-test-token",
    }
    control: ServiceProcess
    control, public = start_control(tmp, f"sqlite:///{tmp / 'pacer.db'}", env=env)
    scheduler_addr = free_addr()
    scheduler_env = {
        "PACER_CONTROL_ADDR": internal,
        "PACER_TLS_CA_FILE": pki.ca.cert_file,
        "PACER_TLS_CLIENT_CERT_FILE": pki.client.cert_file,
        "PACER_TLS_CLIENT_KEY_FILE": pki.client.key_file,
        "PACER_SERVICE_TOKEN": env["PACER_SERVICE_TOKEN"],
        "PACER_SCHEDULER_ADDR": scheduler_addr,
        "PACER_METRICS_ADDR": free_addr(),
        "PACER_VAR_DIR": str(tmp / "var"),
    }
    try:
        scheduler = start_service("pacer-scheduler", scheduler_addr, scheduler_env, tmp / "scheduler.log")
        try:
            yield Ports(public, internal, scheduler_addr, pki)
        finally:
            scheduler.stop()
    finally:
        control.stop()


def ask(
    addr: str, credentials: grpc.ChannelCredentials | None, service: str, request: messages.ServerReflectionRequest
) -> messages.ServerReflectionResponse:
    """One request on a raw reflection stream of `service` (v1 or v1alpha: the messages are the same), over TLS
    with `credentials`, else plaintext."""
    channel = grpc.insecure_channel(addr) if credentials is None else grpc.secure_channel(addr, credentials)
    with channel:
        info = channel.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=messages.ServerReflectionRequest.SerializeToString,
            response_deserializer=messages.ServerReflectionResponse.FromString,
        )
        (response,) = list(info(iter([request]), timeout=10))
    assert isinstance(response, messages.ServerReflectionResponse)
    return response


def listed(addr: str, credentials: grpc.ChannelCredentials | None, service: str) -> set[str]:
    response = ask(addr, credentials, service, messages.ServerReflectionRequest(list_services=""))
    return {s.name for s in response.list_services_response.service}


@pytest.mark.parametrize("service", [V1, V1ALPHA])
def test_the_public_port_lists_the_public_api_and_not_the_internal_one(ports: Ports, service: str) -> None:
    assert listed(ports.public, ports.server_tls, service) == {CONTROL, HEALTH, V1, V1ALPHA}


@pytest.mark.parametrize("service", [V1, V1ALPHA])
def test_the_internal_port_lists_the_internal_api_to_a_caller_with_a_client_certificate(
    ports: Ports, service: str
) -> None:
    assert listed(ports.internal, ports.mutual_tls, service) == {CONTROL, LEASE, HEALTH, V1, V1ALPHA}


@pytest.mark.parametrize("service", [V1, V1ALPHA])
def test_the_scheduler_lists_its_dispatch_service(ports: Ports, service: str) -> None:
    assert listed(ports.scheduler, None, service) == {DISPATCH, HEALTH, V1, V1ALPHA}


def test_v1_describes_the_public_api_and_itself(ports: Ports) -> None:
    def file_of(symbol: str) -> descriptor_pb2.FileDescriptorProto:
        request = messages.ServerReflectionRequest(file_containing_symbol=symbol)
        response = ask(ports.public, ports.server_tls, V1, request)
        found = response.file_descriptor_response.file_descriptor_proto
        files = [descriptor_pb2.FileDescriptorProto.FromString(f) for f in found]
        return next(f for f in files if symbol.rsplit(".", 1)[0] == f.package)

    control = file_of(CONTROL)
    itself = file_of(V1)

    methods = {m.name for m in control.service[0].method}
    assert {"CreateJob", "ListRuns", "SummarizeEndpointHealth"} <= methods
    assert itself.name == "grpc/reflection/v1/reflection.proto"
    assert itself.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def test_the_grpcio_reflection_client_reads_the_public_api(ports: Ports) -> None:
    with grpc.secure_channel(ports.public, ports.server_tls) as channel:
        reflected = ProtoReflectionDescriptorDatabase(channel)
        assert LEASE not in reflected.get_services()
        service = reflected.FindFileContainingSymbol(CONTROL).service[0]
    assert "CreateJob" in {method.name for method in service.method}
