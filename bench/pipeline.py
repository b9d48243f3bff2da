"""End-to-end throughput and lateness: N endpoints at interval I against a local nginx, through every service.

    .venv/bin/python -m bench.pipeline --backend postgresql --endpoints 1000 --interval-ms 1000 --duration-s 30

Starts nginx (Debian's, on a free port, answering 200 "ok"), the control plane, schedulers and executors as
separate processes, creates the endpoints through the public API, lets them run for a warm-up and then measures
over the window: runs/s achieved, dispatch lateness (started_at - scheduled_for, as the executor saw it)
p50/p95/p99, and CPU seconds per 1,000 runs of Pacer's processes (and of PostgreSQL's, when on PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.settings import process_environment
from pacer_control.database import make_engine
from pacer_control.models import Run
from tests.support.databases import PostgresDatabases
from tests.support.processes import free_port
from tests.support.stack import Stack

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok"; }}
    }}
}}
"""
TICKS = os.sysconf("SC_CLK_TCK")
# Endpoints are created one API call each, faster than the default per-tenant rate limit allows.
BENCH_CONTROL_ENV = {
    "PACER_LOG_LEVEL": "WARNING",
    "PACER_DB_POOL_SIZE": "8",
    "PACER_QUOTA_RATE_PER_S": "100000",
    "PACER_QUOTA_BURST": "100000",
}


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = process_environment({"DEBIAN_FRONTEND": "noninteractive"})
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True, env=env)
        return "/usr/sbin/nginx"
    raise SystemExit("the benchmark needs nginx: apt-get install nginx-light")


@contextmanager
def nginx(root: Path) -> Iterator[str]:
    port = free_port()
    (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=port))
    process = subprocess.Popen([nginx_binary(), "-c", str(root / "nginx.conf"), "-p", str(root)])
    try:
        time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def create_endpoints(stack: Stack, base_url: str, count: int, interval_ms: int) -> None:
    job = stack.job("bench")
    for n in range(count):
        stack.client.AddEndpointToJob(
            pb.AddEndpointToJobRequest(
                job_id=job, name=f"bench-{n}", url=f"{base_url}/ep/{n}", baseline=pb.Baseline(interval_ms=interval_ms)
            )
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def lateness_ms(database_url: str, start: datetime, end: datetime) -> tuple[int, int, list[float]]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Run.status, Run.scheduled_for, Run.started_at).where(
                    Run.scheduled_for >= start, Run.scheduled_for < end
                )
            ).all()
    finally:
        engine.dispose()
    late = [(r.started_at - r.scheduled_for).total_seconds() * 1000 for r in rows if r.started_at is not None]
    return len(rows), sum(1 for r in rows if r.status == "SUCCESS"), late


def run(args: argparse.Namespace, database_url: str, root: Path) -> None:
    with nginx(root) as base_url:
        stack = Stack(root, database_url, control_env=BENCH_CONTROL_ENV)
        try:
            for n in range(args.schedulers):
                stack.add_scheduler(f"scheduler-{n}", env={"PACER_LOG_LEVEL": "WARNING"})
            for n in range(args.executors):
                stack.add_executor(f"executor-{n}", capacity=args.capacity, env={"PACER_LOG_LEVEL": "WARNING"})
            create_endpoints(stack, base_url, args.endpoints, args.interval_ms)
            time.sleep(args.warmup_s)
            services = stack.pids_by_service()
            pg = postgres_pids() if args.backend == "postgresql" else []
            before = {name: cpu_seconds([pid]) for name, pid in services.items()}
            pg_before, start = cpu_seconds(pg), datetime.now(UTC)
            time.sleep(args.duration_s)
            after = {name: cpu_seconds([pid]) for name, pid in services.items()}
            pg_after, end = cpu_seconds(pg), datetime.now(UTC)
            peaks = {name: peak_rss_mib(pid) for name, pid in services.items()}
            time.sleep(2)  # let the window's last results arrive
        finally:
            stack.close()
    total, succeeded, late = lateness_ms(database_url, start, end)
    window = (end - start).total_seconds()
    print(f"backend {args.backend}: {args.endpoints} endpoints every {args.interval_ms} ms, {window:.0f} s window")
    print(f"  runs/s achieved     {total / window:8.1f}  (target {args.endpoints * 1000 / args.interval_ms:.0f})")
    print(f"  succeeded           {succeeded / max(total, 1):8.1%}")
    print(
        f"  lateness ms         p50 {statistics.median(late) if late else float('nan'):.1f}"
        f"  p95 {percentile(late, 0.95):.1f}  p99 {percentile(late, 0.99):.1f}  max {max(late, default=0):.1f}"
    )
    per_thousand = 1000 / max(total, 1)
    used = {name: after[name] - before[name] for name in before}
    shares = ", ".join(f"{name} {seconds * per_thousand:.3f}" for name, seconds in used.items())
    print(f"  CPU s / 1000 runs   {sum(used.values()) * per_thousand:8.3f}  (Pacer's processes: {shares})")
    if pg:
        print(f"  CPU s / 1000 runs   {(pg_after - pg_before) * per_thousand:8.3f}  (PostgreSQL)")
    print("  peak RSS MiB        " + ", ".join(f"{name} {mib:.0f}" for name, mib in peaks.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--duration-s", type=float, default=30)
    parser.add_argument("--warmup-s", type=float, default=5)
    parser.add_argument("--schedulers", type=int, default=1)
    parser.add_argument("--executors", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pacer-bench-") as scratch:
        root = Path(scratch)
        if args.backend == "sqlite":
            run(args, f"sqlite:///{root / 'bench.db'}", root)
            return
        databases = PostgresDatabases()
        url = databases.create(migrated=False)
        try:
            run(args, url, root)
        finally:
            databases.drop(url)
            databases.close()


if __name__ == "__main__":
    main()
