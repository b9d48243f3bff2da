"""A real HTTP target for end-to-end tests: an aiohttp server on a thread that records every request it gets.

Behaviour is set per path: `target.respond("/slow", delay_ms=3000)`; unknown paths answer 200 "ok".
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web


@dataclass(frozen=True)
class Behaviour:
    status: int = 200
    delay_ms: int = 0
    body_bytes: int = 2
    redirect_to: str = ""
    body: str = ""  # answered instead of body_bytes of "o" when set
    content_type: str | None = None
    # A JSON document to answer with instead of `body_bytes` bytes of "o".
    json_body: str = ""
    # When set, `status` answers only the first `fail_first` requests of each run id; later ones get 200.
    fail_first: int = 0


@dataclass(frozen=True)
class Hit:
    path: str
    method: str
    headers: dict[str, str]
    body: str
    received_at: datetime

    @property
    def run_id(self) -> str:
        return self.headers.get("X-Pacer-Run-Id", "")

    @property
    def scheduled_for(self) -> datetime:
        return datetime.fromisoformat(self.headers["X-Pacer-Scheduled-For"].replace("Z", "+00:00"))


@dataclass
class HttpTarget:
    host: str = "127.0.0.1"
    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    _behaviours: dict[str, Behaviour] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, path: str, **behaviour: object) -> None:
        self._behaviours[path] = Behaviour(**behaviour)  # type: ignore[arg-type]

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def hits_on(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        hit = Hit(request.path, request.method, dict(request.headers), await request.text(), datetime.now(UTC))
        with self._lock:
            self.hits.append(hit)
            earlier = sum(1 for seen in self.hits if seen.path == hit.path and seen.run_id == hit.run_id) - 1
        behaviour = self._behaviours.get(request.path, Behaviour())
        if behaviour.fail_first and earlier >= behaviour.fail_first:
            behaviour = Behaviour()
        if behaviour.delay_ms:
            await asyncio.sleep(behaviour.delay_ms / 1000)
        if behaviour.redirect_to:
            raise web.HTTPFound(behaviour.redirect_to)
        if behaviour.json_body:
            return web.Response(status=behaviour.status, text=behaviour.json_body, content_type="application/json")
        body = behaviour.body.encode() if behaviour.body else b"o" * behaviour.body_bytes
        return web.Response(status=behaviour.status, body=body, content_type=behaviour.content_type)

    def start(self) -> HttpTarget:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
