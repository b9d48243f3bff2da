"""The aiohttp application: one handler per route of the table, each a thin translation to one ControlService call."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from google.protobuf import json_format
from google.protobuf.message import Message

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.client import ApiError
from pacer_common.credentials import token_of
from pacer_gateway import problems
from pacer_gateway.api_page import add_api_page
from pacer_gateway.console import add_console, security_headers
from pacer_gateway.metrics import GatewayMetrics
from pacer_gateway.openapi import build_document
from pacer_gateway.routes import MAX_BODY_BYTES, ROUTES, Route, decode_request, parse_body
from pacer_gateway.settings import DEFAULT_MIN_INTERVAL_MS

log = logging.getLogger("pacer.gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON_TYPE = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")
METRICS = web.AppKey("metrics", GatewayMetrics)


class ControlCaller(Protocol):
    """What the gateway needs of the control plane: `AsyncControlClient`, or a fake in tests."""

    async def call(self, rpc: str, request: Any, key: str | None) -> Any:
        """The RPC's response message; raises ApiError when the call is refused."""
        ...


def bearer_key(authorization: str | None) -> str:
    """The API key of an `Authorization: Bearer <key>` header; a 401 Problem when there is none.

    Whether the key is valid is the control plane's decision, not the gateway's.
    """
    if not authorization:
        raise problems.unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    key = token_of(authorization)
    if key is None:
        raise problems.unauthenticated("the Authorization header must be 'Bearer <key>' with a Pacer API key")
    return key


async def read_body(request: web.Request) -> bytes:
    """The request body; a 400 Problem when its transfer or content encoding is broken or it ends early."""
    if not request.body_exists:
        return b""
    try:
        return await request.read()
    except web.RequestPayloadError:  # a malformed chunk, or a Content-Encoding that does not decode
        raise problems.bad_request(
            "the request body is malformed: its transfer or content encoding is broken"
        ) from None
    except ConnectionResetError:  # the client went away mid-body; nobody will read the answer
        raise problems.bad_request("the request body ended early: the connection was closed") from None


async def read_json_body(request: web.Request, route: Route) -> dict[str, Any]:
    """The route's JSON body (`{}` when empty); routes without a body refuse one rather than ignore it."""
    raw = await read_body(request)
    if not route.body:
        if raw.strip():
            raise problems.bad_request(f"{route.method} {route.path} takes no request body")
        return {}
    declared = request.headers.get(hdrs.CONTENT_TYPE)
    if raw.strip() and declared is not None and not _json_declared(request.content_type, raw):
        raise problems.Problem(415, "send the body as 'Content-Type: application/json'", "UNSUPPORTED_MEDIA_TYPE")
    return parse_body(raw)


def _json_declared(content_type: str, raw: bytes) -> bool:
    """Whether a body may be read as JSON: declared as JSON, or sent as `curl -d` sends it (declared as a form, but
    a JSON object). Accepting the latter opens no cross-site door: the key travels only in the Authorization
    header, which a cross-site form cannot set."""
    if _JSON_TYPE.fullmatch(content_type):
        return True
    return content_type == "application/x-www-form-urlencoded" and raw.lstrip().startswith(b"{")


async def require_endpoint_in_job(client: ControlCaller, key: str, job_id: str, endpoint_id: str) -> None:
    """404 unless the endpoint is a live endpoint of the job (the job itself 404s when unknown or foreign).

    An endpoint's job never changes, so a check made before the call stays true; an endpoint deleted in between is
    the control plane's to report. The cost is one ListJobEndpoints call, linear in the job's endpoints: the public
    API has no cheaper way to learn an endpoint's job.
    """
    listing = await client.call("ListJobEndpoints", pb.ListJobEndpointsRequest(job_id=job_id), key)
    if not any(endpoint.endpoint_id == endpoint_id for endpoint in listing.endpoints):
        raise problems.not_found(f"endpoint {endpoint_id!r} not found in job {job_id!r}")


def encode_response(route: Route, reply: Message) -> web.Response:
    """The JSON mapping of the reply, every field without presence written out (see openapi.py)."""
    payload = json_format.MessageToDict(
        reply, always_print_fields_with_no_presence=True, unquote_int64_if_possible=True
    )
    headers = {hdrs.LOCATION: route.location.format_map(payload)} if route.location else None
    return web.json_response(payload, status=route.status, headers=headers)


def route_handler(route: Route, client: ControlCaller) -> Handler:
    """The handler of one route: authenticate, decode, scope-check, call, encode."""

    async def handle(request: web.Request) -> web.StreamResponse:
        key = bearer_key(request.headers.get(hdrs.AUTHORIZATION))
        body = await read_json_body(request, route)
        message = decode_request(route, request.match_info, request.query.items(), body)
        if route.scopes_endpoint:
            await require_endpoint_in_job(client, key, request.match_info["jobId"], request.match_info["endpointId"])
        return encode_response(route, await client.call(route.rpc, message, key))

    return handle


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as application/problem+json; a gateway bug as a 500 with an opaque error id that is also
    logged beside the traceback, never shown to the caller."""
    try:
        return await handler(request)
    except problems.Problem as raised:
        return raised.response()
    except ApiError as error:
        problem = problems.from_api_error(error)
        if problem.status >= 500:
            metrics = request.app.get(METRICS)
            if metrics is not None:
                metrics.upstream_errors.labels(error.code).inc()
            log.warning(
                "control plane call failed",
                extra={"event": "gateway.upstream_failed", "code": error.code, "error": error.message},
            )
        return problem.response()
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return problems.from_http_error(error, request.method, request.path).response()
    except Exception:
        problem = problems.internal()
        log.exception(
            "request failed", extra={"event": "gateway.failed", "path": request.path, "error_id": problem.error_id}
        )
        return problem.response()


def create_app(
    client: ControlCaller, metrics: GatewayMetrics | None = None, min_interval_ms: int = DEFAULT_MIN_INTERVAL_MS
) -> web.Application:
    """The gateway over `client`, measured into `metrics` when given, describing requests by the control plane's
    interval floor `min_interval_ms`; the caller owns the client (and closes it after the app is cleaned up)."""
    middlewares: list[Middleware] = [security_headers, problem_middleware]
    if metrics is not None:
        middlewares.insert(0, metrics.middleware())
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    if metrics is not None:
        app[METRICS] = metrics
    for route in ROUTES:
        if route.method == "GET":
            app.router.add_get(route.path, route_handler(route, client))
        else:
            app.router.add_route(route.method, route.path, route_handler(route, client))
    document = json.dumps(build_document(ROUTES, floor_ms=min_interval_ms)).encode()

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    add_console(app)
    add_api_page(app)
    return app
