"""What a fault costs: PostgreSQL, one control plane, two schedulers and two executors firing many endpoints every
second at a recording target, through one fault at a time (kill -9 and SIGTERM of each service, a fast restart of
PostgreSQL), with steady state before and after each to measure the cost and the recovery.

One stack for the module; the tests run in file order, each a fault, the last one reconciling the database with
the target. Graceful stops come first, then crashes, then the shared dependencies: a fault whose endpoints do not
find their phase again leaves them in lockstep, and that would colour every figure measured after it.

Every test prints a `[fault]` figures line (pytest -s) and appends it to `faults-figures.txt` in the module's tmp
folder, with each window's calls and run rows as CSV; docs/operations.md ("What a fault costs") has the table. Run
alone with `make test-resilience`.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.environment import require, variable
from tests.support.faults import (
    Evidence,
    Fault,
    children,
    cpu_sample,
    cpu_usage,
    figures,
    missed_slots,
    problems,
    reconcile,
    run_rows,
    running_total,
    write_evidence,
)
from tests.support.pgcluster import PgCluster, start_cluster
from tests.support.processes import ServiceProcess, health_status
from tests.support.recording_target import RecordingTarget
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

# 150 endpoints every second: 150 calls/s. Measured on a 2-core machine (the first test prints a `[cpu]` line), the
# stack (PostgreSQL, control, two schedulers, two executors, the target in this process) takes 1.3-1.5 cores in
# steady state at 150 endpoints, about 1.25 at 100 and 1.5-1.6 at 200: most of it is fixed (two schedulers polling
# claims every 100 ms, the reaper every 200 ms), so fewer endpoints buy little headroom, while 150 still leaves about
# a quarter to a third of the machine for the catch-up after a fault (steady lateness p50 under 10 ms). More would eat
# that margin, and the figures would measure a saturated CPU instead of the fault. PACER_FAULTS_ENDPOINTS changes it.
ENDPOINTS = int(variable("PACER_FAULTS_ENDPOINTS", "150"))
INTERVAL_MS = 1000
# Twice the interval: a 200 ms answer is never cut short, and a lease (timeout + grace) stays short.
TIMEOUT_MS = 2000
STEADY_S = 10.0  # steady state measured before each fault
AFTER_S = 15.0  # measured after each fault
SETTLE_AFTER_BACK_S = 8.0  # at least this long measured after a restarted service is back
RESTART_AFTER_S = 3.0
SESSION_TTL_S = 3.0  # the control plane's PACER_SESSION_TTL_MS default
SLOW_ANSWER_S = 0.2
STEADY_LATENESS_S = 0.25  # a call later than this is not steady state
# The kill lands while at least this many calls are open (ENDPOINTS x 0.2 s of answer is 30 when phases spread).
SLOW_OPEN_CALLS = 15
FAULT_TIMEOUT_S = 240
CONTROL_ENV = {"PACER_QUOTA_RATE_PER_S": "100000", "PACER_QUOTA_BURST": "100000"}  # the suite reads a lot


@dataclass
class Rig:
    """The running stack and what the tests learnt about it."""

    stack: Stack
    target: RecordingTarget
    cluster: PgCluster
    endpoint_ids: list[str]
    figures_path: Path
    executors: list[str] = field(default_factory=lambda: ["executor-1", "executor-2"])
    restarts: Counter[str] = field(default_factory=Counter)

    @property
    def interval_s(self) -> float:
        return INTERVAL_MS / 1000

    def record(self, line: str) -> None:
        print(line)
        with self.figures_path.open("a") as out:
            out.write(line + "\n")

    def replace_executor(self, name: str) -> None:
        """Start a new executor in place of `name` (a new id, as a new pod would have)."""
        base = name.split("~")[0]
        self.restarts[base] += 1
        new = f"{base}~{self.restarts[base]}"
        self.stack.add_executor(new)
        self.executors[self.executors.index(name)] = new

    def pids(self) -> dict[str, list[int]]:
        postmaster = int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        found = {name: [pid] for name, pid in self.stack.pids_by_service().items() if _alive(pid)}
        return {**found, "postgres": [postmaster, *children(postmaster)], "target+test": [os.getpid()]}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pause(seconds: float) -> None:
    """Let steady-state time pass (nothing is awaited)."""
    time.sleep(max(seconds, 0.0))


def _add_endpoints(stack: Stack, target: RecordingTarget) -> list[str]:
    """ENDPOINTS interval endpoints whose creation is spread over one interval, so their phases (the ms past the
    second each fires at) spread over the whole second."""
    job = stack.job("faults")
    began = time.monotonic()
    ids = []
    for n in range(ENDPOINTS):
        _pause(began + n * INTERVAL_MS / 1000 / ENDPOINTS - time.monotonic())
        request = pb.AddEndpointToJobRequest(
            job_id=job,
            name=f"ep-{n}",
            url=target.url(f"/ep/{n}"),
            baseline=pb.Baseline(interval_ms=INTERVAL_MS),
            timeout_ms=TIMEOUT_MS,
        )
        ids.append(str(stack.client.AddEndpointToJob(request).endpoint_id))
    return ids


def _cluster() -> PgCluster:
    cluster, why = start_cluster()
    if cluster is None:
        require(why, "the fault suite")  # no PostgreSQL binaries to make a throwaway cluster from
    return cluster


def _start_stack(tmp: Path, cluster: PgCluster) -> Stack:
    """Control, two schedulers and two executors on a new database. Stack picks each port with a bind-and-release
    probe, so two picks can return the same port: a start that lost that race is tried again, on fresh ports."""
    for attempt in (1, 2):
        folder = tmp if attempt == 1 else tmp / f"attempt-{attempt}"
        folder.mkdir(exist_ok=True)
        stack = None
        try:
            stack = Stack(folder, cluster.create_database(f"pacer_{attempt}"), control_env=CONTROL_ENV)
            stack.add_scheduler("scheduler-a")
            stack.add_scheduler("scheduler-b")
            stack.add_executor("executor-1")
            stack.add_executor("executor-2")
            return stack
        except AssertionError as error:
            if stack is not None:
                stack.close()
            if attempt == 2 or "already in use" not in str(error):
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("faults")
    cluster = _cluster()
    target = RecordingTarget().start()
    stack = None
    try:
        stack = _start_stack(tmp, cluster)
        running = Rig(stack, target, cluster, _add_endpoints(stack, target), tmp / "faults-figures.txt")
        print(f"\n[faults] figures and logs in {tmp}")
        yield running
    finally:
        if stack is not None:
            stack.close()
        target.stop()
        (tmp / "postgres.log").write_text(cluster.log())
        cluster.close()


def steady(rig: Rig) -> bool:
    """Every endpoint called on time within the last interval + 0.5 s, and 99 % of the last 3 s of calls on time."""
    now = time.time()
    recent = [a for a in rig.target.arrivals()[-4 * len(rig.endpoint_ids) :] if a.arrived_s >= now - 3.0]
    on_time = [a for a in recent if a.lateness_s < STEADY_LATENESS_S]
    called = {a.endpoint_id for a in on_time if a.arrived_s >= now - rig.interval_s - 0.5}
    return len(called) == len(rig.endpoint_ids) and len(on_time) >= 0.99 * len(recent)


def wait_steady(rig: Rig, deadline_s: float = 20.0) -> bool:
    """Poll until the stack is in steady state; False if it is not by the deadline (the figures say so)."""
    give_up = time.monotonic() + deadline_s
    while not steady(rig):
        if time.monotonic() > give_up:
            return False
        time.sleep(0.25)
    return True


def measure(rig: Rig, fault: Fault, inflict: Callable[[Fault], None], steady_s: float = STEADY_S) -> list[str]:
    """Steady state, `inflict` the fault (it restarts what it broke and fills in the fault's limits), measure
    what follows; print the figures line and return the contract's problems (empty: none)."""
    if not wait_steady(rig):
        fault.notes.append("NOT-STEADY-BEFORE")  # a busy machine, or the previous fault still settling
    before = missed_slots(rig.stack.client, rig.endpoint_ids)
    fault.began_s = time.time()
    cpu = cpu_sample(rig.pids())
    _pause(steady_s)
    if not rig.figures_path.exists():
        rig.record(cpu_usage(cpu, cpu_sample(rig.pids())))
    fault.at_s = time.time()
    inflict(fault)
    _pause(fault.ended_s - time.time())
    missed_after = missed_slots(rig.stack.client, rig.endpoint_ids)
    rows = run_rows(rig.stack.database_url, since_s=fault.began_s - 60)
    evidence = Evidence(
        fault=fault,
        interval_s=rig.interval_s,
        endpoint_ids=rig.endpoint_ids,
        arrivals=rig.target.arrivals(),  # after the rows: every call of a run they show as finished is in
        rows=rows,
        missed_before=before,
        missed_after=missed_after,
    )
    rig.record(figures(evidence).line())
    write_evidence(evidence, rig.figures_path.parent, re.sub(r"[^a-z0-9]+", "-", fault.name.lower()).strip("-"))
    return problems(evidence)


def _window(fault: Fault, after_s: float, back_s: float | None = None) -> None:
    """Measure `after_s` past the fault, and at least SETTLE_AFTER_BACK_S past the moment things were back."""
    back = time.time() if back_s is None else back_s
    fault.ended_s = max(fault.at_s + after_s, back + SETTLE_AFTER_BACK_S)


def _kill(service: ServiceProcess) -> None:
    """kill -9, then reap it (and close its log)."""
    os.kill(service.process.pid, signal.SIGKILL)
    service.process.wait()
    service.stop()


def _slot_limit(rig: Rig) -> float:
    return rig.interval_s + 3.0


def _outage_limit(rig: Rig, outage_s: float) -> float:
    return max(_slot_limit(rig), outage_s + 1.0)


def kill_executor(rig: Rig, name: str, after_s: float = AFTER_S, open_calls: int = 0) -> Callable[[Fault], None]:
    """kill -9 of the executor `name` (once the target holds `open_calls` calls unanswered), a new one 3 s later."""

    def inflict(fault: Fault) -> None:
        give_up = time.monotonic() + 5
        while rig.target.open_calls < open_calls and time.monotonic() < give_up:
            time.sleep(0.002)
        fault.at_s = time.time()
        _kill(rig.stack.executors[name])
        fault.executor_died = True
        fault.silence_limit_s = _slot_limit(rig)
        _pause(fault.at_s + RESTART_AFTER_S - time.time())
        rig.replace_executor(name)
        _window(fault, after_s)

    return inflict


def _session_limit(rig: Rig) -> float:
    """A dead scheduler's runs go back to due one session TTL after its last heartbeat, then wait for the session
    sweep (0.25 s), a claim and the dispatch: silence up to an interval, the TTL and 0.75 s."""
    return rig.interval_s + SESSION_TTL_S + 0.75


def kill_scheduler(rig: Rig, name: str) -> Callable[[Fault], None]:
    def inflict(fault: Fault) -> None:
        _kill(rig.stack.schedulers[name][0])
        fault.silence_limit_s = _session_limit(rig)
        _pause(fault.at_s + RESTART_AFTER_S - time.time())
        rig.stack.restart_scheduler(name)
        _window(fault, AFTER_S)

    return inflict


def freeze_scheduler(rig: Rig, name: str, frozen_s: float) -> Callable[[Fault], None]:
    """SIGSTOP of the scheduler `name` (a host that froze, a process the kernel stopped) for `frozen_s`, well past its
    session's TTL, then SIGCONT: it must learn its session ended and never dispatch what it held."""

    def inflict(fault: Fault) -> None:
        process, _ = rig.stack.schedulers[name]
        os.kill(process.process.pid, signal.SIGSTOP)
        # Nothing resets its connections: it is known dead only when its session's TTL has passed in silence.
        fault.silence_limit_s = _session_limit(rig)
        _pause(fault.at_s + frozen_s - time.time())
        os.kill(process.process.pid, signal.SIGCONT)
        _window(fault, AFTER_S)

    return inflict


def kill_control(rig: Rig) -> Callable[[Fault], None]:
    def inflict(fault: Fault) -> None:
        _kill(rig.stack.control)
        _pause(fault.at_s + RESTART_AFTER_S - time.time())
        rig.stack.start_control_again()  # returns once its health check says SERVING (polled every 0.1 s)
        back = time.time()
        assert health_status(rig.stack.control_addr) == "SERVING"
        fault.outage_s = back - fault.at_s
        fault.silence_limit_s = _outage_limit(rig, fault.outage_s)
        _window(fault, AFTER_S, back)

    return inflict


def terminate_scheduler(rig: Rig, name: str) -> Callable[[Fault], None]:
    def inflict(fault: Fault) -> None:
        process, _ = rig.stack.schedulers[name]
        fault.exit_code = process.stop()  # SIGTERM, then wait for the drain (killed after 15 s)
        fault.notes.append(f"exit={fault.exit_code} stop_took={time.time() - fault.at_s:.1f}s")
        fault.silence_limit_s = _slot_limit(rig)
        rig.stack.restart_scheduler(name)
        _window(fault, AFTER_S)

    return inflict


def terminate_executor(rig: Rig, name: str) -> Callable[[Fault], None]:
    def inflict(fault: Fault) -> None:
        fault.exit_code = rig.stack.executors[name].stop()
        fault.notes.append(f"exit={fault.exit_code} stop_took={time.time() - fault.at_s:.1f}s")
        fault.silence_limit_s = _slot_limit(rig)
        rig.replace_executor(name)
        _window(fault, AFTER_S)

    return inflict


def restart_postgres(rig: Rig) -> Callable[[Fault], None]:
    def inflict(fault: Fault) -> None:
        fault.outage_s = rig.cluster.restart_fast()
        fault.silence_limit_s = _outage_limit(rig, fault.outage_s)
        _window(fault, AFTER_S, time.time())

    return inflict


@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_sigterm_of_an_executor_then_restart(rig: Rig) -> None:
    found = measure(rig, Fault("executor SIGTERM"), terminate_executor(rig, rig.executors[1]))
    assert not found, "\n".join(found)


@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_sigterm_of_a_scheduler_then_restart(rig: Rig) -> None:
    found = measure(rig, Fault("scheduler SIGTERM"), terminate_scheduler(rig, "scheduler-b"))
    assert not found, "\n".join(found)


@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_kill_9_of_an_executor(rig: Rig) -> None:
    found = measure(rig, Fault("executor kill -9"), kill_executor(rig, rig.executors[0]))
    assert not found, "\n".join(found)


@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_kill_9_of_an_executor_with_runs_in_flight_at_a_slow_target(rig: Rig) -> None:
    rig.target.answer_delay_s = SLOW_ANSWER_S
    _pause(2 * rig.interval_s)  # the switch itself is no fault: steady state is measured after it
    fault = Fault("executor kill -9, target answering in 200 ms", answer_s=SLOW_ANSWER_S)
    try:
        found = measure(
            rig, fault, kill_executor(rig, rig.executors[0], after_s=10.0, open_calls=SLOW_OPEN_CALLS), steady_s=6.0
        )
    finally:
        rig.target.answer_delay_s = 0.0
    assert not found, "\n".join(found)


@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_kill_9_of_a_scheduler_restarted_3_s_later(rig: Rig) -> None:
    found = measure(rig, Fault("scheduler kill -9"), kill_scheduler(rig, "scheduler-a"))
    assert not found, "\n".join(found)


@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_a_scheduler_frozen_for_5_s_with_runs_in_flight_at_a_slow_target(rig: Rig) -> None:
    # Its executors' streams stay open (nothing resets them): they notice the silence by keepalive and say which of
    # its runs they hold before the control plane ends its session and hands the rest to the other scheduler.
    rig.target.answer_delay_s = SLOW_ANSWER_S
    _pause(2 * rig.interval_s)
    fault = Fault("scheduler frozen 5 s, target answering in 200 ms", answer_s=SLOW_ANSWER_S)
    try:
        found = measure(rig, fault, freeze_scheduler(rig, "scheduler-b", frozen_s=5.0), steady_s=6.0)
    finally:
        rig.target.answer_delay_s = 0.0
    assert not found, "\n".join(found)


@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_fast_restart_of_postgresql(rig: Rig) -> None:
    found = measure(rig, Fault("PostgreSQL fast restart"), restart_postgres(rig))
    assert not found, "\n".join(found)


@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_kill_9_of_the_control_plane_restarted_3_s_later(rig: Rig) -> None:
    found = measure(rig, Fault("control kill -9"), kill_control(rig))
    assert not found, "\n".join(found)


def _settle(rig: Rig, deadline_s: float) -> None:
    """Pause every endpoint and wait until no run is RUNNING (or the deadline: the reconciliation names them)."""
    pause = rig.stack.client.PauseOrResumeEndpoint
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(lambda e: pause(pb.PauseOrResumeEndpointRequest(endpoint_id=e, reason="settle")), rig.endpoint_ids)
        )
    give_up = time.monotonic() + deadline_s
    while running_total(rig.stack.client) and time.monotonic() < give_up:
        time.sleep(0.2)


@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_the_database_reconciles_with_the_target(rig: Rig) -> None:
    # Long enough for a lease (timeout + grace) to expire and the reaper to settle it, with room to spare.
    _settle(rig, TIMEOUT_MS / 1000 + 15)
    rows = run_rows(rig.stack.database_url, since_s=0)
    arrivals = rig.target.arrivals()
    statuses = Counter(r.status for r in rows)
    rig.record(
        f"[reconcile] rows={len(rows)} calls={len(arrivals)} "
        + " ".join(f"{k}={v}" for k, v in sorted(statuses.items()))
    )
    found = reconcile(rows, arrivals)
    assert not found, "\n".join(found)
