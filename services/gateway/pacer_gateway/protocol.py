"""Requests refused below the routes (an oversized URL or header, bytes that are not HTTP/1.1), answered as problems.

aiohttp parses each connection in a `RequestHandler` and answers whatever its parser rejects through `handle_error`,
outside every middleware: a `text/plain` 400 that quotes the offending bytes back, and a logged traceback. aiohttp has
no setting or hook for that answer (aio-libs/aiohttp#3287), so the gateway serves with its own `RequestHandler`
subclass: `GatewayRunner` is the `AppRunner` whose server hands each connection to a `ProblemRequestHandler`.

The parser reports an oversized URL and an oversized header with the same exception, `LineTooLong`, carrying the
limit that was passed; the two limits differ so that the limit tells 414 from 431. (With the pure-Python parser,
used only when aiohttp's C extension is missing, a header line still arriving when it passes the URL limit is
reported as a URL: a 414 where 431 was due.)
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from pacer_gateway.problems import Problem, bad_request, internal

log = logging.getLogger("pacer.gateway")

MAX_URL_BYTES = 8192  # the request target (path and query); beyond it: 414
MAX_FIELD_BYTES = 8190  # one header's name, and its value (aiohttp's default); beyond it: 431
MAX_HEADERS = 128  # aiohttp's default; beyond it: 431
_HANDLER_SETTINGS = {"max_line_size": MAX_URL_BYTES, "max_field_size": MAX_FIELD_BYTES, "max_headers": MAX_HEADERS}


def protocol_problem(error: HttpProcessingError) -> tuple[Problem, str]:
    """The problem for a request aiohttp's parser refused, and a stable name for the log; never the sent bytes."""
    match error:
        case LineTooLong() if error.args[1:2] == (MAX_URL_BYTES,):
            return Problem(414, f"the request URL is longer than {MAX_URL_BYTES} bytes", "INVALID_ARGUMENT"), "url"
        case LineTooLong():
            detail = f"a request header is longer than {MAX_FIELD_BYTES} bytes"
            return Problem(431, detail, "INVALID_ARGUMENT"), "header_size"
        case BadHttpMessage() if error.message.startswith("Too many headers"):
            detail = f"the request has more than {MAX_HEADERS} headers"
            return Problem(431, detail, "INVALID_ARGUMENT"), "header_count"
        case BadHttpMethod():
            return bad_request("the request is not HTTP/1.1 (TLS sent to a plain HTTP port, or a bad method)"), "method"
        case InvalidURLError():
            return bad_request("the request URL is malformed"), "url_syntax"
        case BadStatusLine():
            return bad_request("the request line is malformed"), "request_line"
        case InvalidHeader():
            return bad_request("a request header is malformed"), "header_syntax"
        case PayloadEncodingError():
            return bad_request("the request body is malformed: its transfer or content encoding is broken"), "body"
        case _:
            return bad_request("the request is not valid HTTP/1.1"), "malformed"


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler with every answer it makes itself given as a problem.

    Besides parser refusals, `handle_error` answers a handler that raised past the middleware (500, logged with an
    error id) and a handler timeout (504).
    """

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        # aiohttp's own rule: once a response has begun, the connection can only be dropped.
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already under way; the connection is dropped")
        response = self._problem(status, exc).response()
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp's log of a failure outside any handler; a broken body is one line, not a traceback.

        After answering, aiohttp reads and drops what is left of the request body; a body whose encoding broke (or
        whose client went away) fails that read again, which aiohttp would log as an unhandled exception.
        """
        error = kwargs.get("exc_info")
        if isinstance(error, web.RequestPayloadError | HttpProcessingError | ConnectionResetError):
            log.info("request body dropped", extra={"event": "http.body_dropped", "kind": type(error).__name__})
            return
        super().log_exception(*args, **kwargs)

    def _problem(self, status: int, error: BaseException | None) -> Problem:
        if isinstance(error, HttpProcessingError):
            problem, kind = protocol_problem(error)
            log.info("request refused", extra={"event": "http.malformed", "status": problem.status, "kind": kind})
            return problem
        if status == 504:
            return Problem(504, "the gateway did not finish the request in time", "DEADLINE_EXCEEDED")
        problem = internal()
        log.error("request failed", exc_info=error, extra={"event": "gateway.failed", "error_id": problem.error_id})
        return problem


class ProblemServer(web.Server):
    """aiohttp's low-level server, handing each connection to a `ProblemRequestHandler` with the same settings."""

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """The `AppRunner` to serve the gateway with: protocol-level refusals are problems, under the limits above."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, **(kwargs | _HANDLER_SETTINGS))  # protocol_problem reads the limits

    async def _make_server(self) -> web.Server:
        # AppRunner starts the app and gathers the connection settings into its server; keep all of that and swap
        # only the connection handler.
        made = await super()._make_server()
        return ProblemServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            **made._kwargs,
        )
