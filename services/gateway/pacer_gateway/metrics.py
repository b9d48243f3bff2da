"""What the REST gateway measures: requests by route and status, their latency, and the control plane's failures.

Served at `/metrics` on its own port (PACER_METRICS_ADDR, default 127.0.0.1:9467), like every service's. The route
label is the route's template (`/jobs/{jobId}`), never the path a client sent, so the series stay bounded whatever
ids or garbage arrive; a path no route matches is counted as `unmatched`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram

from pacer_common.telemetry import HANDLING_BUCKETS_S

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNMATCHED = "unmatched"


class GatewayMetrics:
    """The gateway's metrics on `registry` (a private one when None, as in tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "pacer_gateway_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "pacer_gateway_request_duration_seconds",
            "Time from a request's arrival to its answer, by route template and method.",
            ["route", "method"],
            buckets=HANDLING_BUCKETS_S,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "pacer_gateway_upstream_errors",
            "Control plane calls that failed with a server-side status (UNAVAILABLE, INTERNAL, ...), by gRPC code.",
            ["code"],
            registry=self.registry,
        )

    def middleware(self) -> Middleware:
        """An aiohttp middleware (the outermost) that counts and times every answer, errors included."""

        @web.middleware
        async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as error:
                status = error.status
                raise
            finally:
                route = _route_label(request)
                self.requests.labels(route, request.method, str(status)).inc()
                self.duration.labels(route, request.method).observe(time.perf_counter() - started)

        return measure


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED
