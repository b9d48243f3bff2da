"""Bridges endpoint rows and the pure governor: builds its input, stores its plan."""

from __future__ import annotations

import logging
from datetime import datetime

from pacer_common import governor
from pacer_common.cron import CronError
from pacer_common.governor import Plan, Source
from pacer_control.models import Endpoint

log = logging.getLogger("pacer.control.schedule")


def baseline_of(endpoint: Endpoint) -> governor.Baseline:
    if endpoint.cron_expression is not None:
        return governor.CronBaseline(endpoint.cron_expression, endpoint.cron_timezone)
    assert endpoint.interval_ms is not None, "an endpoint has a cron or an interval baseline"
    return governor.IntervalBaseline(endpoint.interval_ms)


def state_of(endpoint: Endpoint) -> governor.EndpointState:
    """The governor's view of an endpoint row."""
    hint = None
    if endpoint.hint_interval_ms is not None and endpoint.hint_expires_at is not None:
        hint = governor.IntervalHint(endpoint.hint_interval_ms, endpoint.hint_expires_at)
    one_shot = None
    if endpoint.oneshot_at is not None and endpoint.oneshot_expires_at is not None:
        one_shot = governor.OneShot(endpoint.oneshot_at, endpoint.oneshot_expires_at)
    return governor.EndpointState(
        baseline=baseline_of(endpoint),
        anchor=endpoint.anchor_at,
        last_start=endpoint.last_started_at,
        failure_count=endpoint.failure_count,
        min_interval_ms=endpoint.min_interval_ms,
        max_interval_ms=endpoint.max_interval_ms,
        paused=endpoint.paused,
        paused_until=endpoint.paused_until,
        interval_hint=hint,
        one_shot=one_shot,
    )


def drop_stale_hints(endpoint: Endpoint, now: datetime) -> None:
    """Forget hints past their TTL and a timed pause that has ended: they no longer steer anything."""
    if endpoint.hint_expires_at is not None and endpoint.hint_expires_at <= now:
        endpoint.hint_interval_ms = None
        endpoint.hint_expires_at = None
    if endpoint.oneshot_expires_at is not None and endpoint.oneshot_expires_at <= now:
        clear_one_shot(endpoint)
    if endpoint.paused and endpoint.paused_until is not None and endpoint.paused_until <= now:
        endpoint.paused = False
        endpoint.paused_until = None


def clear_one_shot(endpoint: Endpoint) -> None:
    endpoint.oneshot_at = None
    endpoint.oneshot_expires_at = None


def replan(endpoint: Endpoint, now: datetime, *, live: bool = True) -> Plan:
    """Recompute and store the endpoint's next run and the slot it stands for; `live=False` (deleted, archived) means
    it never runs again. The plan's missed slots are the caller's to record (only settling a run misses slots).

    A stored cron expression that the cron rules of this release refuse (accepted by an older one) stops the
    endpoint, logged, instead of failing the transaction that re-plans it: UpdateEndpointConfig with a valid
    baseline starts it again.
    """
    try:
        # Planned before stale state is dropped: the governor ignores expired hints itself, and a pause that has just
        # ended tells it that the slots since the anchor were paused, not missed.
        plan = governor.plan(now, state_of(endpoint)) if live else Plan(None, Source.PAUSED)
    except CronError as error:
        log.error(
            "stored cron expression refused; endpoint stopped",
            extra={"event": "endpoint.cron_refused", "endpoint_id": endpoint.id, "reason": str(error)},
        )
        plan = Plan(None, Source.PAUSED)
    drop_stale_hints(endpoint, now)
    endpoint.next_run_at = plan.next_run_at
    endpoint.next_run_source = plan.source.value
    endpoint.next_slot_at = plan.slot_at
    return plan
