"""What the streamable HTTP transport answers before any handler runs, kept free of library internals.

The SDK answers a POST body that is JSON but not a JSON-RPC message with HTTP 400 and, as the error message,
pydantic's text: model class names, the offending input values echoed back and links to pydantic's docs. Handler
errors are guarded in `server.py`; this ASGI wrapper gives that one transport answer a fixed message instead.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import INVALID_PARAMS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOT_JSON_RPC = "Invalid request: the body must be one JSON-RPC 2.0 request, notification or response object"


def scrubbed(body: bytes) -> bytes:
    """`body` of a transport-level 400 with the message of an INVALID_PARAMS error replaced; anything else as is."""
    try:
        document: Any = json.loads(body)
    except ValueError:
        return body
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict) or error.get("code") != INVALID_PARAMS:
        return body
    document["error"] = {"code": INVALID_PARAMS, "message": NOT_JSON_RPC}
    return json.dumps(document, separators=(",", ":")).encode()


class OpaqueTransportErrors:
    """ASGI middleware over the SDK's app: every HTTP 400 JSON body passes through `scrubbed`."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        await self._app(scope, receive, _Rewriting(send))


class _Rewriting:
    """A `send` that holds back a 400 JSON response until its body is complete, then sends it scrubbed."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 400 and _is_json(message):
            self._start = message
            return
        if self._start is None or message["type"] != "http.response.body":
            await self._send(message)
            return
        self._body += message.get("body", b"")
        if message.get("more_body", False):
            return
        body = scrubbed(self._body)
        headers = [(k, v) for k, v in self._start.get("headers", []) if k.lower() != b"content-length"]
        await self._send({**self._start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await self._send({"type": "http.response.body", "body": body})


def _is_json(start: Message) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in start.get("headers", []))
