"""Flame graphs of Pacer's services over a benchmark window, with py-spy (a sampling profiler that attaches to a
running process by pid: it needs ptrace, so root or CAP_SYS_PTRACE).

py-spy samples from outside the process, so the services run unmodified; sampling itself costs some CPU, so the
figures of a profiled run are a little worse than an unprofiled one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SAMPLES_PER_S = 100
SUFFIX = {"flamegraph": "svg", "speedscope": "speedscope.json"}


def py_spy() -> str:
    """py-spy from this virtualenv (requirements-dev.txt), else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("--profile needs py-spy: pip install -c constraints.txt py-spy")
    return found


@dataclass
class Profiles:
    """One py-spy recorder per service, writing `<folder>/<service>.<svg|speedscope.json>`."""

    recorders: dict[str, tuple[subprocess.Popen[bytes], Path]]

    def wait(self, timeout_s: float) -> dict[str, Path]:
        """Wait for every recorder to write its file; returns the files written, by service."""
        written = {}
        for name, (process, path) in self.recorders.items():
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(10)
            if path.exists():
                written[name] = path
        return written


def record(pids: Mapping[str, int], folder: Path, duration_s: float, profile_format: str) -> Profiles:
    """Start recording each service for `duration_s` (in the background; `Profiles.wait` collects the files).

    `--nonblocking` keeps py-spy from pausing the service at each sample, so lateness is not inflated by it."""
    folder.mkdir(parents=True, exist_ok=True)
    recorders = {}
    for name, pid in pids.items():
        path = folder / f"{name}.{SUFFIX[profile_format]}"
        command = [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(duration_s))),
            "--rate",
            str(SAMPLES_PER_S),
            "--format",
            profile_format,
            "--output",
            str(path),
            "--nonblocking",
        ]
        with (folder / f"{name}.py-spy.log").open("wb") as log:
            recorders[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), path)
    return Profiles(recorders)
