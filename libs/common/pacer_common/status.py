"""One table from domain errors to gRPC status codes, with google.rpc rich details."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from pacer_common import errors

_CODES: dict[type[errors.PacerError], tuple[grpc.StatusCode, int]] = {
    errors.InvalidArgument: (grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    errors.NotFound: (grpc.StatusCode.NOT_FOUND, code_pb2.NOT_FOUND),
    errors.FailedPrecondition: (grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION),
    errors.Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED),
    errors.PermissionDenied: (grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED),
    errors.ResourceExhausted: (grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
}


def code_of(error: errors.PacerError) -> grpc.StatusCode:
    """The gRPC status code for a domain error."""
    for kind, (code, _) in _CODES.items():
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _details(error: errors.PacerError) -> list[object]:
    match error:
        case errors.InvalidArgument():
            bad = error_details_pb2.BadRequest()
            for v in error.violations:
                bad.field_violations.add(field=v.field, description=v.description)
            return [bad]
        case errors.ResourceExhausted():
            quota = error_details_pb2.QuotaFailure()
            for q in error.violations:
                quota.violations.add(subject=q.subject, description=q.description)
            found: list[object] = [quota]
            if error.retry_after_s is not None:
                delay = duration_pb2.Duration()
                delay.FromMilliseconds(int(error.retry_after_s * 1000))
                found.append(error_details_pb2.RetryInfo(retry_delay=delay))
            return found
        case _:
            return []


def to_grpc_status(error: errors.PacerError) -> grpc.Status:
    """A grpc.Status carrying the message and the rich details of `error`."""
    _, numeric = next(((c, n) for kind, (c, n) in _CODES.items() if isinstance(error, kind)), (None, code_pb2.INTERNAL))
    proto = status_pb2.Status(code=numeric, message=error.message)
    for detail in _details(error):
        proto.details.add().Pack(detail)
    return rpc_status.to_status(proto)
