"""Errors as RFC 9457 problem details (`application/problem+json`), and the gRPC code -> HTTP status table."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

from aiohttp import web

from pacer_common.client import ApiError
from pacer_common.guard import OPAQUE_INTERNAL, internal_message
from pacer_common.ids import new_id

PROBLEM_JSON = "application/problem+json"
WWW_AUTHENTICATE = 'Bearer realm="pacer"'
DEFAULT_RETRY_AFTER_S = 1

# One table from the control plane's status codes to HTTP. Codes not listed are failures of the control plane or of
# the call itself (UNKNOWN, DATA_LOSS, UNIMPLEMENTED, CANCELLED): the caller gets 502 and none of their text, which
# may carry internals.
HTTP_STATUS = MappingProxyType(
    {
        "INVALID_ARGUMENT": 400,
        "OUT_OF_RANGE": 400,
        "UNAUTHENTICATED": 401,
        "PERMISSION_DENIED": 403,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "ABORTED": 409,
        "FAILED_PRECONDITION": 412,
        "RESOURCE_EXHAUSTED": 429,
        "INTERNAL": 500,
        "UNAVAILABLE": 503,
        "DEADLINE_EXCEEDED": 504,
    }
)
UPSTREAM_FAILURE = 502
# 5xx problems never repeat the upstream message (a transport failure names addresses, an old server a class),
# save an opaque error id of the control plane's own (OPAQUE_INTERNAL).
_SERVER_DETAIL = MappingProxyType(
    {
        500: "the control plane failed to handle the request",
        502: "the control plane failed to handle the request",
        503: "the control plane is unavailable; retry later",
        504: "the control plane did not answer in time; retry later",
    }
)


@dataclass(frozen=True)
class InvalidParam:
    """One request parameter at fault: its name as the client sent it (path, query or dotted body path)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Problem(Exception):
    """An error answer: raise it anywhere in a handler and the middleware renders it.

    `code` is the gRPC status code name the error corresponds to, so REST and gRPC clients can share handling.
    """

    status: int
    detail: str
    code: str
    invalid_params: tuple[InvalidParam, ...] = ()
    violations: tuple[Mapping[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    error_id: str | None = None

    def body(self) -> dict[str, Any]:
        """The problem document: RFC 9457 members plus `code`, and `invalidParams`, `violations` and `errorId`
        when present."""
        document: dict[str, Any] = {
            "type": "about:blank",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.invalid_params:
            document["invalidParams"] = [{"name": p.name, "reason": p.reason} for p in self.invalid_params]
        if self.violations:
            document["violations"] = [dict(v) for v in self.violations]
        if self.error_id:
            document["errorId"] = self.error_id
        return document

    def response(self) -> web.Response:
        """The problem as an `application/problem+json` response with its headers."""
        return web.Response(
            status=self.status,
            body=json.dumps(self.body()).encode(),
            content_type=PROBLEM_JSON,
            headers=dict(self.headers),
        )


def bad_request(detail: str, params: tuple[InvalidParam, ...] = ()) -> Problem:
    """400 for a request the gateway cannot turn into an RPC; `params` names each parameter at fault."""
    return Problem(400, detail, "INVALID_ARGUMENT", invalid_params=params)


def unauthenticated(detail: str) -> Problem:
    """401 with the Bearer challenge RFC 9110 requires on every 401."""
    return Problem(401, detail, "UNAUTHENTICATED", headers={"WWW-Authenticate": WWW_AUTHENTICATE})


def not_found(detail: str) -> Problem:
    """404: no such route or object (another tenant's objects included, by design)."""
    return Problem(404, detail, "NOT_FOUND")


def internal() -> Problem:
    """500 for a failure of the gateway itself: an opaque error id, which the caller logs beside the traceback."""
    error_id = new_id("err")
    return Problem(500, internal_message(error_id, "the gateway"), "INTERNAL", error_id=error_id)


def json_name(proto_path: str) -> str:
    """A dotted protobuf field path in the JSON spelling clients use: `baseline.interval_ms` -> `baseline.intervalMs`.

    This is protobuf's own lowerCamelCase rule (a letter after `_` is capitalized), applied segment by segment.
    """
    return ".".join(re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), part) for part in proto_path.split("."))


def retry_after_s(error: ApiError) -> int:
    """Whole seconds to wait, rounded up from the control plane's RetryInfo; 1 when it gave none.

    Never below 1: `Retry-After: 0` would invite the same refused request at once.
    """
    if error.retry_after_s is None:
        return DEFAULT_RETRY_AFTER_S
    return max(1, math.ceil(error.retry_after_s))


def from_api_error(error: ApiError) -> Problem:
    """The problem for a refused ControlService call; 5xx problems carry a fixed detail, never the upstream text."""
    status = HTTP_STATUS.get(error.code, UPSTREAM_FAILURE)
    if status >= 500:
        return _upstream_failure(status, error)
    headers: dict[str, str] = {}
    if status == 429:
        headers["Retry-After"] = str(retry_after_s(error))
    elif status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return Problem(
        status,
        error.message,
        error.code,
        invalid_params=tuple(InvalidParam(json_name(v.field), v.description) for v in error.field_violations),
        violations=tuple(
            MappingProxyType({"subject": q.subject, "description": q.description}) for q in error.quota_violations
        ),
        headers=headers,
    )


def _upstream_failure(status: int, error: ApiError) -> Problem:
    """A 5xx problem: the control plane's error id when it gave one, `Retry-After` when its RetryInfo asks for a
    wait (UNAVAILABLE), and otherwise nothing of its text."""
    headers = {"Retry-After": str(retry_after_s(error))} if error.retry_after_s is not None else {}
    opaque = OPAQUE_INTERNAL.fullmatch(error.message) if status == 500 else None
    if opaque is None:
        return Problem(status, _SERVER_DETAIL[status], error.code, headers=headers)
    return Problem(status, error.message, error.code, headers=headers, error_id=opaque.group(1))


def from_http_error(error: web.HTTPException, method: str, path: str) -> Problem:
    """The problem for aiohttp's own refusals: no such route, wrong method, body too large."""
    if error.status == 404:
        return not_found(f"no route matches {path}")
    if error.status == 405:
        allowed = error.headers.get("Allow", "")
        headers = {"Allow": allowed} if allowed else {}
        return Problem(405, f"{method} is not allowed on {path}; allowed: {allowed}", "UNIMPLEMENTED", headers=headers)
    if error.status == 413:
        return Problem(413, "the request body is too large", "INVALID_ARGUMENT")
    return Problem(error.status, error.reason, "INVALID_ARGUMENT" if error.status < 500 else "INTERNAL")
