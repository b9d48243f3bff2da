"""What a fault costs, measured from both ends: the calls a recording target saw, and the run rows (read from the
database) and missed-slot counts (SummarizeEndpointHealth) the control plane keeps. Pure functions over `Evidence`
(one fault's window), the readers that gather it, and a CPU meter over /proc.

A window is: `began_s` (steady state starts), `at_s` (the fault), `ended_s` (measuring stops). Times are seconds
since the epoch (the scheduled times are wall-clock times).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import Client
from tests.support.recording_target import Arrival

MISSED_FIELD = "missed_slots"
LAST_MISSED_FIELD = "last_missed_at"
# Statuses that say a run may have reached its target (LOST: its outcome is unknown); RUNNING is not settled yet.
REACHED = frozenset({"SUCCESS", "FAILURE", "TIMEOUT", "LOST"})
FAILED = frozenset({"FAILURE", "TIMEOUT", "LOST", "BLOCKED"})  # count a failure: the next slots back off
ON_PHASE_CALLS = 3  # at least one of an endpoint's last calls of the window is at its own phase
PHASE_HISTORY_S = 20.0
ON_GRID_S = 0.002  # scheduled times travel with millisecond precision in X-Pacer-Scheduled-For
# Runs scheduled this close to the window's end are left out of the checks on rows: they may not be claimed or
# finished yet. Read the rows after the window ends and the target's calls after the rows, and both agree on the rest.
SETTLING_S = 2.0
# A missed slot is counted when its coalesced run is planned or settled, a little after that run's scheduled time.
MISSED_SLACK_S = 5.0


@dataclass(frozen=True)
class RunRow:
    run_id: str
    endpoint_id: str
    scheduled_for_s: float
    status: str  # RunStatus name without its prefix: SUCCESS, LOST, RUNNING, ...


@dataclass
class Fault:
    """One fault's window, and what the checks allow for it."""

    name: str
    began_s: float = math.nan
    at_s: float = math.nan
    ended_s: float = math.nan
    silence_limit_s: float = math.nan
    executor_died: bool = False  # only then may a run be LOST: the executor that held it is gone
    outage_s: float | None = None  # control plane or database: from the fault until it answered again
    answer_s: float = 0.0  # how long the target takes to answer: calls that long before the fault were in flight
    exit_code: int | None = None  # of a service stopped with SIGTERM: 0 is a clean stop
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MissedSlots:
    """Per endpoint: SummarizeEndpointHealth's missed-slot count and last missed time (None: no such field)."""

    counts: dict[str, int] | None
    last_at_s: dict[str, float | None]
    read_from_s: float  # the reading takes a while: missed slots may be counted while it runs
    read_until_s: float


@dataclass(frozen=True)
class Evidence:
    fault: Fault
    interval_s: float
    endpoint_ids: Sequence[str]
    arrivals: Sequence[Arrival]  # every call so far
    rows: Sequence[RunRow]  # every run row scheduled from a while before the window
    missed_before: MissedSlots
    missed_after: MissedSlots


@dataclass(frozen=True)
class Figures:
    name: str
    recovery_s: float
    lost: int
    lost_reached: int  # of those, runs the target did get
    doubled: int
    stalled: int
    worst_silence_s: float
    late_before_ms: tuple[float, float]  # p50, p99
    late_after_ms: tuple[float, float]
    missed: int | None
    phase_buckets: tuple[int, int]  # distinct 10 ms phase buckets across endpoints, before and after
    off_phase: int
    unaccounted: int
    backoff: int
    outage_s: float | None
    notes: tuple[str, ...]

    def line(self) -> str:
        outage = "" if self.outage_s is None else f" outage={self.outage_s:.1f}s"
        missed = "n/a" if self.missed is None else str(self.missed)
        text = (
            f"[fault] {self.name}:{outage} recovery={self.recovery_s:.1f}s"
            f" lost={self.lost}(reached={self.lost_reached}) doubled={self.doubled}"
            f" stalled={self.stalled} worst_silence={self.worst_silence_s:.1f}s"
            f" late_before_p50/p99={self.late_before_ms[0]:.0f}/{self.late_before_ms[1]:.0f}ms"
            f" late_after_p50/p99={self.late_after_ms[0]:.0f}/{self.late_after_ms[1]:.0f}ms"
            f" missed={missed} backoff_slots={self.backoff} unaccounted_slots={self.unaccounted}"
            f" phase_buckets={self.phase_buckets[0]}->{self.phase_buckets[1]} off_phase={self.off_phase}"
        )
        return text + "".join(f" {note}" for note in self.notes)


# --- reading the evidence ----------------------------------------------------------------------------------------


def _epoch_s(stamp: object) -> float:
    return stamp.seconds + stamp.nanos / 1e9  # type: ignore[attr-defined, no-any-return]


def run_rows(database_url: str, since_s: float) -> list[RunRow]:
    """Every run row scheduled at or after `since_s`, read from the database in one query (the API pages by
    endpoint, and a fault's window has thousands of rows)."""
    query = (
        "SELECT id, endpoint_id, EXTRACT(EPOCH FROM scheduled_for)::float8, status FROM runs"
        " WHERE scheduled_for >= to_timestamp(%s)"
    )
    with psycopg.connect(database_url, connect_timeout=10) as connection:
        return [RunRow(*row) for row in connection.execute(query, (since_s,)).fetchall()]


def missed_slots(client: Client, endpoint_ids: Sequence[str]) -> MissedSlots:
    """Each endpoint's missed-slot figures from SummarizeEndpointHealth, read only if the response has them."""
    fields = pb.SummarizeEndpointHealthResponse.DESCRIPTOR.fields_by_name
    read_from_s = time.time()
    if MISSED_FIELD not in fields:
        return MissedSlots(None, {}, read_from_s, read_from_s)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda e: client.SummarizeEndpointHealth(_health_request(e)), endpoint_ids))
    counts = {e: int(getattr(a, MISSED_FIELD)) for e, a in zip(endpoint_ids, answers, strict=True)}
    last_at: dict[str, float | None] = dict.fromkeys(endpoint_ids)
    if LAST_MISSED_FIELD in fields:
        for endpoint_id, answer in zip(endpoint_ids, answers, strict=True):
            if answer.HasField(LAST_MISSED_FIELD):
                last_at[endpoint_id] = _epoch_s(getattr(answer, LAST_MISSED_FIELD))
    return MissedSlots(counts, last_at, read_from_s, time.time())


def _health_request(endpoint_id: str) -> pb.SummarizeEndpointHealthRequest:
    return pb.SummarizeEndpointHealthRequest(endpoint_id=endpoint_id, window_hours=1)


def running_total(client: Client) -> int:
    """Runs RUNNING right now, across the tenant."""
    return int(client.ListRuns(pb.ListRunsRequest(status=pb.RUN_STATUS_FILTER_RUNNING, limit=1)).total)


# --- the figures -------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def phase_ms(moment_s: float) -> int:
    """Milliseconds past the second."""
    return round(moment_s * 1000) % 1000


def same_phase(a_ms: int, b_ms: int, tolerance_ms: int = 2) -> bool:
    gap = abs(a_ms - b_ms) % 1000
    return min(gap, 1000 - gap) <= tolerance_ms


def by_endpoint(arrivals: Iterable[Arrival], low_s: float, high_s: float) -> dict[str, list[Arrival]]:
    """Arrivals in [low_s, high_s] by endpoint, in arrival order."""
    found: dict[str, list[Arrival]] = defaultdict(list)
    for arrival in arrivals:
        if low_s <= arrival.arrived_s <= high_s:
            found[arrival.endpoint_id].append(arrival)
    return found


def lateness_ms(arrivals: Iterable[Arrival], low_s: float, high_s: float) -> tuple[float, float]:
    late = [a.lateness_s * 1000 for a in arrivals if low_s <= a.arrived_s < high_s]
    return percentile(late, 0.5), percentile(late, 0.99)


def silent_spells(evidence: Evidence) -> dict[str, list[tuple[float, float]]]:
    """Per endpoint, its times without a call (from one call to the next, or to the window's end if it never
    called again) that end after the fault."""
    fault = evidence.fault
    calls = by_endpoint(evidence.arrivals, fault.began_s, fault.ended_s)
    spells: dict[str, list[tuple[float, float]]] = {}
    for endpoint_id in evidence.endpoint_ids:
        times = [fault.began_s] + [a.arrived_s for a in calls.get(endpoint_id, [])] + [fault.ended_s]
        spells[endpoint_id] = [(a, b) for a, b in itertools.pairwise(times) if b >= fault.at_s]
    return spells


def silences(evidence: Evidence) -> dict[str, float]:
    """Per endpoint, its longest time without a call that ends after the fault."""
    return {e: max(b - a for a, b in spells) for e, spells in silent_spells(evidence).items()}


def recovery_s(evidence: Evidence) -> float:
    """Seconds from the fault until every endpoint is called at its cadence again: the end of the last silence
    longer than two intervals, i.e. with a call missing (the window's end if one is still open); 0 when there was
    none. Lateness is reported apart: on a busy machine a late call is noise more often than a symptom."""
    fault = evidence.fault
    ends = [b for spells in silent_spells(evidence).values() for a, b in spells if b - a > 2 * evidence.interval_s]
    return max(ends, default=fault.at_s) - fault.at_s


def own_phases(evidence: Evidence) -> dict[str, int]:
    """Each endpoint's phase before the fault: its commonest scheduled-for ms over the PHASE_HISTORY_S before it
    (longer than the steady window, so a few coalesced runs in it do not decide)."""
    fault = evidence.fault
    phases: dict[str, int] = {}
    for endpoint_id, calls in by_endpoint(evidence.arrivals, fault.at_s - PHASE_HISTORY_S, fault.at_s).items():
        phases[endpoint_id] = Counter(phase_ms(c.scheduled_for_s) for c in calls).most_common(1)[0][0]
    return phases


def off_phase(evidence: Evidence) -> dict[str, str]:
    """Endpoints not back at their own phase by the end of the window, with what was seen: none of their last
    ON_PHASE_CALLS calls is on it. A coalesced run is off phase and is no fault (it is how an overdue slot runs),
    but the next run goes back to the endpoint's grid; a cadence that carries on from where the coalesced run
    landed never does."""
    fault = evidence.fault
    phases = own_phases(evidence)
    wrong: dict[str, str] = {}
    for endpoint_id, calls in by_endpoint(evidence.arrivals, fault.at_s, fault.ended_s).items():
        own = phases.get(endpoint_id)
        last = [phase_ms(c.scheduled_for_s) for c in sorted(calls, key=lambda c: c.scheduled_for_s)[-ON_PHASE_CALLS:]]
        if own is None or not any(same_phase(p, own) for p in last):
            wrong[endpoint_id] = f"own phase {own} ms, last calls at {last} ms past the second"
    return wrong


def phase_buckets(evidence: Evidence) -> tuple[int, int]:
    """Distinct 10 ms buckets of the endpoints' scheduled-for phase: last call before the fault, last call of
    the window. Endpoints in lockstep collapse the second number."""
    fault = evidence.fault
    before = by_endpoint(evidence.arrivals, fault.began_s, fault.at_s)
    after = by_endpoint(evidence.arrivals, fault.at_s, fault.ended_s)
    return (
        len({phase_ms(calls[-1].scheduled_for_s) // 10 for calls in before.values()}),
        len({phase_ms(calls[-1].scheduled_for_s) // 10 for calls in after.values()}),
    )


def missed_delta(evidence: Evidence) -> dict[str, int] | None:
    before, after = evidence.missed_before.counts, evidence.missed_after.counts
    if before is None or after is None:
        return None
    return {e: after.get(e, 0) - before.get(e, 0) for e in evidence.endpoint_ids}


def slot_accounting(evidence: Evidence) -> dict[str, tuple[int, int]]:
    """Per endpoint, slots of its own grid in the window that have neither a run row (on the slot, or an off-grid
    row standing for a coalesced slot) nor a recorded missed slot, and slots skipped by failure backoff (the
    governor's 2^failures after a run that did not succeed: by design, not missing): (unaccounted, backoff)."""
    fault = evidence.fault
    low_s, high_s = fault.began_s, fault.ended_s - SETTLING_S
    missed = missed_delta(evidence) or {}
    history: dict[str, list[RunRow]] = defaultdict(list)
    for row in sorted(evidence.rows, key=lambda r: r.scheduled_for_s):
        history[row.endpoint_id].append(row)
    found: dict[str, tuple[int, int]] = {}
    for endpoint_id, own in own_phases(evidence).items():
        # A row stands within ON_GRID_S of its slot, either side: so does the window's edge.
        rows = [
            r.scheduled_for_s
            for r in history[endpoint_id]
            if low_s - ON_GRID_S <= r.scheduled_for_s <= high_s + ON_GRID_S
        ]
        slots = _grid(own, low_s, high_s, evidence.interval_s)
        empty = [s for s in slots if not any(abs(s - r) <= ON_GRID_S for r in rows)]
        backoff = sum(1 for s in empty if _in_backoff(history[endpoint_id], s, evidence.interval_s))
        off_grid = len(rows) - (len(slots) - len(empty))
        found[endpoint_id] = (max(len(empty) - backoff - off_grid - missed.get(endpoint_id, 0), 0), backoff)
    return found


def unaccounted_slots(evidence: Evidence) -> dict[str, int]:
    return {e: n for e, (n, _) in slot_accounting(evidence).items() if n}


def _in_backoff(rows: Sequence[RunRow], slot_s: float, interval_s: float) -> bool:
    """Whether the endpoint's failures put `slot_s` inside a backoff: its last run before the slot did not
    succeed and the slot is before that run + 2^min(failures in a row, 5) intervals."""
    before = [r for r in rows if r.scheduled_for_s < slot_s - ON_GRID_S]
    streak = 0
    for row in reversed(before):
        if row.status not in FAILED:
            break
        streak += 1
    return streak > 0 and slot_s < before[-1].scheduled_for_s + 2 ** min(streak, 5) * interval_s - ON_GRID_S


def _grid(phase: int, low_s: float, high_s: float, interval_s: float) -> list[float]:
    first = math.floor(low_s) + phase / 1000
    while first < low_s:
        first += interval_s
    return [first + k * interval_s for k in range(int((high_s - first) // interval_s) + 1)]


def doubled(evidence: Evidence) -> tuple[list[str], list[tuple[str, float]]]:
    """Run ids the target got more than once; (endpoint, slot) pairs it got under more than one run id."""
    fault = evidence.fault
    window = [a for a in evidence.arrivals if fault.began_s <= a.arrived_s <= fault.ended_s]
    twice = [run_id for run_id, n in Counter(a.run_id for a in window).items() if n > 1]
    ids_per_slot: dict[tuple[str, float], set[str]] = defaultdict(set)
    for arrival in window:
        ids_per_slot[(arrival.endpoint_id, round(arrival.scheduled_for_s, 3))].add(arrival.run_id)
    return twice, [slot for slot, ids in ids_per_slot.items() if len(ids) > 1]


def figures(evidence: Evidence) -> Figures:
    fault = evidence.fault
    before = lateness_ms(evidence.arrivals, fault.began_s, fault.at_s)
    worst = silences(evidence)
    twice, shared = doubled(evidence)
    missed = missed_delta(evidence)
    accounting = slot_accounting(evidence)
    lost = {r.run_id for r in _rows_in(evidence) if r.status == "LOST"}
    return Figures(
        name=fault.name,
        recovery_s=recovery_s(evidence),
        lost=len(lost),
        lost_reached=len(lost & {a.run_id for a in evidence.arrivals}),
        doubled=len(twice) + len(shared) + len(_shared_rows(evidence)),
        stalled=sum(1 for s in worst.values() if s > fault.silence_limit_s),
        worst_silence_s=max(worst.values(), default=0.0),
        late_before_ms=before,
        late_after_ms=lateness_ms(evidence.arrivals, fault.at_s, fault.ended_s + 1e-9),
        missed=None if missed is None else sum(missed.values()),
        phase_buckets=phase_buckets(evidence),
        off_phase=len(off_phase(evidence)),
        unaccounted=sum(n for n, _ in accounting.values()),
        backoff=sum(b for _, b in accounting.values()),
        outage_s=fault.outage_s,
        notes=(*fault.notes, *in_flight_at_fault(evidence)),
    )


def in_flight_at_fault(evidence: Evidence) -> list[str]:
    """With a slow target: how many calls were open at the fault, and how their runs are recorded."""
    fault = evidence.fault
    if not fault.answer_s:
        return []
    status = {r.run_id: r.status for r in evidence.rows}
    open_calls = [a for a in evidence.arrivals if fault.at_s - fault.answer_s < a.arrived_s <= fault.at_s]
    outcomes = Counter(status.get(a.run_id, "no-row") for a in open_calls)
    return [f"in_flight_at_fault={len(open_calls)} ({' '.join(f'{k}={v}' for k, v in sorted(outcomes.items()))})"]


def _rows_in(evidence: Evidence) -> list[RunRow]:
    fault = evidence.fault
    return [r for r in evidence.rows if fault.began_s <= r.scheduled_for_s <= fault.ended_s - SETTLING_S]


def write_evidence(evidence: Evidence, folder: Path, stem: str) -> None:
    """The window's times, calls and run rows (`<stem>-window.txt`, `<stem>-calls.csv`, `<stem>-rows.csv`), for a
    look later."""
    fault = evidence.fault
    low_s, high_s = fault.began_s - PHASE_HISTORY_S, fault.ended_s
    (folder / f"{stem}-window.txt").write_text(
        f"began_s={fault.began_s:.3f} at_s={fault.at_s:.3f} ended_s={fault.ended_s:.3f}"
        f" silence_limit_s={fault.silence_limit_s:.1f}\n"
    )
    with (folder / f"{stem}-calls.csv").open("w") as out:
        out.write("run_id,endpoint_id,scheduled_for_s,arrived_s\n")
        for a in evidence.arrivals:
            if low_s <= a.arrived_s <= high_s:
                out.write(f"{a.run_id},{a.endpoint_id},{a.scheduled_for_s:.3f},{a.arrived_s:.3f}\n")
    with (folder / f"{stem}-rows.csv").open("w") as out:
        out.write("run_id,endpoint_id,scheduled_for_s,status\n")
        for r in sorted(evidence.rows, key=lambda r: r.scheduled_for_s):
            if low_s <= r.scheduled_for_s <= high_s:
                out.write(f"{r.run_id},{r.endpoint_id},{r.scheduled_for_s:.3f},{r.status}\n")


# --- the contract ------------------------------------------------------------------------------------------------


def problems(evidence: Evidence) -> list[str]:
    """Every way the window breaks the contract, each as one line naming what is wrong (empty: none)."""
    return [
        *_doubles(evidence),
        *_unaccounted(evidence),
        *_missed_times(evidence),
        *_silent(evidence),
        *_seen_but_unrecorded(evidence),
        *_lost_without_cause(evidence),
        *_success_never_seen(evidence),
        *_phase_lost(evidence),
        *_unclean_exit(evidence),
    ]


def _examples(items: Iterable[object], most: int = 3) -> str:
    listed = list(items)
    return ", ".join(str(i) for i in listed[:most]) + (f" (+{len(listed) - most} more)" if len(listed) > most else "")


def _doubles(evidence: Evidence) -> list[str]:
    twice, shared = doubled(evidence)
    found = []
    if twice:
        found.append(f"{len(twice)} run ids reached the target twice or more: {_examples(_spacing(evidence, twice))}")
    if shared:
        found.append(
            f"{len(shared)} slots reached the target under two run ids (dispatched twice): {_examples(shared)}"
        )
    same = _shared_rows(evidence)
    if same:
        found.append(f"{len(same)} (endpoint, scheduled_for) pairs have two run rows: {_examples(same)}")
    return found


def _shared_rows(evidence: Evidence) -> list[tuple[str, float]]:
    """(endpoint, scheduled_for) pairs with more than one run row."""
    rows = Counter((r.endpoint_id, round(r.scheduled_for_s, 3)) for r in _rows_in(evidence))
    return [slot for slot, n in rows.items() if n > 1]


def _missed_times(evidence: Evidence) -> list[str]:
    """An endpoint whose missed-slot count grew names when it last missed, within the window."""
    delta = missed_delta(evidence)
    if not delta or not any(delta.values()):
        return []
    if LAST_MISSED_FIELD not in pb.SummarizeEndpointHealthResponse.DESCRIPTOR.fields_by_name:
        return [f"SummarizeEndpointHealthResponse has `{MISSED_FIELD}` but no `{LAST_MISSED_FIELD}` field"]
    low_s, high_s = evidence.missed_before.read_from_s - MISSED_SLACK_S, evidence.missed_after.read_until_s
    last = evidence.missed_after.last_at_s
    wrong = [e for e, n in delta.items() if n > 0 and not low_s <= (last.get(e) or 0.0) <= high_s]
    if not wrong:
        return []
    began_s = evidence.fault.began_s
    seen = [
        f"{e} ({delta[e]} missed, {LAST_MISSED_FIELD} "
        + ("unset)" if last.get(e) is None else f"{(last.get(e) or 0.0) - began_s:+.1f} s from the window's start)")
        for e in wrong
    ]
    return [
        f"{len(wrong)} endpoints missed slots but their {LAST_MISSED_FIELD} is not in the window: {_examples(seen)}"
    ]


def _unclean_exit(evidence: Evidence) -> list[str]:
    code = evidence.fault.exit_code
    return [] if code in (None, 0) else [f"the service exited with {code} on SIGTERM, not 0"]


def _spacing(evidence: Evidence, run_ids: Sequence[str]) -> list[str]:
    """Each run id with how far apart its calls arrived, relative to its scheduled time."""
    calls = defaultdict(list)
    for arrival in evidence.arrivals:
        if arrival.run_id in run_ids:
            calls[arrival.run_id].append(arrival)
    return [
        f"{run_id} (arrived {', '.join(f'+{c.lateness_s:.2f}s' for c in calls[run_id])} after its slot)"
        for run_id in run_ids
    ]


def _unaccounted(evidence: Evidence) -> list[str]:
    short = unaccounted_slots(evidence)
    if not short:
        return []
    where = (
        f"{sum(short.values())} slots of {len(short)} endpoints' {evidence.interval_s:g} s grids have no run row and no"
        " recorded missed slot"
    )
    if evidence.missed_after.counts is None:
        return [
            f"{where}: SummarizeEndpointHealthResponse has no `{MISSED_FIELD}` field, so missed slots cannot be"
            f" accounted for (e.g. {_examples(short.items())})"
        ]
    return [f"{where} (e.g. {_examples(short.items())})"]


def _silent(evidence: Evidence) -> list[str]:
    fault = evidence.fault
    worst = silences(evidence)
    over = {e: round(s, 1) for e, s in worst.items() if s > fault.silence_limit_s}
    if not over:
        return []
    ranked: list[tuple[str, float]] = sorted(over.items(), key=lambda kv: kv[1], reverse=True)
    return [
        f"{len(over)} endpoints were silent longer than {fault.silence_limit_s:.1f} s after the fault"
        f" (worst {ranked[0][1]} s; e.g. {_examples(ranked)})"
    ]


def _seen_but_unrecorded(evidence: Evidence) -> list[str]:
    fault = evidence.fault
    status = {r.run_id: r.status for r in evidence.rows}
    seen = [
        a
        for a in evidence.arrivals
        if fault.began_s <= a.arrived_s <= fault.ended_s and a.scheduled_for_s <= fault.ended_s - SETTLING_S
    ]
    missing = [a.run_id for a in seen if a.run_id not in status]
    denied = [(a.run_id, status[a.run_id]) for a in seen if status.get(a.run_id) not in REACHED | {"RUNNING", None}]
    found = []
    if missing:
        found.append(f"{len(missing)} calls the target got have no run row: {_examples(missing)}")
    if denied:
        found.append(f"{len(denied)} runs the target got are recorded as never having reached it: {_examples(denied)}")
    return found


def _lost_without_cause(evidence: Evidence) -> list[str]:
    if evidence.fault.executor_died:
        return []
    seen = {a.run_id for a in evidence.arrivals}
    lost = [r.run_id for r in _rows_in(evidence) if r.status == "LOST"]
    reached = [run_id for run_id in lost if run_id in seen]
    never = [run_id for run_id in lost if run_id not in seen]
    found = []
    if reached:
        found.append(
            f"{len(reached)} runs reached the target but are LOST though no executor died (a result was dropped"
            f" instead of delivered): {_examples(reached)}"
        )
    if never:
        found.append(
            f"{len(never)} runs are LOST though they never reached the target and no executor died (a run known"
            f" never started must be released and run again): {_examples(never)}"
        )
    return found


def _success_never_seen(evidence: Evidence) -> list[str]:
    seen = {a.run_id for a in evidence.arrivals}
    phantom = [r.run_id for r in _rows_in(evidence) if r.status == "SUCCESS" and r.run_id not in seen]
    return [f"{len(phantom)} SUCCESS rows never reached the target: {_examples(phantom)}"] if phantom else []


def _phase_lost(evidence: Evidence) -> list[str]:
    wrong = off_phase(evidence)
    if not wrong:
        return []
    before, after = phase_buckets(evidence)
    return [
        f"{len(wrong)} endpoints are not back at their own phase by the end of the window, none of their last"
        f" {ON_PHASE_CALLS} calls on it (10 ms phase buckets {before} -> {after}): {_examples(wrong.items())}"
    ]


def reconcile(rows: Sequence[RunRow], arrivals: Sequence[Arrival]) -> list[str]:
    """The database against the target over the whole run, after a settle: every SUCCESS row reached the target,
    every call the target got has a row that admits it may have happened, no run id reached it twice, no two rows
    share an endpoint and scheduled time, and nothing is still RUNNING."""
    status = {r.run_id: r.status for r in rows}
    seen = Counter(a.run_id for a in arrivals)
    checks: dict[str, list[object]] = {
        "SUCCESS rows never reached the target": [
            r.run_id for r in rows if r.status == "SUCCESS" and r.run_id not in seen
        ],
        "calls the target got have no run row": [i for i in seen if i not in status],
        "runs the target got are recorded as never having reached it": [
            (i, status[i]) for i in seen if i in status and status[i] not in REACHED | {"RUNNING"}
        ],
        "run ids reached the target more than once": [i for i, n in seen.items() if n > 1],
        "(endpoint, scheduled_for) pairs have two run rows": [
            k for k, n in Counter((r.endpoint_id, round(r.scheduled_for_s, 3)) for r in rows).items() if n > 1
        ],
        "runs are still RUNNING after the settle": [r.run_id for r in rows if r.status == "RUNNING"],
    }
    return [f"{len(found)} {what}: {_examples(found)}" for what, found in checks.items() if found]


# --- CPU -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    at_s: float
    machine_busy: int
    machine_total: int
    ticks: dict[str, int]


def _process_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def cpu_sample(pids: Mapping[str, Sequence[int]]) -> CpuSample:
    """CPU ticks used so far by the machine and by each named group of processes."""
    numbers = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = numbers[3] + numbers[4]
    return CpuSample(
        time.monotonic(),
        sum(numbers) - idle,
        sum(numbers),
        {name: sum(_process_ticks(p) for p in group) for name, group in pids.items()},
    )


def cpu_usage(first: CpuSample, second: CpuSample) -> str:
    """One line: the machine's busy share of all its cores, and each group's share of one core."""
    hz = os.sysconf("SC_CLK_TCK")
    elapsed = max(second.at_s - first.at_s, 1e-9)
    machine = 100 * (second.machine_busy - first.machine_busy) / max(second.machine_total - first.machine_total, 1)
    groups = " ".join(
        f"{name}={100 * (second.ticks[name] - first.ticks.get(name, 0)) / hz / elapsed:.0f}%" for name in second.ticks
    )
    return f"[cpu] machine busy {machine:.0f}% of {os.cpu_count()} cores; per process (% of one core): {groups}"
