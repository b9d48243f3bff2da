"""The peer: APScheduler 3 making the same HTTP calls at the same offered rates, measured at the same kind of target.

    .venv/bin/python -m bench.peer --stores memory,postgresql --pacer var/bench/<run>/result.json

For each store (APScheduler's MemoryJobStore, and its SQLAlchemyJobStore on PostgreSQL) an AsyncIOScheduler in this
process runs N interval jobs (N = rate x interval), each an aiohttp GET of nginx carrying its scheduled time in
X-Pacer-Scheduled-For and `<job id>@<slot>` in X-Pacer-Run-Id, so `bench.arrivals` measures it exactly as it
measures Pacer. The jobs are given Pacer's own delivery rules: a late job still runs (no misfire grace), missed runs
coalesce into one, and one run per job at a time. The rate steps up the ladder (--rates) as `bench.pipeline
--find-max` does. With --pacer (a result.json of bench.pipeline) it ends with the comparison table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent  # type: ignore[import-untyped]
from apscheduler.executors.asyncio import AsyncIOExecutor  # type: ignore[import-untyped]
from apscheduler.jobstores.memory import MemoryJobStore  # type: ignore[import-untyped]
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # type: ignore[import-untyped]
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from bench.arrivals import Arrival, Window, measure
from bench.compare import comparison_lines
from bench.ladder import Climb, climb
from bench.pipeline import DEFAULT_RATES, SETTLE_S, default_out, postgres_database
from bench.report import step_lines, sustained_line
from bench.results import RunResult, Step, load
from bench.target import FLUSH_S, Target, nginx
from bench.usage import CpuMeter, database_backends, peak_rss_mib, per_run_ms

CONNECTIONS = 500  # as many concurrent calls as one Pacer executor makes by default (PACER_CAPACITY)


async def call(
    url: str, endpoint_id: str, session: aiohttp.ClientSession | None = None, slot: datetime | None = None
) -> int:
    """One job run: the HTTP call, with the slot it was scheduled for. Module level, so the SQLAlchemy job store can
    store a reference to it; `session` and `slot` are given by SlotExecutor for each run (optional only because
    APScheduler checks a job's stored arguments against the signature)."""
    assert session is not None, "run by SlotExecutor"
    assert slot is not None, "run by SlotExecutor"
    stamp = slot.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    headers = {
        "X-Pacer-Run-Id": f"{endpoint_id}@{stamp}",
        "X-Pacer-Endpoint-Id": endpoint_id,
        "X-Pacer-Scheduled-For": stamp,
    }
    async with session.get(url, headers=headers) as response:
        await response.read()
        return response.status


class SlotExecutor(AsyncIOExecutor):  # type: ignore[misc]
    """Runs each job with the HTTP session and its scheduled time: APScheduler 3 does not tell a job when it was
    due, and the target needs that slot to measure lateness. Otherwise as AsyncIOExecutor runs coroutine jobs."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        super().__init__()
        self._session = session

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        task = self._eventloop.create_task(self._run(job, run_times))
        self._pending_futures.add(task)
        task.add_done_callback(self._pending_futures.discard)

    async def _run(self, job: Any, run_times: list[datetime]) -> None:
        events = []
        for run_time in run_times:
            try:
                await job.func(*job.args, session=self._session, slot=run_time, **job.kwargs)
                events.append(JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, job._jobstore_alias, run_time))
            except (aiohttp.ClientError, TimeoutError) as error:  # the call failed: the job's error, not the bench's
                events.append(
                    JobExecutionEvent(EVENT_JOB_ERROR, job.id, job._jobstore_alias, run_time, exception=error)
                )
        self._run_job_success(job.id, events)


class Peer:
    """An AsyncIOScheduler on one job store, on an event loop of its own thread, growing its jobs step by step.

    The scheduler has its own thread because its SQLAlchemy job store blocks the event loop while it queries: the
    driver, timing windows on the main thread, must not be held up by the system it measures."""

    def __init__(self, args: argparse.Namespace, store: str, database_url: str | None, target: Target) -> None:
        self.args, self.store, self.database_url, self.target = args, store, database_url, target
        self.jobs = 0
        self.arrivals: list[Arrival] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)

    def job_store(self) -> Any:
        if self.database_url is None:
            return MemoryJobStore()
        url = make_url(self.database_url).set(drivername="postgresql+psycopg")
        return SQLAlchemyJobStore(url=url.render_as_string(hide_password=False))

    def run(self, result: RunResult) -> None:
        """Step up the ladder, printing each window; the scheduler is stopped at the end, however it ends."""
        self._thread.start()
        self._ready.wait(30)
        try:
            self._ladder(result)
        finally:
            if self._stopping is not None:
                self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(30)

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._scheduler = AsyncIOScheduler(
                jobstores={"default": self.job_store()},
                executors={"default": SlotExecutor(session)},
                job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
                timezone=UTC,
            )
            self._scheduler.start()
            self._ready.set()
            await self._stopping.wait()
            await self._stop(self._scheduler)

    @staticmethod
    async def _stop(scheduler: AsyncIOScheduler) -> None:
        """Pause, let queued wakeups find it paused, then shut down: AsyncIOScheduler 3 shuts down on the loop's
        next turn, and a wakeup queued behind a plain shutdown fails on the loop it no longer has."""
        scheduler.pause()
        await asyncio.sleep(0.2)
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0.2)

    def _ladder(self, result: RunResult) -> None:
        per_job = 1000 / self.args.interval_ms
        plan = Climb([float(r) for r in self.args.rates.split(",")], self.args.through, self.args.retries)

        def grow(rate: float) -> None:
            self._grow_to(round(rate / per_job))
            time.sleep(max(self.args.warmup_s, self.args.interval_ms / 1000 + 1))

        def show(step: Step) -> None:
            print(f"apscheduler {self.store}: {self.jobs} jobs every {self.args.interval_ms} ms")
            print("\n".join(step_lines(step)), flush=True)

        result.steps += climb(plan, grow, self._measure_window, show)
        print(f"apscheduler {self.store}: {sustained_line(result)}")

    def _grow_to(self, count: int) -> None:
        """Add jobs up to `count`, their first runs spread evenly over one interval (as creating Pacer's endpoints
        one by one spreads theirs). The scheduler is paused meanwhile: it holds its job-store lock for a whole
        processing pass, and an overloaded pass over the SQLAlchemy store lasts seconds, which each add would wait."""
        scheduler = self._scheduler
        assert scheduler is not None, "the scheduler did not start"
        interval_s = self.args.interval_ms / 1000
        added, started = count - self.jobs, time.monotonic()
        scheduler.pause()
        first = datetime.now(UTC) + timedelta(seconds=1)
        for n in range(self.jobs, count):
            job_id = f"job-{n}"
            offset = timedelta(seconds=interval_s * (n - self.jobs) / max(added, 1))
            trigger = IntervalTrigger(seconds=interval_s, start_date=first + offset, timezone=UTC)
            scheduler.add_job(call, trigger, args=[f"{self.target.base_url}/ep/{n}", job_id], id=job_id)
        scheduler.resume()
        print(f"  added {added} jobs in {time.monotonic() - started:.1f} s", flush=True)
        self.jobs = max(self.jobs, count)

    def _measure_window(self, offered_per_s: float) -> Step:
        meter = CpuMeter(self._cpu_groups())
        meter.start()
        start_ms = time.time() * 1000
        time.sleep(self.args.duration_s)
        end_ms = time.time() * 1000
        late = {"postgresql": database_backends(self.database_url)} if self.database_url else None
        used = meter.stop(late)
        time.sleep(SETTLE_S + FLUSH_S)
        self.arrivals += self.target.new_arrivals()
        window = Window(start_ms, end_ms)
        figures = measure(self.arrivals, window, self.jobs, self.args.interval_ms)
        cpu = {name: per_run_ms(seconds, figures.executed) for name, seconds in used.items()}
        return Step(offered_per_s, window.seconds, figures, cpu, {"apscheduler": peak_rss_mib(os.getpid())})

    def _cpu_groups(self) -> dict[str, list[int]]:
        groups = {"apscheduler": [os.getpid()]}
        if self.database_url:
            groups["postgresql"] = database_backends(self.database_url)
        groups["nginx"] = self.target.pids()
        return groups


@contextmanager
def peer_database(store: str) -> Iterator[str | None]:
    """A new, empty PostgreSQL database for the SQLAlchemy job store; None for the memory store."""
    if store == "memory":
        yield None
        return
    with postgres_database() as url:
        yield url


def run_store(args: argparse.Namespace, store: str, scratch: Path) -> RunResult:
    result = RunResult("apscheduler", store, 1, 1, list(os.getloadavg()))
    print(f"apscheduler {store}: load average before {' '.join(f'{x:.2f}' for x in result.load_before)}")
    started = time.monotonic()
    with peer_database(store) as url, nginx(scratch / f"nginx-{store}") as target:
        print(f"  ready in {time.monotonic() - started:.1f} s", flush=True)
        Peer(args, store, url, target).run(result)
    return result


def main() -> None:
    args = parse_args()
    # An overloaded APScheduler warns once per skipped run ("maximum number of running instances reached"); the
    # target counts those runs, and printing thousands of warnings would cost the peer CPU it needs.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    out = args.out or default_out("apscheduler")
    peers = []
    with tempfile.TemporaryDirectory(prefix="pacer-peer-") as scratch:
        for store in args.stores.split(","):
            result = run_store(args, store, Path(scratch))
            result.save(out / f"result-{store}.json")
            peers.append(result)
    print(f"figures written to {out}")
    if args.pacer:
        print("\n".join(comparison_lines(load(args.pacer), peers)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="memory,postgresql", help="memory, postgresql, or both (comma-separated)")
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--duration-s", type=float, default=10, help="the window of each step")
    parser.add_argument("--warmup-s", type=float, default=3)
    parser.add_argument("--rates", default=DEFAULT_RATES, help="runs/s of each step, rising")
    parser.add_argument("--through", type=float, default=1000, help="keep stepping past a failure up to this rate")
    parser.add_argument("--retries", type=int, default=1, help="windows measured again at a rate that failed")
    parser.add_argument("--pacer", type=Path, default=None, help="bench.pipeline's result.json to compare with")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.pacer and not args.pacer.exists():
        sys.exit(f"no such file: {args.pacer}")
    return args


if __name__ == "__main__":
    main()
