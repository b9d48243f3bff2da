"""The HTTP target of every benchmark: Debian's nginx on a free loopback port, answering 200 "ok" and writing one
access-log line per request with its arrival time and Pacer's headers (`bench.arrivals.LOG_FORMAT`).

nginx is found, or installed on a fresh Debian machine, by `scripts/ensure-nginx.sh`, so `make bench` and a
developer's run install it the same way.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.arrivals import LOG_FORMAT, Arrival, parse_lines
from tests.support.faults import children
from tests.support.processes import free_port

ENSURE_NGINX = Path(__file__).resolve().parent.parent / "scripts" / "ensure-nginx.sh"
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format pacer "{log_format}";
    access_log {root}/access.log pacer buffer=64k flush=1s;
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
FLUSH_S = 1.5  # longer than the log's flush interval: every request answered before it is in the file after it


def nginx_binary() -> str:
    """The path of nginx, installed by scripts/ensure-nginx.sh when missing (it runs apt-get update if needed)."""
    found = subprocess.run([str(ENSURE_NGINX)], capture_output=True, text=True, check=False).stdout.strip()
    if not found:
        raise SystemExit("the benchmark needs nginx: apt-get install nginx (scripts/ensure-nginx.sh could not)")
    return found


@dataclass
class Target:
    """A running nginx: its base URL, its process, and the access log the arrivals are read from."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _read: int = 0
    _partial: str = ""

    def pids(self) -> list[int]:
        """The master and its workers: the target's whole CPU cost."""
        return [self.process.pid, *children(self.process.pid)]

    def new_arrivals(self) -> list[Arrival]:
        """The requests logged since the last call (complete lines only)."""
        if not self.log_path.exists():
            return []
        with self.log_path.open("rb") as log:
            log.seek(self._read)
            chunk = log.read()
        self._read += len(chunk)
        text = self._partial + chunk.decode(errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        return parse_lines(lines)


@contextmanager
def nginx(root: Path) -> Iterator[Target]:
    """nginx serving from `root` until the block ends; it then shuts down gracefully, writing out its log buffer."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=port, log_format=LOG_FORMAT))
    process = subprocess.Popen([nginx_binary(), "-c", str(root / "nginx.conf"), "-p", str(root)])
    try:
        time.sleep(0.5)
        if process.poll() is not None:
            raise SystemExit(f"nginx did not start: {(root / 'error.log').read_text(errors='replace')}")
        yield Target(f"http://127.0.0.1:{port}", process, root / "access.log")
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
