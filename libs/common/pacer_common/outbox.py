"""What one end of a stream has to say, in order, for the stream's one writer task (a gRPC call takes one write at a
time), with the newest message kept open to gather more events while the writer is busy.

Both ends of the dispatch stream batch this way: the scheduler's work items in a WorkBatch, the executor's runs
begun, results and credits in a Progress. Whatever is queued while a write is on the wire goes out together with
the next one, so a busy stream sends few messages and an idle one adds no delay.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

M = TypeVar("M")


class Outbox(Generic[M]):
    """Messages for one writer, in order; None tells the writer to end once it reached it.

    `batch` gives the open message, the newest in the queue, to add to; it stays open until the writer takes it,
    it holds `max_bytes` (counted with `added`), or any other message is queued after it, so that message keeps its
    place after what was added before it.
    """

    def __init__(self, max_bytes: int) -> None:
        self._messages: deque[M | None] = deque()
        self._arrived = asyncio.Event()
        self._max_bytes = max_bytes
        self._open: M | None = None  # the open batch, last in the queue
        self._open_bytes = 0

    def put(self, message: M | None) -> None:
        """Queue `message` (None: the writer ends once it reached it)."""
        self._open = None
        self._messages.append(message)
        self._arrived.set()

    def batch(self, new: Callable[[], M]) -> M:
        """The open batch to add to: the open one, else `new()` queued last."""
        if self._open is None:
            message = new()
            self.put(message)
            self._open, self._open_bytes = message, 0
        return self._open

    def added(self, size: int) -> None:
        """Count `size` bytes just added to the open batch; a full one takes no more."""
        self._open_bytes += size
        if self._open_bytes >= self._max_bytes:
            self._open = None

    def clear(self) -> None:
        """Drop everything queued and not yet taken."""
        self._open = None
        self._messages.clear()

    async def take(self) -> M | None:
        """The next message to write; a batch taken is closed (it is being written)."""
        while not self._messages:
            self._arrived.clear()
            await self._arrived.wait()
        message = self._messages.popleft()
        if not self._messages:
            self._open = None
        return message
