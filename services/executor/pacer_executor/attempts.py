"""A run's attempts: the first HTTP call, and the retries its endpoint's policy allows (`pacer_common.retries`).

A retry follows only an attempt that may pass if tried again (timeout, no connection, 502/503/504), after the
policy's wait, and only if it can end before the run's lease does: a run is never still trying when the control plane
settles it LOST. Draining stops the retries (the wait is cut short): the run reports the attempts it made. Every
attempt carries the same run id; the outcome is the last attempt's, timed from the first one's start, listing all.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime, timedelta

from pacer_common.clock import Clock
from pacer_common.retries import Attempt
from pacer_executor.metrics import ExecutorMetrics
from pacer_executor.runner import Outcome, Runner, WorkItem

log = logging.getLogger("pacer.executor.attempts")


async def perform(
    runner: Runner, item: WorkItem, clock: Clock, stopping: asyncio.Event, metrics: ExecutorMetrics
) -> Outcome:
    """Run `item`, retrying as its policy allows until an attempt succeeds or fails for good, the attempts run out,
    the next one could not end within the lease, or `stopping` is set."""
    outcome = await runner.run(item)
    if not item.retry.retries:
        return outcome
    made = [outcome]
    for number in range(2, item.retry.max_attempts + 1):
        if not outcome.transient or stopping.is_set():
            break
        wait_s = item.retry.delay_ms(number) / 1000
        if not _ends_within_lease(item, clock.now(), wait_s):
            log.info("no retry: it could not end before the lease", extra=_fields("run.retry_skipped", item, number))
            break
        if await _stopped_while_waiting(stopping, wait_s):
            break
        metrics.retries.inc()
        outcome = await runner.run(replace(item, attempt=number))
        made.append(outcome)
    return _run_outcome(made, item.retry.max_attempts)


def _ends_within_lease(item: WorkItem, now: datetime, wait_s: float) -> bool:
    if item.lease_expires_at is None:
        return True
    return now + timedelta(seconds=wait_s, milliseconds=item.timeout_ms) <= item.lease_expires_at


async def _stopped_while_waiting(stopping: asyncio.Event, wait_s: float) -> bool:
    """Wait `wait_s`; True when `stopping` was set before it passed."""
    try:
        await asyncio.wait_for(stopping.wait(), wait_s)
    except TimeoutError:
        return False
    return True


def _run_outcome(made: list[Outcome], max_attempts: int) -> Outcome:
    """The run's outcome from its attempts: the last one's, from the first one's start, with every attempt listed."""
    first, last = made[0], made[-1]
    if len(made) == 1:
        return last
    attempts = tuple(
        Attempt(
            number=number,
            status=made_one.status,
            started_at=made_one.started_at if made_one.status != "BLOCKED" else None,
            duration_ms=made_one.duration_ms,
            http_status=made_one.http_status,
            error_message=made_one.error_message,
        )
        for number, made_one in enumerate(made, start=1)
    )
    error_message = last.error_message
    if last.status != "SUCCESS":
        error_message = f"{error_message} (attempt {len(made)} of {max_attempts})"
    elapsed_ms = round((last.finished_at - first.started_at).total_seconds() * 1000)
    return replace(
        last, started_at=first.started_at, duration_ms=elapsed_ms, error_message=error_message, attempts=attempts
    )


def _fields(event: str, item: WorkItem, number: int) -> dict[str, object]:
    return {"event": event, "run_id": item.run_id, "endpoint_id": item.endpoint_id, "attempt": number}
