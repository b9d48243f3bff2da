"""Finds runs whose lease expired without a result, marks them LOST and re-plans their endpoints."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from sqlalchemy.exc import SQLAlchemyError

from pacer_common.clock import Clock
from pacer_control.repository import Repository

log = logging.getLogger("pacer.control.reaper")
BATCH = 500


async def reap_forever(
    repository: Repository, clock: Clock, pool: Executor, interval_s: float, first_delay_s: float
) -> None:
    """Every `interval_s`, settle expired leases as LOST until cancelled; database trouble is logged, not fatal.

    The first pass waits `first_delay_s` (the lease grace): after a control restart, schedulers get that long to
    deliver the results they buffered while it was down before their runs can be declared lost.
    """
    loop = asyncio.get_running_loop()
    await asyncio.sleep(first_delay_s)
    while True:
        try:
            lost = BATCH
            while lost == BATCH:
                lost = await loop.run_in_executor(pool, repository.reap_expired, clock.now(), BATCH)
                if lost:
                    log.warning("runs lost", extra={"event": "run.lost", "count": lost})
        except SQLAlchemyError:
            log.exception("reaper could not reach the database", extra={"event": "reaper.failed"})
        await asyncio.sleep(interval_s)
