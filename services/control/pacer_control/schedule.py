"""Bridges endpoint rows and the pure schedule transitions: a row becomes a `ScheduleState`, a new state goes back.

A row here is an ORM `Endpoint` or a Core row of the `endpoints` table: both name their values after the columns.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Final

from pacer_common import governor, transitions
from pacer_common.governor import Plan, Source
from pacer_common.runs import RunStatus
from pacer_common.transitions import Replanned, ScheduleState
from pacer_control.models import Endpoint

log = logging.getLogger("pacer.control.schedule")

# The columns a ScheduleState mirrors, which the transitions may change.
SCHEDULE_COLUMNS: Final = (
    "anchor_at",
    "last_started_at",
    "last_status",
    "failure_count",
    "paused",
    "paused_until",
    "hint_interval_ms",
    "hint_expires_at",
    "oneshot_at",
    "oneshot_expires_at",
    "next_run_at",
    "next_run_source",
    "next_slot_at",
    "missed_slots",
    "last_missed_at",
    "lease_run_id",
    "lease_expires_at",
)


def baseline_of(row: Any) -> governor.Baseline:
    if row.cron_expression is not None:
        return governor.CronBaseline(row.cron_expression, row.cron_timezone)
    assert row.interval_ms is not None, "an endpoint has a cron or an interval baseline"
    return governor.IntervalBaseline(row.interval_ms)


def state_of(row: Any, *, live: bool = True) -> ScheduleState:
    """The schedule state of an endpoint row; `live=False` for one deleted or in an archived job."""
    values = {name: getattr(row, name) for name in SCHEDULE_COLUMNS}
    values["last_status"] = RunStatus(values["last_status"]) if values["last_status"] is not None else None
    # An ORM endpoint not yet inserted has no column defaults applied: it has not been planned nor missed anything.
    values["next_run_source"] = Source(values["next_run_source"] or Source.PAUSED)
    values["missed_slots"] = values["missed_slots"] or 0
    return ScheduleState(
        baseline=baseline_of(row),
        live=live,
        min_interval_ms=row.min_interval_ms,
        max_interval_ms=row.max_interval_ms,
        **values,
    )


def column_values(state: ScheduleState, columns: tuple[str, ...] = SCHEDULE_COLUMNS) -> dict[str, Any]:
    """The values of `columns` (schedule columns) a state stores."""
    return {name: getattr(state, name) for name in columns}


def log_refused(endpoint_id: str, replanned: Replanned) -> None:
    """Log a stored cron expression the re-plan refused (the endpoint is stopped until its baseline is set again)."""
    if replanned.cron_refused is not None:
        log.error(
            "stored cron expression refused; endpoint stopped",
            extra={"event": "endpoint.cron_refused", "endpoint_id": endpoint_id, "reason": replanned.cron_refused},
        )


def store(endpoint: Endpoint, replanned: Replanned) -> Plan:
    """Write a replanned state onto the ORM endpoint; a refused cron expression is logged. Returns the plan."""
    log_refused(endpoint.id, replanned)
    for name, value in column_values(replanned.state).items():
        # Only what changed: an endpoint not yet inserted keeps the column defaults of what it has never set.
        if getattr(endpoint, name) != value:
            setattr(endpoint, name, value)
    return replanned.plan


def replan(endpoint: Endpoint, now: datetime, *, live: bool = True) -> Plan:
    """Recompute and store the endpoint's next run and the slot it stands for (see `transitions.replan`); `live=False`
    (deleted, archived) means it never runs again. The plan's missed slots are the caller's to record."""
    return store(endpoint, transitions.replan(state_of(endpoint, live=live), now))
