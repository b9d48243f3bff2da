"""Per-tenant pools: one pool per tenant, a bound with least-recently-used eviction, and no pool closed under a run."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest

from pacer_executor.pools import TenantPools


class FakePool:
    """Stands for a tenant's session: numbered in opening order, and says whether it was closed (and how often)."""

    _numbers = itertools.count(1)

    def __init__(self) -> None:
        self.number = next(self._numbers)
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1


async def closes_done() -> None:
    """Let the close tasks the pools started run (they need one turn of the event loop)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def take(pools: TenantPools[FakePool], tenant_id: str) -> FakePool:
    """The pool one run of `tenant_id` would get, the run over at once."""
    async with pools.pool(tenant_id) as pool:
        return pool


@pytest.mark.asyncio
async def test_each_tenant_gets_its_own_pool_and_keeps_it() -> None:
    pools = TenantPools(FakePool, max_pools=4)
    a1, b1, a2, b2 = [await take(pools, tenant) for tenant in ("a", "b", "a", "b")]
    assert a1 is a2
    assert b1 is b2
    assert a1 is not b1
    await pools.close()


@pytest.mark.asyncio
async def test_the_least_recently_used_pool_is_evicted_and_closed() -> None:
    pools = TenantPools(FakePool, max_pools=2)
    a, b = await take(pools, "a"), await take(pools, "b")
    await take(pools, "a")  # now b is the least recently used
    c = await take(pools, "c")
    await closes_done()

    assert pools.tenants == ("a", "c")
    assert (a.closes, b.closes, c.closes) == (0, 1, 0)
    assert await take(pools, "b") is not b  # b's next run opens a new pool, evicting a
    await closes_done()
    assert a.closes == 1
    await pools.close()


@pytest.mark.asyncio
async def test_a_pool_evicted_during_a_run_closes_only_when_its_runs_end() -> None:
    pools = TenantPools(FakePool, max_pools=1)
    async with contextlib.AsyncExitStack() as runs:
        a = await runs.enter_async_context(pools.pool("a"))
        also_a = await runs.enter_async_context(pools.pool("a"))
        assert also_a is a
        b = await take(pools, "b")  # evicts a, whose two runs are in flight
        await closes_done()
        assert pools.tenants == ("b",)
        assert a.closes == 0
        assert await take(pools, "a") not in (a, b)  # a's later runs do not use the evicted pool
    await closes_done()
    assert a.closes == 1
    await pools.close()


@pytest.mark.asyncio
async def test_close_closes_every_pool_once_even_with_runs_in_flight() -> None:
    pools = TenantPools(FakePool, max_pools=1)
    async with pools.pool("a") as a:
        b = await take(pools, "b")  # a evicted, its run still in flight
        await pools.close()
        assert (a.closes, b.closes) == (1, 1)
        with pytest.raises(RuntimeError, match="closed"):
            await take(pools, "c")
    await closes_done()
    assert a.closes == 1  # the run that ends afterwards does not close it again


@pytest.mark.asyncio
async def test_a_pool_that_fails_to_close_does_not_break_the_others() -> None:
    class Failing(FakePool):
        async def close(self) -> None:
            await super().close()
            raise OSError("socket already gone")

    made = iter([Failing(), FakePool()])
    pools = TenantPools(lambda: next(made), max_pools=2)
    failing, fine = await take(pools, "a"), await take(pools, "b")
    await pools.close()
    assert (failing.closes, fine.closes) == (1, 1)


def test_at_least_one_pool() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TenantPools(FakePool, max_pools=0)
