"""The demo's summary: what happened, checked against what the flash-sale scenario should do.

Pure functions over what was recorded. All times are simulated seconds; tolerances are stated in them too, wide
enough for real-time noise (process scheduling on a busy machine) and narrow enough to catch a wrong behaviour.
The expected values are those of the deterministic scenario test, tests/scenarios/test_flash_sale.py.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from examples.demo.clock import mmss
from examples.demo.scenario import AGENT_STEP_S, BY_NAME, PHASES, phase_at
from examples.demo.steering import OneShotRequest
from examples.flash_sale import ENDPOINTS
from pacer.control.v1 import control_service_pb2 as pb

GAP_TOLERANCE = 0.15  # a median gap within ±15% of the expected cadence
FIRE_TOLERANCE_S = 5.0  # a recovery or alert run reaches the shop this soon after it became due
# Runs per endpoint in the deterministic scenario, and how far real timing may move the count.
EXPECTED_RUNS = {
    "traffic-monitor": (71, 4),
    "order-health": (19, 1),
    "inventory-check": (13, 1),
    "slow-page-analyzer": (14, 2),
    "query-tracer": (10, 2),
    "cache-warm-up": (2, 0),
    "scale-workers": (1, 0),
    "ops-chat": (1, 0),
    "support-chat": (1, 0),
    "on-call-page": (1, 0),
}
MONITOR_GAP_S = {"baseline": 60, "surge": 20, "strain": 20, "critical": 20, "recovery": 60}
# Each one-shot endpoint's condition: the phase that brings it on, and how long it must then last.
TRIGGERS = {
    "cache-warm-up": ("strain", 0),
    "scale-workers": ("strain", 0),
    "ops-chat": ("critical", 0),
    "support-chat": ("critical", 0),
    "on-call-page": ("critical", 5 * 60),
}
COOLDOWN_S = {spec.name: spec.min_ms / 1000 for spec in ENDPOINTS if spec.tier in ("recovery", "alert")}
INTERVAL_S = {spec.name: spec.interval_ms / 1000 for spec in ENDPOINTS}


@dataclass(frozen=True)
class Check:
    """One line of the summary."""

    subject: str
    detail: str
    passed: bool


@dataclass(frozen=True)
class Record:
    """What the demo saw: hit times by endpoint, the agent's decisions and one-shot requests by endpoint."""

    hits: dict[str, list[float]]
    decisions: list[tuple[float, str]]
    one_shots: dict[str, list[OneShotRequest]]


def gaps(times: Sequence[float]) -> list[float]:
    """Differences between consecutive times."""
    return [b - a for a, b in itertools.pairwise(times)]


def within(value: float, expected: float, tolerance: float = GAP_TOLERANCE) -> bool:
    """True when `value` is within ±`tolerance` (a fraction) of `expected`."""
    return abs(value - expected) <= tolerance * expected


def detection_bound_s(phase_name: str) -> float:
    """How long after a phase starts the agent may act on it: one traffic-monitor gap of the phase before (the next
    health check sees it), one agent step, and slack."""
    index = next(i for i, p in enumerate(PHASES) if p.name == phase_name)
    return MONITOR_GAP_S[PHASES[max(0, index - 1)].name] + AGENT_STEP_S + 2 * FIRE_TOLERANCE_S


def plural(count: int, noun: str) -> str:
    """`1 run`, `2 runs`."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def decided(record: Record, text: str) -> list[float]:
    """When the agent made decisions whose text starts with `text`."""
    return [sim_s for sim_s, what in record.decisions if what.startswith(text)]


def runs_per_endpoint(record: Record) -> list[Check]:
    """One line per endpoint: its runs against the scenario's count."""
    checks = []
    for name, (expected, slack) in EXPECTED_RUNS.items():
        count = len(record.hits.get(name, []))
        allowed = f"expected {expected}" + (f" ± {slack}" if slack else "")
        checks.append(Check(f"runs {name}", f"{plural(count, 'run')}, {allowed}", abs(count - expected) <= slack))
    return checks


def monitor_cadence(record: Record) -> list[Check]:
    """The traffic monitor's median gap in each phase (a gap belongs to the phase its first run saw)."""
    times = record.hits.get("traffic-monitor", [])
    checks = []
    for phase in PHASES:
        phase_gaps = [b - a for a, b in itertools.pairwise(times) if phase_at(a) is phase]
        expected = MONITOR_GAP_S[phase.name]
        if not phase_gaps:
            checks.append(Check(f"cadence {phase.name}", f"no gaps measured, expected ~{expected} s", False))
            continue
        median = statistics.median(phase_gaps)
        detail = f"traffic-monitor median gap {median:.1f} s over {len(phase_gaps)} gaps, expected {expected} s ± 15%"
        checks.append(Check(f"cadence {phase.name}", detail, within(median, expected)))
    return checks


def steering(record: Record) -> list[Check]:
    """The traffic monitor is tightened once after the surge begins and relaxed once after recovery begins."""
    return [
        _once_after(record, "traffic-monitor: tighten", "tighten", "surge"),
        _once_after(record, "traffic-monitor: back to baseline", "relax", "recovery"),
    ]


def _once_after(record: Record, text: str, label: str, phase_name: str) -> Check:
    times = decided(record, text)
    start_s = BY_NAME[phase_name].starts_s
    bound_s = detection_bound_s(phase_name)
    ok = len(times) == 1 and 0 <= times[0] - start_s <= bound_s
    shown = ", ".join(mmss(t) for t in times) or "never"
    detail = f"at {shown}; once, within {bound_s:.0f} s of the {phase_name} ({mmss(start_s)})"
    return Check(f"steer {label}", detail, ok)


def investigations(record: Record) -> list[Check]:
    """Each investigation is activated once at the strain, paused once at the recovery, runs only in between at its
    baseline interval."""
    return [_investigation(record, name) for name in ("slow-page-analyzer", "query-tracer")]


def _investigation(record: Record, name: str) -> Check:
    activated = decided(record, f"{name}: activate")
    paused = decided(record, f"{name}: pause")
    times = record.hits.get(name, [])
    if len(activated) != 1 or len(paused) != 1 or not times:
        detail = f"activated {len(activated)}x, paused {len(paused)}x, {len(times)} runs; expected once, once, some"
        return Check(f"active {name}", detail, False)
    on_s, off_s = activated[0], paused[0]
    outside = [t for t in times if not on_s <= t <= off_s + FIRE_TOLERANCE_S]
    median = statistics.median(gaps(times)) if len(times) > 1 else 0.0
    ok = (
        0 <= on_s - BY_NAME["strain"].starts_s <= detection_bound_s("strain")
        and 0 <= off_s - BY_NAME["recovery"].starts_s <= detection_bound_s("recovery")
        and not outside
        and within(median, INTERVAL_S[name])
    )
    detail = (
        f"active {mmss(on_s)}-{mmss(off_s)} (strain to recovery), {len(times)} runs, "
        f"median gap {median:.1f} s (expected {INTERVAL_S[name]:.0f}), {len(outside)} outside"
    )
    return Check(f"active {name}", detail, ok)


def one_shots(record: Record) -> list[Check]:
    """Each recovery and alert fires soon after its condition, within a few seconds of being due, and never again
    within its cooldown; the on-call page at most once."""
    checks = [_one_shot(record, name) for name in TRIGGERS]
    pages = record.hits.get("on-call-page", [])
    checks.append(Check("on-call at most once", f"paged {plural(len(pages), 'time')}", len(pages) <= 1))
    return checks


def _one_shot(record: Record, name: str) -> Check:
    times = record.hits.get(name, [])
    cooldown_s = COOLDOWN_S[name]
    condition_s, bound_s = condition_window(name)
    lateness, problems = _firing(times, record.one_shots.get(name, []), cooldown_s)
    if times and not 0 <= times[0] - condition_s <= bound_s:
        problems.append(f"first fire not within {bound_s:.0f} s of {mmss(condition_s)}")
    if not times:
        problems.append("never fired")
    shown = ", ".join(mmss(t) for t in times) or "-"
    late = f", at most {max(lateness):.1f} s after due" if lateness else ""
    detail = f"fired {shown}{late} (condition from {mmss(condition_s)}, cooldown {cooldown_s / 60:.0f} min)"
    return Check(f"fire {name}", "; ".join([detail, *problems]), not problems)


def condition_window(name: str) -> tuple[float, float]:
    """When a one-shot endpoint's condition starts to hold (simulated seconds) and how soon after that it should
    fire: the agent's detection bound, plus one more agent step when the condition must last a while (the agent
    notices that only at a step)."""
    phase_name, lasting_s = TRIGGERS[name]
    bound_s = detection_bound_s(phase_name) + (AGENT_STEP_S if lasting_s else 0.0)
    return BY_NAME[phase_name].starts_s + lasting_s, bound_s


def _firing(
    times: Sequence[float], asked: Sequence[OneShotRequest], cooldown_s: float
) -> tuple[list[float], list[str]]:
    """How late each fire was after its trigger (the latest request before it, or the end of the cooldown after the
    fire before it), and what is wrong: a fire too far from its trigger, unasked, or within the cooldown."""
    lateness: list[float] = []
    problems = []
    previous_s: float | None = None
    for fire_s in times:
        requests = [r.asked_s for r in asked if r.asked_s <= fire_s + FIRE_TOLERANCE_S]
        if previous_s is not None and fire_s - previous_s < cooldown_s - FIRE_TOLERANCE_S:
            problems.append(f"{mmss(fire_s)} within the cooldown")
        if not requests:
            problems.append(f"{mmss(fire_s)} unasked")
        else:
            due_s = max(requests[-1], previous_s + cooldown_s if previous_s is not None else 0.0)
            lateness.append(fire_s - due_s)
            if abs(fire_s - due_s) > FIRE_TOLERANCE_S:
                problems.append(f"{mmss(fire_s)} is {fire_s - due_s:+.1f} s from its trigger at {mmss(due_s)}")
        previous_s = fire_s
    return lateness, problems


def pacer_records(received: Sequence[str], statuses: dict[str, str]) -> Check:
    """Pacer's history agrees with the shop: every run the shop received is recorded as SUCCESS, and no run failed
    (runs still RUNNING at the end were claimed for after it)."""
    unrecorded = [run_id for run_id in received if statuses.get(run_id) != "SUCCESS"]
    failed = [run_id for run_id, status in statuses.items() if status not in ("SUCCESS", "RUNNING")]
    detail = (
        f"{len(received)} runs received by the shop, {len(statuses)} in Pacer's history; "
        f"{len(unrecorded)} received but not recorded SUCCESS, {len(failed)} failed"
    )
    return Check("run history", detail, not unrecorded and not failed)


def agent_steps(steps: int, errors: Sequence[str], who: str = "agent") -> Check:
    """Every step of the agent (or of the policy watcher) went through: no RPC of the public API failed."""
    detail = f"{plural(steps, 'step')}, {len(errors)} failed" + (f" ({', '.join(errors[:3])})" if errors else "")
    return Check(f"{who} steps", detail, steps > 0 and not errors)


def policy_outcomes(counts: Sequence[pb.PolicyCount]) -> Check:
    """The rules fired, and none failed (a condition or an action refused)."""
    fired = sum(count.fired for count in counts)
    skipped = sum(count.skipped_cooldown for count in counts)
    errors = [count.rule for count in counts if count.errors]
    detail = f"{plural(fired, 'firing')}, {skipped} skipped in a cooldown, {len(errors)} rules with errors"
    return Check("rules", detail + (f" ({', '.join(errors)})" if errors else ""), fired > 0 and not errors)


def clean_stop(exit_codes: dict[str, int]) -> Check:
    """Every service exited 0 after SIGTERM."""
    shown = ", ".join(f"{name} {code}" for name, code in exit_codes.items())
    return Check("clean stop", f"exit codes: {shown}", bool(exit_codes) and not any(exit_codes.values()))


def evaluate(record: Record) -> list[Check]:
    """Every behavioural check, in summary order."""
    return [
        *runs_per_endpoint(record),
        *monitor_cadence(record),
        *steering(record),
        *investigations(record),
        *one_shots(record),
    ]
