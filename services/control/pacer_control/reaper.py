"""The reapers: scheduler sessions whose heartbeats stopped are ended (their runs that never began go back to due),
and runs whose lease expired without a result are settled LOST (they may have reached their target)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from sqlalchemy.exc import SQLAlchemyError

from pacer_common.clock import Clock
from pacer_common.logs import first_line
from pacer_control.metrics import ControlMetrics
from pacer_control.pipeline import EndedSession, LostRun, Pipeline, missed_when_lost

log = logging.getLogger("pacer.control.reaper")
BATCH = 500
SESSION_SWEEP_S = 0.25  # how late after its TTL a dead scheduler's runs go back to due, at most


async def reap_forever(
    pipeline: Pipeline,
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
                lost = await loop.run_in_executor(pool, pipeline.reap_expired, clock.now(), BATCH)
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
    metrics.runs_lost(len(lost), [run.tenant_id for run in lost])
    metrics.runs_missed(missed_when_lost(lost))
    for run in lost:
        log.warning(
            "run lost: its lease expired before a result arrived",
            extra={"event": "run.lost", "run_id": run.run_id, "endpoint_id": run.endpoint_id, "tenant": run.tenant_id},
        )


async def end_sessions_forever(
    pipeline: Pipeline, clock: Clock, pool: Executor, ttl_s: float, metrics: ControlMetrics
) -> None:
    """Every quarter of the session TTL (at most SESSION_SWEEP_S), end the sessions whose scheduler stopped renewing
    them, until cancelled.

    The first pass waits one TTL: after a control plane restart, schedulers get that long to renew their sessions
    before any is judged dead by a silence that was the control plane's own.
    """
    loop = asyncio.get_running_loop()
    await asyncio.sleep(ttl_s)
    while True:
        try:
            ended = await loop.run_in_executor(pool, pipeline.end_expired_sessions, clock.now(), BATCH)
            for session in ended:
                _report_session(session, metrics)
        except SQLAlchemyError as error:
            log.error(
                "session reaper could not reach the database",
                extra={"event": "reaper.failed", "error": first_line(error)},
            )
        await asyncio.sleep(min(ttl_s / 4, SESSION_SWEEP_S))


def _report_session(session: EndedSession, metrics: ControlMetrics) -> None:
    metrics.session_ended(session.released)
    log.warning(
        "scheduler session ended: its heartbeats stopped",
        extra={
            "event": "session.ended",
            "session_id": session.session_id,
            "scheduler_id": session.scheduler_id,
            "released": session.released,
        },
    )
