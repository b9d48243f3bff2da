"""End-to-end throughput and lateness: N endpoints at interval I against a local nginx, through every service,
measured where the user sees it (at the target) and in Pacer's own records.

    .venv/bin/python -m bench.pipeline --backend postgresql --endpoints 1000 --interval-ms 1000 --duration-s 30
    .venv/bin/python -m bench.pipeline --find-max              # the highest sustained rate, stepping the rate up
    .venv/bin/python -m bench.pipeline --schedulers 2 --executors 2   # scale-out: doubled and lost runs
    .venv/bin/python -m bench.pipeline --profile               # a py-spy flame graph of each service

Starts nginx (Debian's, on a free port, answering 200 "ok" and logging each request's arrival and Pacer's headers),
the control plane, schedulers and executors as separate processes, creates the endpoints through the public API,
lets them run for a warm-up and then measures over the window:
- at the target (nginx's access log): runs/s arrived, runs executed per due slot, lateness (arrival - the slot in
  X-Pacer-Scheduled-For) p50/p95/p99, run ids seen twice and slots run under two run ids;
- in Pacer's records: runs/s, lateness as the executor saw it (started_at - scheduled_for), runs LOST and runs
  recorded as begun that never reached the target;
- CPU ms per run of each process (control, each scheduler, each executor, PostgreSQL's backends of this database,
  nginx) and the peak RSS of each Pacer process.
--find-max adds endpoints step by step (--rates, runs/s at --interval-ms) with a window each and reports the highest
rate where >= 99.5 % of due slots executed with target p99 < 100 ms. Everything is also written to
<out>/result.json (default var/bench/<time>-pacer-<backend>/), which `bench.peer --pacer` compares with.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from bench import profile
from bench.arrivals import Arrival, Window, measure
from bench.ladder import Climb, climb
from bench.report import step_lines, sustained_line
from bench.results import Records, RunResult, Step
from bench.stats import percentile
from bench.target import FLUSH_S, Target, nginx
from bench.usage import CpuMeter, database_backends, peak_rss_mib, per_run_ms
from pacer.control.v1 import control_service_pb2 as pb
from pacer_control.database import make_engine
from pacer_control.models import Run
from tests.support.databases import PostgresDatabases
from tests.support.stack import Stack

# Endpoints are created one API call each, faster than the default per-tenant rate limit allows.
BENCH_CONTROL_ENV = {
    "PACER_LOG_LEVEL": "WARNING",
    "PACER_DB_POOL_SIZE": "8",
    "PACER_QUOTA_RATE_PER_S": "100000",
    "PACER_QUOTA_BURST": "100000",
}
SERVICE_ENV = {"PACER_LOG_LEVEL": "WARNING"}
SETTLE_S = 2.0  # after a window, for its last runs to arrive and their results to be recorded
CREATING_THREADS = 4
DEFAULT_RATES = "250,500,750,1000,1250,1500,1750,2000,2500,3000"


@dataclass
class Bench:
    """A running stack and its target, with everything the target has logged so far."""

    args: argparse.Namespace
    database_url: str
    stack: Stack
    target: Target
    out: Path
    endpoints: int = 0
    arrivals: list[Arrival] = field(default_factory=list)

    def grow_to(self, count: int) -> None:
        """Create endpoints through the public API until there are `count` of them, a few calls at a time (each
        waits mostly on the control plane's commit)."""
        started = time.monotonic()
        job = self.stack.job(f"bench-{self.endpoints}")
        requests = [
            pb.AddEndpointToJobRequest(
                job_id=job,
                name=f"bench-{n}",
                url=f"{self.target.base_url}/ep/{n}",
                baseline=pb.Baseline(interval_ms=self.args.interval_ms),
            )
            for n in range(self.endpoints, count)
        ]
        with ThreadPoolExecutor(CREATING_THREADS) as pool:
            list(pool.map(self.stack.client.AddEndpointToJob, requests))
        print(f"  created {count - self.endpoints} endpoints in {time.monotonic() - started:.1f} s", flush=True)
        self.endpoints = max(self.endpoints, count)

    def measure_window(self, offered_per_s: float) -> Step:
        """Measure one window at the current endpoints: CPU, peak RSS, then the target's and Pacer's figures."""
        services = self.stack.pids_by_service()
        meter = CpuMeter(self._cpu_groups(services))
        recorders = self._start_profiles(services, offered_per_s)
        meter.start()
        start_ms = time.time() * 1000
        time.sleep(self.args.duration_s)
        end_ms = time.time() * 1000
        late = {"postgresql": database_backends(self.database_url)} if self._on_postgres else None
        used = meter.stop(late)
        peaks = {name: peak_rss_mib(pid) for name, pid in services.items()}
        self._collect_profiles(recorders)
        time.sleep(SETTLE_S + FLUSH_S)
        self.arrivals += self.target.new_arrivals()
        window = Window(start_ms, end_ms)
        figures = measure(self.arrivals, window, self.endpoints, self.args.interval_ms)
        records = pacer_records(self.database_url, window, {a.run_id for a in self.arrivals})
        cpu = {name: per_run_ms(seconds, figures.executed) for name, seconds in used.items()}
        return Step(offered_per_s, window.seconds, figures, cpu, peaks, records)

    @property
    def _on_postgres(self) -> bool:
        return bool(self.args.backend == "postgresql")

    def _cpu_groups(self, services: dict[str, int]) -> dict[str, list[int]]:
        groups = {name: [pid] for name, pid in services.items()}
        if self._on_postgres:
            groups["postgresql"] = database_backends(self.database_url)
        groups["nginx"] = self.target.pids()
        return groups

    def _start_profiles(self, services: dict[str, int], offered_per_s: float) -> profile.Profiles | None:
        if not self.args.profile:
            return None
        folder = self.out / "profiles" / f"{offered_per_s:.0f}-per-s"
        return profile.record(services, folder, self.args.duration_s, self.args.profile_format)

    def _collect_profiles(self, recorders: profile.Profiles | None) -> None:
        if recorders is None:
            return
        for name, path in recorders.wait(timeout_s=30).items():
            print(f"  profile             {name}: {path}")


def pacer_records(database_url: str, window: Window, arrived: set[str]) -> Records:
    """Pacer's runs due in the window as its database has them: the executor's lateness, and the runs that are
    lost: LOST, or recorded as begun (they have a start time) but never seen at the target."""
    start = datetime.fromtimestamp(window.start_ms / 1000, UTC)
    end = datetime.fromtimestamp(window.end_ms / 1000, UTC)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Run.id, Run.status, Run.scheduled_for, Run.started_at).where(
                    Run.scheduled_for >= start, Run.scheduled_for < end
                )
            ).all()
    finally:
        engine.dispose()
    begun = [r for r in rows if r.started_at is not None]
    late = [(r.started_at - r.scheduled_for).total_seconds() * 1000 for r in begun]
    return Records(
        runs_per_s=len(rows) / window.seconds,
        succeeded_share=sum(1 for r in rows if r.status == "SUCCESS") / max(len(rows), 1),
        lateness_p50_ms=percentile(late, 0.50),
        lateness_p95_ms=percentile(late, 0.95),
        lateness_p99_ms=percentile(late, 0.99),
        lateness_max_ms=max(late, default=float("nan")),
        lost_status=sum(1 for r in rows if r.status == "LOST"),
        never_arrived=sum(1 for r in begun if r.status != "LOST" and r.id not in arrived),
    )


def start_stack(args: argparse.Namespace, root: Path, database_url: str) -> Stack:
    stack = Stack(root, database_url, control_env=BENCH_CONTROL_ENV)
    try:
        for n in range(args.schedulers):
            stack.add_scheduler(f"scheduler-{n}", env=SERVICE_ENV)
        for n in range(args.executors):
            stack.add_executor(f"executor-{n}", capacity=args.capacity, env=SERVICE_ENV)
    except BaseException:
        stack.close()
        raise
    return stack


def run_ladder(bench: Bench, result: RunResult) -> None:
    """One window at --endpoints, or with --find-max a window per rate of the ladder, printing each."""
    args = bench.args
    per_endpoint = 1000 / args.interval_ms
    if args.find_max:
        plan = Climb([float(r) for r in args.rates.split(",")], args.through, args.retries)
    else:
        plan = Climb([args.endpoints * per_endpoint], retries=0)

    def grow(rate: float) -> None:
        bench.grow_to(round(rate / per_endpoint))
        time.sleep(max(args.warmup_s, args.interval_ms / 1000 + 1))  # the new endpoints' first runs are due

    def show(step: Step) -> None:
        print(f"{args.backend}: {bench.endpoints} endpoints every {args.interval_ms} ms, {step.window_s:.0f} s window")
        print("\n".join(step_lines(step)), flush=True)

    result.steps += climb(plan, grow, bench.measure_window, show)
    if args.find_max:
        print(f"{args.backend}: {sustained_line(result)}")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for this run, dropped afterwards."""
    databases = PostgresDatabases()
    url = databases.create(migrated=False)
    try:
        yield url
    finally:
        databases.drop(url)
        databases.close()


@contextmanager
def database(backend: str, root: Path) -> Iterator[str]:
    """A new, empty database on `backend` for this run, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{root / 'bench.db'}"
        return
    with postgres_database() as url:
        yield url


def default_out(kind: str) -> Path:
    return Path("var") / "bench" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{kind}"


def main() -> None:
    args = parse_args()
    out = args.out or default_out(f"pacer-{args.backend}")
    result = RunResult("pacer", args.backend, args.schedulers, args.executors, list(os.getloadavg()))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in result.load_before)} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="pacer-bench-") as scratch:
        root = Path(scratch)
        with database(args.backend, root) as url, nginx(root / "nginx") as target:
            started = time.monotonic()
            stack = start_stack(args, root, url)
            print(f"  started the services in {time.monotonic() - started:.1f} s", flush=True)
            try:
                run_ladder(Bench(args, url, stack, target, out), result)
            finally:
                stack.close()
    result.save(out / "result.json")
    print(f"figures written to {out / 'result.json'}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--duration-s", type=float, default=30, help="the window of each measurement")
    parser.add_argument("--warmup-s", type=float, default=5)
    parser.add_argument("--schedulers", type=int, default=1)
    parser.add_argument("--executors", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=500)
    parser.add_argument("--find-max", action="store_true", help="step the rate up (--rates) to the sustained maximum")
    parser.add_argument("--rates", default=DEFAULT_RATES, help="runs/s of each --find-max step, rising")
    parser.add_argument("--through", type=float, default=0, help="keep stepping past a failure up to this rate")
    parser.add_argument("--retries", type=int, default=1, help="windows measured again at a rate that failed")
    parser.add_argument("--profile", action="store_true", help="record a py-spy flame graph of each service")
    parser.add_argument("--profile-format", choices=sorted(profile.SUFFIX), default="flamegraph")
    parser.add_argument("--out", type=Path, default=None, help="folder for result.json and the profiles")
    return parser.parse_args()


if __name__ == "__main__":
    main()
