"""A keep-alive HTTP/1.1 target on raw asyncio sockets, for tests about what travels on a connection.

Unlike `tests.support.target` (aiohttp, which refuses ambiguous framing), this target frames requests the way a
lenient origin does: a request whose `Transfer-Encoding` names chunked (any case) has a chunked body, ended by its
last chunk, even when a `Content-Length` says otherwise; other requests have `Content-Length` bytes. Whatever follows
a request on the connection is the next request, answered in turn on the same connection, which stays open until
the client closes it. So bytes a client sends after a chunked body's last chunk are read as a second request: the
shape of request smuggling.

Every answer is 200 with a JSON body echoing the request it answers: `path`, `run_id` (its X-Pacer-Run-Id) and
`authorization` (its Authorization header), so a client can tell whether the answer it got was meant for its own
request. Every request is recorded with the connection that carried it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RawRequest:
    """A request as the target framed it, with the connection (numbered from 1 in accept order) that carried it."""

    connection: int
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str:
        """The first value of the header `name` (any case), or ""."""
        return next((value for key, value in self.headers if key.lower() == name.lower()), "")

    @property
    def run_id(self) -> str:
        return self.header("X-Pacer-Run-Id")


def answer_for(request: RawRequest) -> dict[str, str]:
    """The JSON object the target answers `request` with."""
    return {"path": request.path, "run_id": request.run_id, "authorization": request.header("Authorization")}


@dataclass
class RawTarget:
    """The target on a thread of its own: `start()`, `url(path)`, then `seen()` and `closed_connections()`.

    `answer_delay_s` is how long the target takes over each request before it answers: a target that answers
    at once would often put two answers in one TCP segment, which a client notices; a slower one answers the
    second request after the client stopped reading.
    """

    host: str = "127.0.0.1"
    answer_delay_s: float = 0.0
    port: int = 0
    requests: list[RawRequest] = field(default_factory=list)
    closed: set[int] = field(default_factory=set)  # connections that ended (closed by the client, or at stop)
    most_at_once: int = 0  # the most requests the target was working on at the same time
    _at_once: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def seen(self) -> list[RawRequest]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self.requests)

    def closed_connections(self) -> set[int]:
        with self._lock:
            return set(self.closed)

    def start(self) -> RawTarget:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._numbers = itertools.count(1)
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shut(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()  # the handler reads end of file and returns
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.add(writer)
        connection = next(self._numbers)
        try:
            await self._serve(connection, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass  # the client went away, or sent what this target cannot frame: the connection ends
        finally:
            with self._lock:
                self.closed.add(connection)
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(handler)

    async def _serve(self, connection: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the requests on one connection in turn, until the client closes it."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as eof:
                if eof.partial:
                    raise
                return
            except asyncio.LimitOverrunError:
                return
            request = await _read_request(connection, head, reader)
            with self._lock:
                self.requests.append(request)
                self._at_once += 1
                self.most_at_once = max(self.most_at_once, self._at_once)
            try:
                if self.answer_delay_s:
                    await asyncio.sleep(self.answer_delay_s)
                writer.write(_response(json.dumps(answer_for(request)).encode()))
                await writer.drain()
            finally:
                with self._lock:
                    self._at_once -= 1


async def _read_request(connection: int, head: bytes, reader: asyncio.StreamReader) -> RawRequest:
    lines = head[: -len(b"\r\n\r\n")].decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers = tuple((name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in lines[1:]))
    request = RawRequest(connection, method, path, headers, b"")
    if "chunked" in request.header("Transfer-Encoding").lower():
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(request.header("Content-Length") or 0))
    return RawRequest(connection, method, path, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body up to and including its last chunk and trailer section; nothing after it."""
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _response(body: bytes) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n"
        "\r\n"
    )
    return head.encode() + body
