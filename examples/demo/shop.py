"""The demo shop: a local aiohttp server that Pacer's executor calls, recording every request it gets.

Health paths answer with the current phase's metrics as JSON; investigation, recovery and alert paths answer 200.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from examples.demo.clock import SimClock
from examples.demo.scenario import phase_at
from examples.flash_sale import ENDPOINTS


@dataclass(frozen=True)
class Hit:
    """One request the shop received from Pacer: which endpoint, when (simulated seconds) and which run."""

    endpoint: str
    sim_s: float
    run_id: str


HitListener = Callable[[Hit], None]
NAME_BY_PATH = {spec.path: spec.name for spec in ENDPOINTS}
HEALTH_PATHS = {spec.path for spec in ENDPOINTS if spec.tier == "health"}


@dataclass
class DemoShop:
    """Serves the flash-sale paths on 127.0.0.1 (a free port) from a thread of its own; `hits` in arrival order."""

    clock: SimClock
    on_hit: HitListener = lambda hit: None
    host: str = "127.0.0.1"
    port: int = 0
    _hits: list[Hit] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL of the shop."""
        return f"http://{self.host}:{self.port}"

    def hits(self) -> list[Hit]:
        """Every request so far, oldest first."""
        with self._lock:
            return list(self._hits)

    def start(self) -> DemoShop:
        """Listen; returns once the port is bound."""
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-shop", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Stop listening and end the thread."""
        if self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._thread = None

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])

    async def _handle(self, request: web.Request) -> web.Response:
        sim_s = self.clock.now_s()
        name = NAME_BY_PATH.get(request.path)
        if name is None:
            return web.Response(status=404, text="not a flash-sale path")
        hit = Hit(name, sim_s, request.headers.get("X-Pacer-Run-Id", ""))
        with self._lock:
            self._hits.append(hit)
        self.on_hit(hit)
        if request.path in HEALTH_PATHS:
            return web.json_response(phase_at(sim_s).metrics())
        return web.Response(text="ok")
