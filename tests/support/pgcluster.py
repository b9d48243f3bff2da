"""A throwaway PostgreSQL cluster of the test's own (initdb into a temporary folder, trust auth, a free port), so a
test can stop and restart PostgreSQL without disturbing the server other tests share.

As root the binaries run as the `postgres` user (as scripts/ensure-postgres.sh does): PostgreSQL refuses root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.support.environment import variable
from tests.support.processes import free_port

START_TIMEOUT_S = 60


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: PACER_TEST_PG_BINDIR, else next to `initdb` on PATH, else the newest
    /usr/lib/postgresql/*/bin; None when there are none."""
    named = variable("PACER_TEST_PG_BINDIR")
    if named:
        return Path(named)
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    )
    return found[-1] if found and (found[-1] / "initdb").exists() else None


class PgCluster:
    """One PostgreSQL cluster on 127.0.0.1:`port`, its data in a temporary folder removed by `close`."""

    def __init__(self, bindir: Path) -> None:
        self._bindir = bindir
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        # Not under pytest's tmp_path: its folders are private to root, and the server runs as `postgres`.
        self.data = Path(tempfile.mkdtemp(prefix="pacer-pgcluster-"))
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        try:
            if self._as_postgres:
                shutil.chown(self.data, "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
            self._ctl("start", "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}")
        except BaseException:
            shutil.rmtree(self.data, ignore_errors=True)
            raise

    def _run(self, tool: str, *args: str) -> None:
        command = [*self._as_postgres, str(self._bindir / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}")

    def _ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", *args)

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def answers(self) -> bool:
        """True when a new connection succeeds and runs a query."""
        try:
            with psycopg.connect(self.url, connect_timeout=1) as connection:
                connection.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def restart_fast(self) -> float:
        """`pg_ctl restart -m fast` (clients disconnected, a checkpoint, a new postmaster); returns the seconds
        from the stop until a new connection succeeds."""
        began = time.monotonic()
        self._ctl("restart", "-m", "fast")
        give_up = time.monotonic() + START_TIMEOUT_S
        while not self.answers():
            if time.monotonic() > give_up:
                raise AssertionError(f"PostgreSQL did not answer within {START_TIMEOUT_S} s of its restart")
            time.sleep(0.02)
        return time.monotonic() - began

    def log(self) -> str:
        path = self.data / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # already down: the folder goes anyway
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.data, ignore_errors=True)


def start_cluster() -> tuple[PgCluster | None, str]:
    """A running cluster, or None and why not (no binaries, no `postgres` user, initdb or start failed)."""
    bindir = postgres_bindir()
    if bindir is None:
        return None, "no PostgreSQL binaries (initdb) found; set PACER_TEST_PG_BINDIR"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return None, "running as root without runuser: cannot start PostgreSQL as the postgres user"
    try:
        return PgCluster(bindir), ""
    except (RuntimeError, OSError, LookupError, subprocess.TimeoutExpired) as error:
        return None, f"could not start a throwaway PostgreSQL cluster from {bindir}: {error}"
