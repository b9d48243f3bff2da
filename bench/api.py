"""The public API at interactive speed: what a person or an agent waits for on an idle control plane.

    .venv/bin/python -m bench.api --backend postgresql [--samples 2000] [--clients 8] [--duration-s 10]

Starts a real control plane process on a fresh database (no scheduler or executor: an idle control plane) and
measures, with one client calling one request after another: p50/p95/p99 of GetJob, of AddEndpointToJob (1,000
calls, which make the job that ListJobEndpoints then lists) and of ListJobEndpoints of those 1,000 endpoints (and
the first such call alone); then the wall time of `pacerctl apply` (a separate process, as a person runs it) of a
file with 1,000 endpoints in one job, and of applying it again (nothing to change); last the AddEndpointToJob calls
per second that `--clients` concurrent clients (each its own connection) get. All of it as one tenant, which holds
1,100 endpoints once the single client's are added and 2,100 when the throughput starts. With each figure: the CPU
the control plane and its PostgreSQL backends spent per call, and how busy the whole machine was meanwhile (the
machine is shared: read the latencies with it). Every endpoint carries one header, so its secrets are sealed at
rest and opened when listed, as a real tenant's are.

`--py-spy DIR` records a py-spy profile of the control plane during each phase (`DIR/<phase>.txt`, collapsed
stacks, one line per stack with its sample count), to choose what to make faster from what the process does;
`--gil` samples only the thread holding the GIL (where the CPU goes) instead of every busy thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from bench import profile
from bench.pipeline import database
from bench.stats import percentile
from bench.usage import cpu_seconds, database_backends
from pacer.control.v1 import control_service_pb2 as pb
from pacer.control.v1 import control_service_pb2_grpc as pb_grpc
from tests.support.processes import BIN
from tests.support.stack import Stack

# Production-like timings, quiet logs, and a rate limit out of the way: the bench measures the API, not the quota.
BENCH_CONTROL_ENV = {
    "PACER_LOG_LEVEL": "WARNING",
    "PACER_LEASE_GRACE_MS": "10000",
    "PACER_REAPER_INTERVAL_MS": "1000",
    "PACER_QUOTA_RATE_PER_S": "1000000",
    "PACER_QUOTA_BURST": "1000000",
    "PACER_QUOTA_MAX_ENDPOINTS": "1000000",
}


@dataclass(frozen=True)
class Figures:
    """Latencies of one kind of call in milliseconds, and the CPU it cost."""

    name: str
    samples: list[float]
    cpu: Cpu

    def line(self) -> str:
        samples = self.samples
        return (
            f"  {self.name:<34} p50 {percentile(samples, 0.50):7.2f}  p95 {percentile(samples, 0.95):7.2f}"
            f"  p99 {percentile(samples, 0.99):7.2f}  ms  ({len(samples)} calls; {self.cpu.per_call(len(samples))})"
        )


@dataclass
class Cpu:
    """CPU seconds the control plane and its PostgreSQL backends used over a stretch, and how busy the machine was."""

    control_s: float = 0.0
    postgres_s: float = 0.0
    machine_busy: float = 0.0

    def per_call(self, calls: int) -> str:
        per = 1000 / max(calls, 1)
        return (
            f"CPU ms/call: control {self.control_s * per:.2f}, PostgreSQL {self.postgres_s * per:.2f}; "
            f"machine {self.machine_busy:.0%} busy"
        )


class Meter:
    """Reads the CPU time of the control plane and of the PostgreSQL backends serving the bench's database (the
    server's other databases are other people's work), and of the whole machine."""

    def __init__(self, control_pid: int, database_url: str | None) -> None:
        self._control = control_pid
        self._database_url = database_url

    def _backends(self) -> list[int]:
        return database_backends(self._database_url) if self._database_url is not None else []

    @contextmanager
    def measuring(self) -> Iterator[Cpu]:
        cpu = Cpu()
        backends = {pid: cpu_seconds([pid]) for pid in self._backends()}
        control, machine = cpu_seconds([self._control]), machine_cpu()
        yield cpu
        cpu.control_s = cpu_seconds([self._control]) - control
        cpu.postgres_s = sum(cpu_seconds([pid]) - backends.get(pid, 0.0) for pid in self._backends())
        busy, total = (after - before for after, before in zip(machine_cpu(), machine, strict=True))
        cpu.machine_busy = busy / max(total, 1)


def timed(call: Callable[[], Any], count: int) -> list[float]:
    """`count` calls one after another; each one's wall time in ms."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def add_request(job_id: str, n: int, prefix: str = "bench") -> pb.AddEndpointToJobRequest:
    return pb.AddEndpointToJobRequest(
        job_id=job_id,
        name=f"{prefix}-{n}",
        url=f"https://target.example.com/{prefix}/{n}",
        headers={"Authorization": f"Bearer token-{n}"},
        baseline=pb.Baseline(interval_ms=60_000),
    )


# --- the phases ------------------------------------------------------------------------------------------------------


def get_job(stack: Stack, meter: Meter, samples: int) -> Figures:
    job_id = stack.job("get")
    request = pb.GetJobRequest(job_id=job_id)
    timed(lambda: stack.client.GetJob(request), 200)
    with meter.measuring() as cpu:
        samples_ms = timed(lambda: stack.client.GetJob(request), samples)
    return Figures("GetJob", samples_ms, cpu)


def add_endpoints(stack: Stack, meter: Meter, count: int) -> tuple[Figures, str]:
    warm = stack.job("warm-up")
    for n in range(100):
        stack.client.AddEndpointToJob(add_request(warm, n, "warm"))
    job_id = stack.job("listed")
    numbers = iter(range(count))
    with meter.measuring() as cpu:
        samples = timed(lambda: stack.client.AddEndpointToJob(add_request(job_id, next(numbers))), count)
    return Figures("AddEndpointToJob", samples, cpu), job_id


def list_endpoints(stack: Stack, meter: Meter, job_id: str, count: int, samples: int) -> list[Figures]:
    """The first listing (nothing of the job remembered yet), then `samples` more."""
    request = pb.ListJobEndpointsRequest(job_id=job_id)
    with meter.measuring() as cold_cpu:
        cold = timed(lambda: stack.client.ListJobEndpoints(request), 1)
    assert len(stack.client.ListJobEndpoints(request).endpoints) == count
    timed(lambda: stack.client.ListJobEndpoints(request), 5)
    with meter.measuring() as cpu:
        warm = timed(lambda: stack.client.ListJobEndpoints(request), samples)
    return [
        Figures(f"ListJobEndpoints ({count} endpoints)", warm, cpu),
        Figures("  the first one", cold, cold_cpu),
    ]


async def _adder(addr: str, key: str, job_id: str, client: int, until: float, latencies: list[float]) -> None:
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = pb_grpc.ControlServiceStub(channel)
        n = 0
        while time.perf_counter() < until:
            start = time.perf_counter()
            await stub.AddEndpointToJob(add_request(job_id, n, f"c{client}"), metadata=metadata, timeout=30)
            latencies.append((time.perf_counter() - start) * 1000)
            n += 1


def throughput(stack: Stack, meter: Meter, clients: int, duration_s: float) -> tuple[float, Figures]:
    """AddEndpointToJob calls per second from `clients` concurrent clients, and their latencies meanwhile."""
    job_id, key = stack.job("throughput"), str(stack.client.key)

    async def run(seconds: float, latencies: list[float]) -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(*(_adder(stack.control_addr, key, job_id, c, until, latencies) for c in range(clients)))

    asyncio.run(run(1.0, []))  # connections up, warm
    latencies: list[float] = []
    with meter.measuring() as cpu:
        start = time.perf_counter()
        asyncio.run(run(duration_s, latencies))
        rate = len(latencies) / (time.perf_counter() - start)
    return rate, Figures(f"AddEndpointToJob, {clients} clients", latencies, cpu)


def manifest(path: Path, count: int) -> Path:
    endpoints = [
        {
            "name": f"apply-{n}",
            "url": f"https://target.example.com/apply/{n}",
            "headers": {"Authorization": f"Bearer token-{n}"},
            "every": "60s",
        }
        for n in range(count)
    ]
    path.write_text(yaml.safe_dump({"jobs": [{"name": "applied", "endpoints": endpoints}]}, sort_keys=False))
    return path


def pacerctl_apply(stack: Stack, path: Path) -> tuple[float, str]:
    """Wall time in seconds of one `pacerctl apply -f path` process, and its last line of output."""
    argv = [str(BIN / "pacerctl"), "--addr", stack.control_addr, "--api-key", str(stack.client.key)]
    start = time.perf_counter()
    done = subprocess.run([*argv, "apply", "-f", str(path)], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pacerctl apply failed ({done.returncode}):\n{done.stderr}")
    return elapsed, done.stdout.strip().splitlines()[-1]


def cli_start_s() -> float:
    """Wall time of `pacerctl --help`: the part of an apply that is the Python process starting."""
    start = time.perf_counter()
    subprocess.run([str(BIN / "pacerctl"), "--help"], capture_output=True, check=True)
    return time.perf_counter() - start


# --- measuring the machine -------------------------------------------------------------------------------------------


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


@contextmanager
def profiled(pid: int, folder: Path | None, phase: str, *, gil: bool = False) -> Iterator[None]:
    """py-spy records the process while the block runs, when a folder is given; `gil` samples only the thread that
    holds the GIL (where the CPU goes), else every thread not idle (waits on the database included)."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    options = ["--pid", str(pid), "--rate", "250", "--nonblocking", "--format", "raw", *(["--gil"] if gil else [])]
    spy = subprocess.Popen(
        [profile.py_spy(), "record", *options, "--output", str(folder / f"{phase}.txt")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the phase starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


# --- the run ---------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, database_url: str, root: Path) -> None:
    stack = Stack(root, database_url, control_env=BENCH_CONTROL_ENV)
    try:
        postgres_url = database_url if args.backend == "postgresql" else None
        measure(args, stack, Meter(stack.control.process.pid, postgres_url), root)
    finally:
        stack.close()


def measure(args: argparse.Namespace, stack: Stack, meter: Meter, root: Path) -> None:
    pid = stack.control.process.pid
    load_before, started = os.getloadavg(), time.perf_counter()
    lines = [f"backend {args.backend}, idle control plane (pid {pid}), one client unless said"]
    with profiled(pid, args.py_spy, "get", gil=args.gil):
        lines.append(get_job(stack, meter, args.samples).line())
    with profiled(pid, args.py_spy, "add", gil=args.gil):
        added, job_id = add_endpoints(stack, meter, args.endpoints)
    lines.append(added.line())
    with profiled(pid, args.py_spy, "list", gil=args.gil):
        lines += [figures.line() for figures in list_endpoints(stack, meter, job_id, args.endpoints, args.list_samples)]
    path = manifest(root / "apply.yaml", args.endpoints)
    with profiled(pid, args.py_spy, "apply", gil=args.gil), meter.measuring() as cpu:
        first, outcome = pacerctl_apply(stack, path)
    again, unchanged = pacerctl_apply(stack, path)
    lines.append(
        f"  pacerctl apply, {args.endpoints} endpoints       {first:7.2f} s  "
        f"({outcome}; machine {cpu.machine_busy:.0%} busy)"
    )
    lines.append(f"  pacerctl apply again, no change     {again:7.2f} s  ({unchanged})")
    # Last: it adds endpoints for as long as it runs, and the tenant's endpoint count is part of each addition's cost.
    with profiled(pid, args.py_spy, "throughput", gil=args.gil):
        rate, loaded = throughput(stack, meter, args.clients, args.duration_s)
    lines += [f"  AddEndpointToJob throughput        {rate:7.0f} calls/s ({args.clients} clients)", loaded.line()]
    lines.append(f"  pacerctl --help (process start)     {cli_start_s():7.2f} s")
    lines.append(
        f"  load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after, "
        f"{time.perf_counter() - started:.0f} s, {os.cpu_count()} cores"
    )
    print("\n".join(lines), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--samples", type=int, default=2000, help="GetJob calls timed")
    parser.add_argument("--endpoints", type=int, default=1000, help="endpoints added, listed and applied")
    parser.add_argument("--list-samples", type=int, default=50, help="ListJobEndpoints calls timed")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the throughput")
    parser.add_argument("--duration-s", type=float, default=10, help="the throughput window")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR", help="profile each phase into DIR")
    parser.add_argument("--gil", action="store_true", help="profile only the thread holding the GIL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pacer-bench-api-") as scratch:
        root = Path(scratch)
        with database(args.backend, root) as url:
            run(args, url, root)


if __name__ == "__main__":
    main()
