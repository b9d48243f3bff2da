"""Claimed runs ordered by due time: the timer heap and the ready queue are both one of these."""

from __future__ import annotations

import heapq
import itertools
from datetime import UTC, datetime

from pacer.internal.v1 import lease_service_pb2 as lease_pb


def due_time(item: lease_pb.WorkItem) -> datetime:
    """The aware UTC time the run is due: its `start_at` (its slot plus its jitter), else its `scheduled_for`.

    Timer, ready queue and lateness all go by it, so a jittered run is neither dispatched nor counted late before
    the time the control plane chose for it."""
    stamp = item.start_at if item.HasField("start_at") else item.scheduled_for
    return stamp.ToDatetime(tzinfo=UTC)


class RunHeap:
    """A min-heap of work items by due time (`due_time`); items due at the same time come out in insertion order."""

    def __init__(self) -> None:
        self._entries: list[tuple[datetime, int, lease_pb.WorkItem]] = []
        # Breaks ties so equal due times keep arrival order and items themselves are never compared.
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, item: lease_pb.WorkItem) -> bool:
        """Add `item`; True when it became the earliest (a sleeping timer must wake up for it)."""
        entry = (due_time(item), next(self._sequence), item)
        heapq.heappush(self._entries, entry)
        return self._entries[0] is entry

    def earliest(self) -> datetime | None:
        """Due time of the earliest item, None when empty."""
        return self._entries[0][0] if self._entries else None

    def pop(self) -> lease_pb.WorkItem:
        """Remove and return the earliest item; IndexError when empty."""
        return heapq.heappop(self._entries)[2]

    def pop_due(self, now: datetime) -> list[lease_pb.WorkItem]:
        """Remove and return, earliest first, every item due at or before `now`."""
        due = []
        while self._entries and self._entries[0][0] <= now:
            due.append(heapq.heappop(self._entries)[2])
        return due
