"""The timer: holds claimed runs until their due time, then releases them for dispatch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.clock import Clock
from pacer_scheduler.heap import RunHeap

Release = Callable[[list[lease_pb.WorkItem]], None]


class Timer:
    """Releases each added item to `release` once `clock` reaches its due time (`heap.due_time`: its start_at, else its
    scheduled_for), earliest first.

    `run()` sleeps until the earliest due time and wakes early when an earlier item is added, so a run claimed
    late (a hint moved it forward) is never held back by a later one.
    """

    def __init__(self, clock: Clock, release: Release) -> None:
        self._clock = clock
        self._release = release
        self._heap = RunHeap()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, items: Iterable[lease_pb.WorkItem]) -> None:
        """Hold `items` until they are due."""
        earlier = [self._heap.push(item) for item in items]
        if any(earlier):
            self._wake.set()

    def clear(self) -> int:
        """Forget every held item (their session ended); returns how many there were."""
        dropped = len(self._heap)
        self._heap = RunHeap()
        return dropped

    async def run(self) -> None:
        """Release due items forever (until cancelled)."""
        while True:
            # Cleared before looking at the heap: an add() during the wait below sets it again.
            self._wake.clear()
            now = self._clock.now()
            due = self._heap.pop_due(now)
            if due:
                self._release(due)
            earliest = self._heap.earliest()
            delay_s = None if earliest is None else max((earliest - now).total_seconds(), 0.0)
            await self._sleep(delay_s)

    async def _sleep(self, delay_s: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay_s)
