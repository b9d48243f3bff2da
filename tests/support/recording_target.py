"""An HTTP target that records, cheaply, what each call carried: its `X-Pacer-Run-Id`, `X-Pacer-Endpoint-Id` and
`X-Pacer-Scheduled-For`, and when it arrived (wall clock, as the scheduled time is).

A low-level aiohttp server (no router, no header copies) on its own event loop in a daemon thread: at a few hundred
calls a second it must not be what makes runs late. Every call answers 200 after `answer_delay_s`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web


@dataclass(frozen=True)
class Arrival:
    """One call as the target saw it; times are seconds since the epoch."""

    run_id: str
    endpoint_id: str
    scheduled_for_s: float
    arrived_s: float

    @property
    def lateness_s(self) -> float:
        return self.arrived_s - self.scheduled_for_s


def _epoch_s(run_id: str, header: str) -> float:
    try:
        return datetime.fromisoformat(header.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise AssertionError(f"run {run_id!r} arrived without a valid X-Pacer-Scheduled-For: {header!r}") from None


class RecordingTarget:
    """Start with `start()`, point endpoints at `url(path)`, read `arrivals()`; `stop()` at the end."""

    def __init__(self) -> None:
        self.answer_delay_s = 0.0
        self.open_calls = 0  # calls received and not answered yet (only the target's loop changes it)
        # (run id, endpoint id, scheduled-for header, arrival): appending a tuple is atomic, parsing waits.
        self._raw: list[tuple[str, str, str, float]] = []
        self._parsed: list[Arrival] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="recording-target", daemon=True)
        self.port = 0

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        headers = request.headers
        self._raw.append(
            (
                headers.get("X-Pacer-Run-Id", ""),
                headers.get("X-Pacer-Endpoint-Id", ""),
                headers.get("X-Pacer-Scheduled-For", ""),
                time.time(),
            )
        )
        self.open_calls += 1
        try:
            if self.answer_delay_s:
                await asyncio.sleep(self.answer_delay_s)
            return web.Response(text="ok")
        finally:
            self.open_calls -= 1

    def start(self) -> RecordingTarget:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    async def _serve(self) -> None:
        self._runner = web.ServerRunner(web.Server(self._handle), handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def arrivals(self) -> list[Arrival]:
        """Every call so far, in arrival order."""
        with self._lock:
            for run_id, endpoint_id, scheduled_for, arrived_s in self._raw[len(self._parsed) :]:
                self._parsed.append(Arrival(run_id, endpoint_id, _epoch_s(run_id, scheduled_for), arrived_s))
            return list(self._parsed)

    def count(self) -> int:
        return len(self._raw)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
