"""Connection pools kept per tenant: a connection only ever carries the runs of one tenant.

Defence in depth against request smuggling and answers that go astray. Should a target ever read one run's request
as two, the answer to the second one waits on a connection that only later runs of the same tenant use: it can
never become another tenant's response, and no tenant's request ever follows another tenant's bytes on the wire.

Pools cost file descriptors and memory, so `TenantPools` keeps at most `max_pools` of them and evicts the least
recently used. An evicted pool is closed (its idle keep-alive connections with it) as soon as none of its runs is
in flight, never under a running exchange; its tenant's next run opens a new pool. Until the evicted pools'
runs finish, more than `max_pools` pools can exist: at most one more per run in flight. All methods run on the
event loop thread, so no locking is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)


class Closable(Protocol):
    """What a pool is to `TenantPools`: something to hand out and, once, to close (an aiohttp ClientSession)."""

    async def close(self) -> None: ...


PoolT = TypeVar("PoolT", bound=Closable)


@dataclass(eq=False)
class _Entry(Generic[PoolT]):
    pool: PoolT
    in_flight: int = 0


class TenantPools(Generic[PoolT]):
    """At most `max_pools` pools made by `open_pool`, one per tenant, least recently used evicted first."""

    def __init__(self, open_pool: Callable[[], PoolT], max_pools: int) -> None:
        if max_pools < 1:
            raise ValueError("max_pools must be at least 1")
        self._open_pool = open_pool
        self._max_pools = max_pools
        self._entries: OrderedDict[str, _Entry[PoolT]] = OrderedDict()  # least recently used first
        self._evicted: set[_Entry[PoolT]] = set()  # out of `_entries`, closed when their last run ends
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def tenants(self) -> tuple[str, ...]:
        """The tenants that have a pool, least recently used first."""
        return tuple(self._entries)

    @contextlib.asynccontextmanager
    async def pool(self, tenant_id: str) -> AsyncIterator[PoolT]:
        """`tenant_id`'s pool (opened if it has none) for the duration of one run; it stays open until then."""
        entry = self._check_out(tenant_id)
        try:
            yield entry.pool
        finally:
            entry.in_flight -= 1
            if entry.in_flight == 0 and entry in self._evicted:
                self._evicted.discard(entry)
                self._close_soon(entry)

    async def close(self) -> None:
        """Close every pool, including those still serving a run (their runs fail); no pool is handed out after."""
        self._closed = True
        entries = [*self._entries.values(), *self._evicted]
        self._entries.clear()
        self._evicted.clear()
        for entry in entries:
            self._close_soon(entry)
        await asyncio.gather(*self._closing, return_exceptions=True)  # failures are logged as they happen

    def _check_out(self, tenant_id: str) -> _Entry[PoolT]:
        if self._closed:
            raise RuntimeError("the tenant pools are closed")
        entry = self._entries.get(tenant_id)
        if entry is None:
            entry = self._entries[tenant_id] = _Entry(self._open_pool())
        self._entries.move_to_end(tenant_id)
        entry.in_flight += 1
        self._evict_beyond_bound()
        return entry

    def _evict_beyond_bound(self) -> None:
        while len(self._entries) > self._max_pools:
            tenant_id, entry = self._entries.popitem(last=False)
            log.debug("tenant pool evicted", extra={"event": "pool.evicted", "tenant": tenant_id})
            if entry.in_flight:
                self._evicted.add(entry)
            else:
                self._close_soon(entry)

    def _close_soon(self, entry: _Entry[PoolT]) -> None:
        # Not awaited here: the caller is starting or ending a run, which should not wait for sockets to close.
        task = asyncio.create_task(entry.pool.close())
        self._closing.add(task)
        task.add_done_callback(self._closed_one)

    def _closed_one(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "closing a tenant pool failed",
                extra={"event": "pool.close_failed", "error": repr(task.exception())},
            )
