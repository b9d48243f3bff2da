"""Reading and pruning a run history of 10,000,000 runs: what the history reads and the claim cost on PostgreSQL.

    .venv/bin/python -m bench.history --backend postgresql [--runs 10000000] [--calls 200] [--window-s 15]

Fills a fresh database in SQL (INSERT ... SELECT generate_series): 4 tenants, 2 jobs each, 200 endpoints firing
once a minute for 35 days (about 50,000 runs each), 4% failures and 1% timeouts, a 25-byte response body per run.
Prints the bytes one run takes with its indexes, then starts a control plane process and times, through its gRPC
API, ListRuns (a tenant's first page; a deep page at --deep-offset; an endpoint's first page), GetRunDetails and
SummarizeEndpointHealth. Last it times the claim of 100 due runs (as bench/claim_query.py does), first alone,
then while the retention sweep deletes the runs older than --prune-days with the control plane's default batch and
pause. `--keep` leaves the database for another run with `--reuse URL` (which skips the fill).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, delete, text, update

from bench.stats import percentile
from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.clock import SystemClock
from pacer_control.auth import issue_key
from pacer_control.catalog import Catalog
from pacer_control.database import make_engine, migrate
from pacer_control.metrics import ControlMetrics
from pacer_control.models import Endpoint, Run
from pacer_control.pipeline import Pipeline
from pacer_control.retention import RetentionPolicy, RunHistory, sweep
from pacer_control.sealing import Keyring, generate_key
from pacer_control.settings import ControlSettings
from tests.support.databases import PostgresDatabases
from tests.support.harness import Client
from tests.support.processes import start_control

TENANTS, JOBS_PER_TENANT, ENDPOINTS = 4, 2, 200
CLAIM_ENDPOINTS, CLAIM_BATCH = 1000, 100
DAYS = 35
CONTROL_ENV = {
    "PACER_LOG_LEVEL": "WARNING",
    "PACER_DB_POOL_SIZE": "4",
    "PACER_QUOTA_RATE_PER_S": "100000",
    "PACER_QUOTA_BURST": "100000",
    "PACER_RUN_RETENTION_DAYS": "0",  # the reads are timed on the full history; pruning is timed on its own
}

FILL_OWNERS = """
    INSERT INTO tenants (id, name, created_at)
        SELECT 'tn_' || lpad(t::text, 26, '0'), 'bench-' || t, :start FROM generate_series(0, :tenants - 1) AS t;
    INSERT INTO jobs (id, tenant_id, name, description, status, created_at, updated_at)
        SELECT 'job_' || lpad(j::text, 26, '0'), 'tn_' || lpad((j / :jobs_per_tenant)::text, 26, '0'), 'job ' || j,
            '', 'active', :start, :start
        FROM generate_series(0, :tenants * :jobs_per_tenant - 1) AS j;
    INSERT INTO endpoints (id, tenant_id, job_id, name, url, method, body, cron_timezone, interval_ms,
            min_interval_ms, max_interval_ms, timeout_ms, created_at, updated_at, anchor_at, failure_count, paused,
            next_run_at, next_run_source)
        SELECT 'ep_' || lpad(e::text, 26, '0'),
            'tn_' || lpad((e % (:tenants * :jobs_per_tenant) / :jobs_per_tenant)::text, 26, '0'),
            'job_' || lpad((e % (:tenants * :jobs_per_tenant))::text, 26, '0'), 'ep ' || e,
            'https://example.com/' || e, 'GET', '', '', 60000, 0, 0, 30000, :start, :start, :start, 0, false,
            :now + interval '25 hours', 'baseline-interval'
        FROM generate_series(0, :endpoints - 1) AS e;
"""
# Run n belongs to endpoint n % ENDPOINTS (so to its job and tenant) and is its (n / ENDPOINTS)th minute; every
# endpoint fails one minute in 25 and times out one in 97, at its own minutes.
FILL_RUNS = """
    INSERT INTO runs (id, tenant_id, job_id, endpoint_id, status, source, attempt, scheduled_for, lease_expires_at,
            started_at, finished_at, duration_ms, http_status, error_message, response_body, response_truncated,
            session_id, claim_id, held)
    SELECT 'run_' || lpad(n::text, 26, '0'),
        'tn_' || lpad((n % :endpoints % (:tenants * :jobs_per_tenant) / :jobs_per_tenant)::text, 26, '0'),
        'job_' || lpad((n % :endpoints % (:tenants * :jobs_per_tenant))::text, 26, '0'),
        'ep_' || lpad((n % :endpoints)::text, 26, '0'),
        CASE WHEN (n / :endpoints + n) % 25 = 0 THEN 'FAILURE' WHEN (n / :endpoints + 3 * n) % 97 = 0 THEN 'TIMEOUT'
            ELSE 'SUCCESS' END,
        'baseline-interval', 1, at, at + interval '40 seconds', at + interval '3 milliseconds',
        at + (20 + n * 7919 % 480) * interval '1 millisecond', 20 + n * 7919 % 480,
        CASE WHEN (n / :endpoints + n) % 25 = 0 THEN 500 WHEN (n / :endpoints + 3 * n) % 97 = 0 THEN 0 ELSE 200 END,
        CASE WHEN (n / :endpoints + n) % 25 = 0 THEN 'HTTP 500'
            WHEN (n / :endpoints + 3 * n) % 97 = 0 THEN 'timed out after 30000 ms' ELSE '' END,
        '{"status":"ok","n":' || lpad((n % 100000)::text, 5, '0') || '}', false,
        'ses_' || lpad((n / 100000)::text, 26, '0'), 'clm_' || lpad((n / 100)::text, 26, '0'), false
    FROM (
        SELECT n, :start + (n / :endpoints) * interval '1 minute' + (n % :endpoints) * interval '250 milliseconds'
            AS at
        FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n
    ) AS numbered
"""
CLAIM_FILL = """
    INSERT INTO endpoints (id, tenant_id, job_id, name, url, method, body, cron_timezone, interval_ms,
            min_interval_ms, max_interval_ms, timeout_ms, created_at, updated_at, anchor_at, failure_count, paused,
            next_run_at, next_run_source)
    SELECT 'ep_' || lpad((1000000 + e)::text, 26, '0'), 'tn_' || lpad('0', 26, '0'), 'job_' || lpad('0', 26, '0'),
        'claim ' || e, 'https://example.com/c' || e, 'GET', '', '', 60000, 0, 0, 30000, :now, :now, :now, 0, false,
        :now + interval '25 hours', 'baseline-interval'
    FROM generate_series(0, :count - 1) AS e
"""
CHUNK = 1_000_000


def _run_indexes() -> list[Any]:
    return list(Run.__table__.indexes)  # type: ignore[attr-defined]


def fill(engine: Engine, runs: int, now: datetime) -> None:
    """The owners, then the runs in chunks with the runs' secondary indexes dropped (rebuilt after: far faster)."""
    start = now - timedelta(days=DAYS)
    shape = {"tenants": TENANTS, "jobs_per_tenant": JOBS_PER_TENANT, "endpoints": ENDPOINTS}
    with engine.begin() as connection:
        for statement in FILL_OWNERS.split(";"):
            if statement.strip():
                connection.execute(text(statement), {**shape, "start": start, "now": now})
        connection.execute(text(CLAIM_FILL), {"now": now, "count": CLAIM_ENDPOINTS})
    for index in _run_indexes():
        index.drop(engine)
    step = max(1, min(CHUNK, runs))
    for first in range(0, runs, step):
        began = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL session_replication_role = replica"))  # no FK trigger per row
            last = min(runs, first + step) - 1
            connection.execute(text(FILL_RUNS), {**shape, "start": start, "first": first, "last": last})
        print(f"  runs {last + 1:,} of {runs:,} ({time.perf_counter() - began:.1f} s)", flush=True)
    with engine.connect() as connection:
        connection.execute(text("SET maintenance_work_mem = '256MB'"))
        for index in _run_indexes():
            began = time.perf_counter()
            index.create(connection)
            connection.commit()
            print(f"  index {index.name} ({time.perf_counter() - began:.1f} s)", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def sizing(engine: Engine) -> dict[str, float]:
    """Rows of the runs table and its bytes: heap (with TOAST), indexes, total; and the total per row."""
    query = text(
        "SELECT count(*) AS rows, pg_table_size('runs') AS heap, pg_indexes_size('runs') AS indexes,"
        " pg_total_relation_size('runs') AS total FROM runs"
    )
    with engine.connect() as connection:
        row = connection.execute(query).one()
        per_index = connection.execute(
            text("SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relkind = 'i' AND relname LIKE '%runs%'")
        ).all()
    found = {"rows": row.rows, "heap": row.heap, "indexes": row.indexes, "total": row.total}
    found["per_row"] = row.total / max(1, row.rows)
    for name, size in per_index:
        if name.startswith(("ix_runs", "pk_runs")):
            found[name] = size
    return found


@dataclass(frozen=True)
class Timing:
    name: str
    millis: list[float]

    def line(self) -> str:
        ordered = sorted(self.millis)
        return (
            f"{self.name}: p50 {statistics.median(ordered):.1f} ms, p99 {percentile(ordered, 0.99):.1f} ms, "
            f"max {ordered[-1]:.1f} ms ({len(ordered)} calls)"
        )


def timed(name: str, calls: int, call: Callable[[int], Any]) -> Timing:
    call(0)  # a warm-up call: connections and plans
    millis = []
    for number in range(calls):
        began = time.perf_counter()
        call(number)
        millis.append((time.perf_counter() - began) * 1000)
    return Timing(name, millis)


def read_timings(client: Client, calls: int, deep_offset: int, runs: int) -> list[Timing]:
    """The history reads through the public API, as tenant 0 (2.5 million runs)."""
    rng = random.Random(7)
    tenant_endpoints = [e for e in range(ENDPOINTS) if e % (TENANTS * JOBS_PER_TENANT) // JOBS_PER_TENANT == 0]
    runs_per_endpoint = runs // ENDPOINTS

    def endpoint_id(number: int) -> str:
        return f"ep_{tenant_endpoints[number % len(tenant_endpoints)]:026d}"

    def run_id(_: int) -> str:
        return f"run_{rng.randrange(runs_per_endpoint) * ENDPOINTS + rng.choice(tenant_endpoints):026d}"

    first = client.ListRuns(pb.ListRunsRequest(limit=50))
    deep = client.ListRuns(pb.ListRunsRequest(limit=50, offset=deep_offset))
    print(f"  ListRuns total: first page {first.total:,}, page at offset {deep_offset:,}: {deep.total:,}")
    return [
        timed("ListRuns, first page of 50", calls, lambda _: client.ListRuns(pb.ListRunsRequest(limit=50))),
        timed(
            f"ListRuns, page of 50 at offset {deep_offset:,}",
            calls,
            lambda _: client.ListRuns(pb.ListRunsRequest(limit=50, offset=deep_offset)),
        ),
        timed(
            "ListRuns of one endpoint, first page",
            calls,
            lambda n: client.ListRuns(pb.ListRunsRequest(endpoint_id=endpoint_id(n), limit=50)),
        ),
        timed(
            "ListRuns of one endpoint, failures",
            calls,
            lambda n: client.ListRuns(
                pb.ListRunsRequest(endpoint_id=endpoint_id(n), limit=50, status=pb.RUN_STATUS_FILTER_FAILURE)
            ),
        ),
        timed(
            "GetRunDetails",
            calls,
            lambda n: client.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id(n))),
        ),
        timed(
            "SummarizeEndpointHealth, 24 h",
            calls,
            lambda n: client.SummarizeEndpointHealth(pb.SummarizeEndpointHealthRequest(endpoint_id=endpoint_id(n))),
        ),
        timed(
            "SummarizeEndpointHealth, 720 h",
            calls,
            lambda n: client.SummarizeEndpointHealth(
                pb.SummarizeEndpointHealthRequest(endpoint_id=endpoint_id(n), window_hours=720)
            ),
        ),
    ]


def claim_ids(round_number: int) -> list[str]:
    group = round_number % (CLAIM_ENDPOINTS // CLAIM_BATCH)
    return [f"ep_{1000000 + group * CLAIM_BATCH + e:026d}" for e in range(CLAIM_BATCH)]


def claim_timings(engine: Engine, window_s: float) -> list[float]:
    """Claims of 100 due runs for `window_s`: each round makes 100 endpoints due, claims them and releases them (and
    deletes the runs it made) outside the timing."""
    pipeline = Pipeline(engine, Keyring([generate_key()]))
    millis: list[float] = []
    ends = time.monotonic() + window_s
    round_number = 0
    while time.monotonic() < ends:
        now = datetime.now(UTC)
        ids = claim_ids(round_number)
        due = update(Endpoint).where(Endpoint.id.in_(ids)).values(next_run_at=now - timedelta(seconds=1))
        with engine.begin() as connection:
            connection.execute(due)
        began = time.perf_counter()
        claimed = pipeline.claim_due(now, 0, CLAIM_BATCH, 10_000)
        millis.append((time.perf_counter() - began) * 1000)
        assert len(claimed) == CLAIM_BATCH, f"claimed {len(claimed)}"
        with engine.begin() as connection:
            connection.execute(delete(Run).where(Run.id.in_([c.run_id for c in claimed])))
            connection.execute(
                update(Endpoint)
                .where(Endpoint.id.in_(ids))
                .values(lease_run_id=None, lease_expires_at=None, next_run_at=now + timedelta(hours=25))
            )
        round_number += 1
    return millis


class Pruner:
    """The retention sweep, over and over on an event loop of its own, with the control plane's batch and pause; it
    stops within one batch when the block ends, even in the middle of a sweep."""

    def __init__(self, engine: Engine, policy: RetentionPolicy) -> None:
        self._history = RunHistory(engine, Keyring([generate_key()]))
        self._policy = policy
        self._registry = CollectorRegistry()
        self._metrics = ControlMetrics(self._registry)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._running: Future[None] | None = None

    async def _forever(self) -> None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            while True:
                swept = await sweep(self._history, SystemClock(), pool, self._policy, self._metrics)
                if swept.pruned == 0:
                    await asyncio.sleep(0.1)

    def __enter__(self) -> Pruner:
        self._thread.start()
        self._running = asyncio.run_coroutine_threadsafe(self._forever(), self._loop)
        return self

    def __exit__(self, *_: object) -> None:
        if self._running is not None:
            self._running.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    @property
    def pruned(self) -> int:
        return int(self._registry.get_sample_value("pacer_runs_pruned_total") or 0)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def measure_reads(url: str, engine: Engine, args: argparse.Namespace, runs: int) -> None:
    keyring = Keyring([generate_key()])
    key = issue_key(Catalog(engine, keyring), f"tn_{0:026d}", "bench", datetime.now(UTC)).secret
    with tempfile.TemporaryDirectory() as scratch:
        control, addr = start_control(Path(scratch), url, env=CONTROL_ENV)
        try:
            with grpc.insecure_channel(addr) as channel:
                print(f"reads through the gRPC API ({load()}):")
                for timing in read_timings(Client(channel, key), args.calls, args.deep_offset, runs):
                    print(f"  {timing.line()}", flush=True)
        finally:
            control.stop()


def measure_claims(engine: Engine, args: argparse.Namespace) -> None:
    print(f"claims of {CLAIM_BATCH} due runs, {args.window_s:g} s each ({load()}):")
    alone = claim_timings(engine, args.window_s)
    print(f"  {Timing('without pruning', alone).line()}", flush=True)
    defaults = ControlSettings()
    pause_ms = defaults.run_retention_pause_ms if args.prune_pause_ms < 0 else args.prune_pause_ms
    policy = RetentionPolicy(default_days=args.prune_days, batch=defaults.run_retention_batch, pause_s=pause_ms / 1000)
    began = time.perf_counter()
    with Pruner(engine, policy) as pruner:
        pruning = claim_timings(engine, args.window_s)
        pruned, elapsed = pruner.pruned, time.perf_counter() - began
    print(f"  {Timing('while pruning', pruning).line()}")
    print(
        f"  pruned {pruned:,} runs in {elapsed:.1f} s ({pruned / elapsed:,.0f} runs/s; batch {policy.batch}, "
        f"pause {policy.pause_s * 1000:g} ms) ({load()})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["postgresql"], default="postgresql")
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--calls", type=int, default=200, help="timed calls of each read")
    parser.add_argument("--deep-offset", type=int, default=10_000)
    parser.add_argument("--window-s", type=float, default=15.0, help="how long each claim measurement runs")
    parser.add_argument("--prune-days", type=int, default=20, help="retention while pruning (the fill spans 35)")
    parser.add_argument(
        "--prune-pause-ms", type=int, default=-1, help="pause between pruning batches (default: the control plane's)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and print its URL")
    parser.add_argument(
        "--reuse", default="", help="a database a --keep run left: skip the fill (after --skip-claims: unpruned)"
    )
    parser.add_argument("--skip-claims", action="store_true")
    args = parser.parse_args()
    databases = None if args.reuse else PostgresDatabases()
    url = args.reuse or databases.create(migrated=False)  # type: ignore[union-attr]
    engine = make_engine(url)
    try:
        if not args.reuse:
            migrate(engine)
            print(f"filling {args.runs:,} runs ({load()})", flush=True)
            began = time.perf_counter()
            fill(engine, args.runs, datetime.now(UTC))
            print(f"filled in {time.perf_counter() - began:.0f} s")
        size = sizing(engine)
        print(
            f"runs table: {size['rows']:,} rows, heap {size['heap'] / 2**20:,.0f} MiB, indexes "
            f"{size['indexes'] / 2**20:,.0f} MiB, total {size['total'] / 2**20:,.0f} MiB: "
            f"{size['per_row']:.0f} bytes per run"
        )
        for name in sorted(k for k in size if k.startswith(("ix_", "pk_"))):
            print(f"  {name}: {size[name] / size['rows']:.1f} bytes per run")
        measure_reads(url, engine, args, int(size["rows"]))
        if not args.skip_claims:
            measure_claims(engine, args)
    finally:
        engine.dispose()
        if databases is not None:
            if args.keep:
                print(f"kept: --reuse {url}")
            else:
                databases.drop(url)
            databases.close()


if __name__ == "__main__":
    main()
