"""What each process cost: CPU seconds and peak resident memory from /proc, sampled around a window.

The machine is shared (other PostgreSQL databases, other benchmarks), so PostgreSQL's share is counted only for the
server processes connected to the benchmark's own database, not for every postgres process on the machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes have used so far (a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def per_run_ms(cpu_s: float, runs: int) -> float:
    """CPU milliseconds per run; NaN when no run was executed (a cost per run of nothing is no figure)."""
    return cpu_s * 1000 / runs if runs else math.nan


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB; NaN when it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return math.nan
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def database_backends(database_url: str) -> list[int]:
    """The PostgreSQL server processes connected to the database of `database_url` (not this query's own)."""
    url = make_url(database_url)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (url.database,)
        ).fetchall()
    return [int(row[0]) for row in rows]


@dataclass
class CpuMeter:
    """CPU seconds per named group of processes over a window: `start()`, then `stop()` for the differences.

    `groups` maps a name to its process ids at the start; processes that appear during the window (a connection
    pool's new PostgreSQL backends) are named to `stop()`. A process gone by the end drops out of its group."""

    groups: dict[str, list[int]]
    _before: dict[str, dict[int, float]] | None = None

    def start(self) -> None:
        self._before = {name: {pid: cpu_seconds([pid]) for pid in pids} for name, pids in self.groups.items()}

    def stop(self, late_pids: Mapping[str, Sequence[int]] | None = None) -> dict[str, float]:
        """CPU seconds used by each group since `start()`; `late_pids` adds processes that appeared meanwhile."""
        assert self._before is not None, "start() first"
        used = {}
        for name, before in self._before.items():
            pids = set(before) | set((late_pids or {}).get(name, ()))
            alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
            used[name] = sum(cpu_seconds([pid]) - before.get(pid, 0.0) for pid in alive)
        return used
