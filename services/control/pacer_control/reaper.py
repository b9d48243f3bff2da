"""Finds runs whose lease expired without a result, marks them LOST and re-plans their endpoints."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from sqlalchemy.exc import SQLAlchemyError

from pacer_common.clock import Clock
from pacer_common.logs import first_line
from pacer_control.metrics import ControlMetrics
from pacer_control.repository import LostRun, Repository

log = logging.getLogger("pacer.control.reaper")
BATCH = 500


async def reap_forever(
    repository: Repository,
    clock: Clock,
    pool: Executor,
    interval_s: float,
    first_delay_s: float,
    metrics: ControlMetrics,
) -> None:
    """Every `interval_s`, settle expired leases as LOST until cancelled; database trouble is logged, not fatal.

    The first pass waits `first_delay_s` (the lease grace): after a control restart, schedulers get that long to
    deliver the results they buffered while it was down before their runs can be declared lost. Each lost run is
    logged (`run.lost`) and counted in `metrics`.
    """
    loop = asyncio.get_running_loop()
    await asyncio.sleep(first_delay_s)
    while True:
        try:
            while True:  # a full batch means more may be waiting
                lost = await loop.run_in_executor(pool, repository.reap_expired, clock.now(), BATCH)
                _report(lost, metrics)
                if len(lost) < BATCH:
                    break
        except SQLAlchemyError as error:
            # The first line says what failed; the rest of a driver's message (the statement) adds nothing here.
            log.error(
                "reaper could not reach the database",
                extra={"event": "reaper.failed", "error": first_line(error)},
            )
        await asyncio.sleep(interval_s)


def _report(lost: list[LostRun], metrics: ControlMetrics) -> None:
    metrics.runs_lost(len(lost))
    for run in lost:
        log.warning(
            "run lost: its lease expired before a result arrived",
            extra={"event": "run.lost", "run_id": run.run_id, "endpoint_id": run.endpoint_id, "tenant": run.tenant_id},
        )
