"""How long the claim takes with 1,000,000 endpoints stored: p50/p95/p99 of Pipeline.claim_due.

    .venv/bin/python bench/claim_query.py --backend postgresql [--endpoints 1000000] [--rounds 300]

The table is filled in SQL (one tenant, one job); next runs are spread over the next 24 hours, so a few hundred
are due at any moment, as in a real installation. Each round makes 100 endpoints due, claims them and releases
them again outside the timing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, delete, func, select, text, update

from bench.stats import percentile
from pacer_control.database import make_engine, migrate
from pacer_control.models import Endpoint, Run
from pacer_control.pipeline import Pipeline
from pacer_control.sealing import Keyring, generate_key
from tests.support.databases import PostgresDatabases

FILL = {
    "postgresql": """
        INSERT INTO endpoints (id, tenant_id, job_id, name, url, method, body, cron_timezone, interval_ms,
            min_interval_ms, max_interval_ms, timeout_ms, created_at, updated_at, anchor_at, failure_count, paused,
            next_run_at, next_run_source)
        SELECT 'ep_' || lpad(n::text, 26, '0'), 'tn_bench', 'job_bench', 'ep ' || n, 'https://example.com/' || n,
            'GET', '', '', 60000, 0, 0, 30000, :now, :now, :now, 0, false,
            :now + (n % 86400) * interval '1 second' + interval '1 second', 'baseline-interval'
        FROM generate_series(1, :count) AS n
    """,
    "sqlite": """
        WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :count)
        INSERT INTO endpoints (id, tenant_id, job_id, name, url, method, body, cron_timezone, interval_ms,
            min_interval_ms, max_interval_ms, timeout_ms, created_at, updated_at, anchor_at, failure_count, paused,
            next_run_at, next_run_source)
        SELECT printf('ep_%026d', n), 'tn_bench', 'job_bench', 'ep ' || n, 'https://example.com/' || n, 'GET', '',
            '', 60000, 0, 0, 30000, :now, :now, :now, 0, 0,
            datetime(:now, '+' || ((n % 86400) + 1) || ' seconds'), 'baseline-interval'
        FROM seq
    """,
}


def fill(engine: Engine, count: int, now: datetime) -> None:
    stamp = now.replace(tzinfo=None).isoformat(sep=" ") if engine.dialect.name == "sqlite" else now
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES ('tn_bench', 'bench', :now)"), {"now": stamp}
        )
        connection.execute(
            text(
                "INSERT INTO jobs (id, tenant_id, name, description, status, created_at, updated_at) "
                "VALUES ('job_bench', 'tn_bench', 'bench', '', 'active', :now, :now)"
            ),
            {"now": stamp},
        )
        connection.execute(text(FILL[engine.dialect.name]), {"now": stamp, "count": count})
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE endpoints"))


def make_due(engine: Engine, round_number: int, now: datetime) -> list[str]:
    ids = [f"ep_{n:026d}" for n in range(round_number * 100 + 1, round_number * 100 + 101)]
    with engine.begin() as connection:
        connection.execute(update(Endpoint).where(Endpoint.id.in_(ids)).values(next_run_at=now - timedelta(seconds=1)))
    return ids


def release(engine: Engine, ids: list[str], now: datetime) -> None:
    with engine.begin() as connection:
        connection.execute(delete(Run).where(Run.endpoint_id.in_(ids)))
        connection.execute(
            update(Endpoint)
            .where(Endpoint.id.in_(ids))
            .values(lease_run_id=None, lease_expires_at=None, next_run_at=now + timedelta(hours=25))
        )


def measure(engine: Engine, rounds: int) -> list[float]:
    pipeline = Pipeline(engine, Keyring([generate_key()]))
    now = datetime.now(UTC)
    timings = []
    for round_number in range(rounds):
        ids = make_due(engine, round_number, now)
        started = time.perf_counter()
        claimed = pipeline.claim_due(now, 0, 100, 10_000)
        timings.append((time.perf_counter() - started) * 1000)
        assert len(claimed) == 100, f"claimed {len(claimed)}"
        release(engine, ids, now)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--endpoints", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    databases = PostgresDatabases() if args.backend == "postgresql" else None
    scratch = tempfile.TemporaryDirectory()
    url = databases.create(migrated=False) if databases else f"sqlite:///{Path(scratch.name) / 'claim.db'}"
    engine = make_engine(url)
    try:
        migrate(engine)
        started = time.perf_counter()
        fill(engine, args.endpoints, datetime.now(UTC))
        with engine.connect() as connection:
            stored = connection.scalar(select(func.count()).select_from(Endpoint))
        print(f"{args.backend}: stored {stored:,} endpoints in {time.perf_counter() - started:.1f} s")
        timings = measure(engine, args.rounds)
        print(
            f"{args.backend}: claim of 100 due runs with {stored:,} endpoints stored, {args.rounds} rounds: "
            f"p50 {statistics.median(timings):.2f} ms, p95 {percentile(timings, 0.95):.2f} ms, "
            f"p99 {percentile(timings, 0.99):.2f} ms, max {max(timings):.2f} ms"
        )
    finally:
        engine.dispose()
        if databases:
            databases.drop(url)
            databases.close()
        scratch.cleanup()


if __name__ == "__main__":
    main()
