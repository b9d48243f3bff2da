"""One measured window (a step) of a benchmark, the rule for "sustained", and the JSON file a run leaves behind so
another run (the peer's) can be compared with it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.arrivals import TargetFigures

# A rate is sustained when nearly every due slot ran, and ran on time, as the target saw it.
MIN_EXECUTED_SHARE = 0.995
MAX_P99_MS = 100.0


@dataclass(frozen=True)
class Records:
    """What Pacer's own run records say about the window (the executor's clock): runs due in it, and lost runs."""

    runs_per_s: float
    succeeded_share: float
    lateness_p50_ms: float
    lateness_p95_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    lost_status: int  # runs Pacer recorded as LOST
    never_arrived: int  # runs Pacer recorded as begun whose run id never reached the target


@dataclass(frozen=True)
class Step:
    """One window at one offered rate: the target's figures, Pacer's records (None for the peer), CPU per run by
    process (ms), and peak RSS by process (MiB)."""

    offered_per_s: float
    window_s: float
    target: TargetFigures
    cpu_ms_per_run: dict[str, float]
    peak_rss_mib: dict[str, float]
    records: Records | None = None

    @property
    def sustained(self) -> bool:
        return is_sustained(self.target)


def is_sustained(figures: TargetFigures) -> bool:
    """>= 99.5 % of due slots executed and the target's p99 lateness under 100 ms."""
    return figures.executed_share >= MIN_EXECUTED_SHARE and figures.lateness_p99_ms < MAX_P99_MS


def highest_sustained(steps: list[Step]) -> Step | None:
    """The highest-rate step of the ladder below its first unsustained step (None when the first one failed)."""
    best = None
    for step in sorted(steps, key=lambda s: s.offered_per_s):
        if not step.sustained:
            break
        best = step
    return best


def next_rate(rates: list[float], steps: list[Step], through_per_s: float) -> float | None:
    """The next rate of the ladder to measure, or None when done: after a failed step, only the rates up to
    `through_per_s` (so the comparison rate is always measured, even by a system that failed below it)."""
    done = {step.offered_per_s for step in steps}
    failed = any(not step.sustained for step in steps)
    for rate in rates:
        if rate not in done:
            return None if failed and rate > through_per_s else rate
    return None


@dataclass
class RunResult:
    """Everything one benchmark run measured, as written to `<out>/result.json`."""

    system: str  # "pacer" or "apscheduler"
    store: str  # "postgresql", "sqlite", "memory"
    schedulers: int
    executors: int
    load_before: list[float]
    steps: list[Step] = field(default_factory=list)

    def sustained_per_s(self) -> float | None:
        best = highest_sustained(self.steps)
        return best.offered_per_s if best else None

    def at_rate(self, rate: float) -> Step | None:
        return next((step for step in self.steps if step.offered_per_s == rate), None)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_finite(asdict(self)), indent=2))


def load(path: Path) -> RunResult:
    """A result.json written by `RunResult.save`."""
    raw = json.loads(path.read_text())
    steps = [_step(step) for step in raw.pop("steps")]
    return RunResult(**raw, steps=steps)


def _step(raw: dict[str, Any]) -> Step:
    records = raw.pop("records")
    target = TargetFigures(**_nan(raw.pop("target")))
    return Step(**raw, target=target, records=Records(**_nan(records)) if records else None)


def _nan(raw: dict[str, Any]) -> dict[str, Any]:
    """null back to NaN (an unmeasured figure)."""
    return {k: math.nan if v is None else v for k, v in raw.items()}


def _finite(value: Any) -> Any:
    """NaN as null, so the file is plain JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
