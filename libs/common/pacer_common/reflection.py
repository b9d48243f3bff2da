"""gRPC server reflection under both names clients ask for, listing to each caller only the services meant for it.

grpcurl, Postman and the grpc-go tools ask `grpc.reflection.v1.ServerReflection` first and fall back to
`v1alpha`; grpcio-reflection only serves `v1alpha`. The two protocols are the same messages under another package,
so one servicer answers both: the v1 descriptor is the v1alpha one renamed (and added to the descriptor pool, so
that reflection can describe itself under either name).

A server that also serves internal APIs (the control plane's LeaseService) on a mutual-TLS port lists them only to
callers that presented a client certificate, the same test the internal API itself applies: a client of the public
port is not shown services it cannot call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as alpha_pb

V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
SERVICE_NAMES = (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
METHOD = "ServerReflectionInfo"


def _add_v1_descriptor() -> None:
    """Put grpc/reflection/v1/reflection.proto in the default pool: v1alpha's file under the v1 package."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName("grpc/reflection/v1/reflection.proto")
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    alpha_pb.DESCRIPTOR.CopyToProto(proto)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = V1_PACKAGE
    prefix = f".{alpha_pb.DESCRIPTOR.package}."
    for message in proto.message_type:
        for item in message.field:
            if item.type_name.startswith(prefix):
                item.type_name = f".{V1_PACKAGE}." + item.type_name.removeprefix(prefix)
    for service in proto.service:
        for method in service.method:
            method.input_type = f".{V1_PACKAGE}." + method.input_type.removeprefix(prefix)
            method.output_type = f".{V1_PACKAGE}." + method.output_type.removeprefix(prefix)
    proto.options.Clear()
    pool.Add(proto)


class _Reflection:
    """Answers a reflection stream from the listing for the caller: everything, or the public services only."""

    def __init__(self, public: Sequence[str], internal: Sequence[str], internal_needs_client_cert: bool) -> None:
        self._public = reflection.aio.ReflectionServicer([*public, *SERVICE_NAMES])
        self._everything = reflection.aio.ReflectionServicer([*public, *internal, *SERVICE_NAMES])
        self._needs_client_cert = internal_needs_client_cert and bool(internal)

    def _for(self, context: grpc.aio.ServicerContext) -> object:
        if self._needs_client_cert and "x509_pem_cert" not in (context.auth_context() or {}):
            return self._public
        return self._everything

    async def info(
        self, requests: AsyncIterator[alpha_pb.ServerReflectionRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[alpha_pb.ServerReflectionResponse]:
        servicer = self._for(context)
        async for response in servicer.ServerReflectionInfo(requests, context):  # type: ignore[attr-defined]
            yield response


def enable_reflection(
    server: grpc.aio.Server,
    public: Sequence[str],
    internal: Sequence[str] = (),
    *,
    internal_needs_client_cert: bool = False,
) -> None:
    """Serve reflection v1 and v1alpha on `server`, listing `public` services (and health, reflection) to every
    caller and `internal` ones too, unless `internal_needs_client_cert` and the caller presented no certificate."""
    _add_v1_descriptor()
    answer = _Reflection(public, internal, internal_needs_client_cert)
    handler = grpc.stream_stream_rpc_method_handler(
        answer.info,
        request_deserializer=alpha_pb.ServerReflectionRequest.FromString,
        response_serializer=alpha_pb.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(name, {METHOD: handler}) for name in SERVICE_NAMES]
    )
