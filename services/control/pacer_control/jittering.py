"""Checks of an endpoint's jitter against its baseline; the rule itself is `pacer_common.jitter`."""

from __future__ import annotations

from datetime import datetime

from pacer_common import jitter
from pacer_common.errors import FieldViolation, InvalidArgument
from pacer_common.governor import Baseline, CronBaseline, IntervalBaseline
from pacer_control.validation import BaselineInput, Checks


def baseline_of(baseline: BaselineInput | None) -> Baseline | None:
    """The baseline a request sets, None when it sets none or not exactly one kind (its own check says so)."""
    if baseline is None or (baseline.cron_expression is None) == (baseline.interval_ms is None):
        return None
    if baseline.interval_ms is not None:
        return IntervalBaseline(baseline.interval_ms)
    return CronBaseline(baseline.cron_expression or "", baseline.cron_timezone)


def check(checks: Checks, jitter_ms: int, baseline: Baseline | None, now: datetime, field: str = "jitter_ms") -> None:
    problem = jitter.problem(jitter_ms, baseline, now)
    if problem is not None:
        checks.fail(field, problem)


def require_fits(jitter_ms: int, baseline: Baseline, now: datetime, field: str = "jitter_ms") -> None:
    """InvalidArgument naming `field` when an endpoint's jitter and its (new) baseline do not fit together."""
    problem = jitter.problem(jitter_ms, baseline, now)
    if problem is not None:
        raise InvalidArgument([FieldViolation(field, problem)])
