"""Run retention: finished runs older than their tenant's retention are deleted, a small batch per transaction.

At 1,000 runs/s the runs table gains 86 million rows a day; without pruning it grows until the disk fills and every
read of the history slows down. A run's age is its `scheduled_for` (a finished run ended at most its timeout plus
the lease grace after it), so each batch walks `ix_runs_tenant_scheduled` from the oldest row: the delete touches
only the rows it removes. RUNNING runs are never deleted, whatever their age. Rows another transaction holds
(a result being recorded) are skipped on PostgreSQL rather than waited for, and each transaction is short, so
pruning never holds up claims or results: at worst a run stays one sweep longer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, delete, select
from sqlalchemy.exc import SQLAlchemyError

from pacer_common.clock import Clock
from pacer_common.logs import first_line
from pacer_common.runs import RunStatus
from pacer_control.metrics import ControlMetrics
from pacer_control.models import PolicyFiring, Tenant, TenantQuota
from pacer_control.settings import ControlSettings
from pacer_control.store import RUNS, Store

log = logging.getLogger("pacer.control.retention")
FIRINGS: Table = PolicyFiring.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class RetentionPolicy:
    """How long runs are kept and how gently they are deleted.

    `default_days` applies to tenants without their own `run_retention_days` (0: kept for ever); each transaction
    deletes at most `batch` runs, `pause_s` apart; a sweep over every tenant starts every `sweep_s`.
    """

    default_days: int = 30
    batch: int = 2000
    pause_s: float = 0.5
    sweep_s: float = 60.0


def retention_policy(settings: ControlSettings) -> RetentionPolicy:
    """The policy the PACER_RUN_RETENTION_* settings ask for."""
    return RetentionPolicy(
        default_days=settings.run_retention_days,
        batch=max(1, settings.run_retention_batch),
        pause_s=max(0, settings.run_retention_pause_ms) / 1000,
        sweep_s=max(1, settings.run_retention_sweep_s),
    )


@dataclass(frozen=True)
class Sweep:
    """What one sweep deleted: runs in all, transactions, and the tenants that lost some."""

    pruned: int = 0
    batches: int = 0
    tenants: int = 0


class RunHistory(Store):
    """The SQL of retention: whose runs are kept how long, and one bounded delete."""

    def retention_days(self, default_days: int) -> dict[str, int]:
        """Every tenant's retention in days: its own `run_retention_days` where set, else `default_days`."""
        query = select(Tenant.id, TenantQuota.run_retention_days).outerjoin(
            TenantQuota, TenantQuota.tenant_id == Tenant.id
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return {row.id: default_days if row.run_retention_days is None else row.run_retention_days for row in rows}

    def prune_batch(self, tenant_id: str, before: datetime, limit: int) -> int:
        """Delete up to `limit` of the tenant's finished runs scheduled before `before`, oldest first, in one
        transaction; returns how many went. Rows locked by another transaction are skipped (PostgreSQL)."""
        oldest = (
            select(RUNS.c.id)
            .where(RUNS.c.tenant_id == tenant_id, RUNS.c.scheduled_for < before, RUNS.c.status != RunStatus.RUNNING)
            .order_by(RUNS.c.scheduled_for)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._engine.begin() as connection:
            ids = list(connection.scalars(oldest))
            if not ids:
                return 0
            # The rules' outcomes on these runs go with them (GetRunDetails shows them, health counts them).
            connection.execute(delete(FIRINGS).where(FIRINGS.c.run_id.in_(ids)))
            done = connection.execute(delete(RUNS).where(RUNS.c.id.in_(ids)))
            return int(done.rowcount)


async def prune_forever(
    history: RunHistory, clock: Clock, pool: Executor, policy: RetentionPolicy, metrics: ControlMetrics
) -> None:
    """Every `policy.sweep_s` (the first one sweep after start), prune every tenant's expired runs, until cancelled;
    database trouble is logged, not fatal. Each sweep logs `runs.pruned` with what it deleted."""
    while True:
        await asyncio.sleep(policy.sweep_s)
        started = time.perf_counter()
        try:
            swept = await sweep(history, clock, pool, policy, metrics)
        except SQLAlchemyError as error:
            log.error(
                "run retention could not reach the database",
                extra={"event": "retention.failed", "error": first_line(error)},
            )
            continue
        _report(swept, time.perf_counter() - started)


async def sweep(
    history: RunHistory, clock: Clock, pool: Executor, policy: RetentionPolicy, metrics: ControlMetrics
) -> Sweep:
    """One pass over every tenant: delete its expired runs batch by batch until a batch comes back short."""
    loop = asyncio.get_running_loop()
    days_by_tenant = await loop.run_in_executor(pool, history.retention_days, policy.default_days)
    now, total = clock.now(), Sweep()
    for tenant_id, days in sorted(days_by_tenant.items()):
        if days > 0:
            pruned, batches = await _prune_tenant(history, pool, policy, metrics, tenant_id, now - timedelta(days=days))
            total = Sweep(total.pruned + pruned, total.batches + batches, total.tenants + (pruned > 0))
    return total


async def _prune_tenant(
    history: RunHistory,
    pool: Executor,
    policy: RetentionPolicy,
    metrics: ControlMetrics,
    tenant_id: str,
    before: datetime,
) -> tuple[int, int]:
    """(runs deleted, transactions) for one tenant; the pause between batches leaves the database to the hot path."""
    loop = asyncio.get_running_loop()
    pruned = batches = 0
    while True:
        count = await loop.run_in_executor(pool, history.prune_batch, tenant_id, before, policy.batch)
        metrics.runs_pruned(count)
        pruned, batches = pruned + count, batches + 1
        if count < policy.batch:
            return pruned, batches
        await asyncio.sleep(policy.pause_s)


def _report(swept: Sweep, elapsed_s: float) -> None:
    log.info(
        "old runs pruned",
        extra={
            "event": "runs.pruned",
            "pruned": swept.pruned,
            "batches": swept.batches,
            "tenants": swept.tenants,
            "seconds": round(elapsed_s, 3),
        },
    )
