"""The domain exception tree every Pacer service raises; `status.py` maps it to gRPC."""

from __future__ import annotations

from dataclasses import dataclass

ECHO_LIMIT = 100


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """`value` quoted for an error message, cut to `limit` characters: a caller's text is never echoed whole."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: its path in the request (dotted) and what is wrong."""

    field: str
    description: str


class PacerError(Exception):
    """Base of every error a caller can be told about."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(PacerError):
    """The request is malformed; `violations` names each field at fault."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}")
        self.violations = tuple(violations)

    @classmethod
    def single(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class NotFound(PacerError):
    """The object does not exist, or belongs to another tenant (indistinguishable by design)."""

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"{kind} {shown(object_id)} not found")
        self.kind = kind
        self.object_id = object_id


class FailedPrecondition(PacerError):
    """The object exists but its state forbids the action (archived job, deleted endpoint)."""


class Unauthenticated(PacerError):
    """No credential, or one that is unknown or revoked."""


class PermissionDenied(PacerError):
    """A valid credential that may not call this method (a tenant key on an internal RPC)."""


@dataclass(frozen=True)
class QuotaViolation:
    """One quota that a request would exceed."""

    subject: str
    description: str


class ResourceExhausted(PacerError):
    """A quota or rate limit refused the request; `retry_after_s` is set for rate limits."""

    def __init__(self, message: str, violations: list[QuotaViolation], retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.violations = tuple(violations)
        self.retry_after_s = retry_after_s


class Unavailable(PacerError):
    """A dependency (the database) cannot be reached now; the same call may succeed after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
