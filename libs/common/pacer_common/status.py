"""One table from domain errors to gRPC status codes, with google.rpc rich details.

Everything a status carries travels in the response trailers, which gRPC caps (8 KiB by default): messages, fields
and descriptions are cut here, whatever a raiser put in them, so no error can be too large to deliver.
"""

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
    errors.Unavailable: (grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE),
}
MAX_MESSAGE = 1000
MAX_DETAIL_TEXT = 300
MAX_VIOLATIONS = 20


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _code(error: errors.PacerError) -> tuple[grpc.StatusCode, int]:
    return next((codes for kind, codes in _CODES.items() if isinstance(error, kind)), _INTERNAL)


_INTERNAL = (grpc.StatusCode.INTERNAL, code_pb2.INTERNAL)


def code_of(error: errors.PacerError) -> grpc.StatusCode:
    """The gRPC status code for a domain error."""
    return _code(error)[0]


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(int(seconds * 1000))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def _details(error: errors.PacerError) -> list[object]:
    match error:
        case errors.InvalidArgument():
            bad = error_details_pb2.BadRequest()
            for v in error.violations[:MAX_VIOLATIONS]:
                bad.field_violations.add(
                    field=_cut(v.field, MAX_DETAIL_TEXT), description=_cut(v.description, MAX_DETAIL_TEXT)
                )
            return [bad]
        case errors.ResourceExhausted():
            quota = error_details_pb2.QuotaFailure()
            for q in error.violations[:MAX_VIOLATIONS]:
                quota.violations.add(
                    subject=_cut(q.subject, MAX_DETAIL_TEXT), description=_cut(q.description, MAX_DETAIL_TEXT)
                )
            found: list[object] = [quota]
            if error.retry_after_s is not None:
                found.append(_retry_info(error.retry_after_s))
            return found
        case errors.Unavailable():
            return [_retry_info(error.retry_after_s)]
        case _:
            return []


def to_grpc_status(error: errors.PacerError) -> grpc.Status:
    """A grpc.Status carrying the (bounded) message and the rich details of `error`."""
    proto = status_pb2.Status(code=_code(error)[1], message=_cut(error.message, MAX_MESSAGE))
    for detail in _details(error):
        proto.details.add().Pack(detail)
    return rpc_status.to_status(proto)
