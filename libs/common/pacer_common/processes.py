"""Pacer's services as local processes: started from their console scripts, up once they say so, stopped cleanly.

One launcher for everything that runs the services on one machine: `scripts/run_local.py` (`make run`), the demo
(`examples/demo`) and the end-to-end tests (`tests/support`). Each service is its console script from this
virtualenv, given this process's environment with its own settings on top; it is up once grpc.health.v1 says
SERVING (or, for HTTP services, once a URL answers), and stopped with SIGTERM, so it drains, then killed only if
it outlives its timeout.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pacer_common.settings import process_environment

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.1


class StartError(RuntimeError):
    """A service exited, or did not report that it is up in time."""


def free_port() -> int:
    """A loopback port free right now (another process may take it before it is used)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_addr() -> str:
    """A loopback `host:port` with a port free right now."""
    return f"127.0.0.1:{free_port()}"


def health_status(addr: str, service: str = "", timeout_s: float = 2.0) -> str:
    """The grpc.health.v1 status name `service` has at `addr` (plaintext), or the gRPC error code's name."""
    with grpc.insecure_channel(addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def is_serving(addr: str) -> bool:
    """True when the grpc.health.v1 server at `addr` answers SERVING within a second."""
    return health_status(addr, timeout_s=1.0) == "SERVING"


def answers_http(url: str) -> bool:
    """True when `url` answers 200 within a second (an HTTP service's readiness endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


class ServiceProcess:
    """One service started from its console script `command` (with `args`) and `env` added to this process's
    environment.

    Its output goes to `log_path`, or, when None, to a pipe (`process.stdout`) the caller reads. With
    `own_session` it runs in a session of its own, so a Ctrl-C in the terminal reaches only the launcher, which
    then stops the services in an order of its choosing.
    """

    def __init__(
        self,
        command: str,
        env: Mapping[str, str],
        log_path: Path | None = None,
        *,
        args: Sequence[str] = (),
        name: str = "",
        own_session: bool = False,
    ) -> None:
        self.name = name or command
        self.log_path = log_path
        self._log: IO[bytes] | None = log_path.open("wb") if log_path is not None else None
        self.process = subprocess.Popen(
            [str(BIN / command), *args],
            env=process_environment(env),
            stdout=self._log if self._log is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )

    def wait_until(self, is_up: Callable[[], bool], what: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll `is_up()` until it holds; StartError when the process exits first or `timeout_s` passes."""
        give_up = time.monotonic() + timeout_s
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise StartError(f"{self.name} exited with {self.process.returncode}{self._where()}")
            if is_up():
                return
            time.sleep(POLL_S)
        raise StartError(f"{self.name} did not report {what} within {timeout_s:.0f} s{self._where()}")

    def wait_serving(self, health_addr: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until grpc.health.v1 at `health_addr` (plaintext) says SERVING; StartError otherwise."""
        self.wait_until(lambda: is_serving(health_addr), "SERVING", timeout_s)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then wait (kill after `timeout_s`); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
        return int(self.process.returncode)

    def logs(self) -> str:
        """What it wrote to its log file so far ("" when its output goes to a pipe)."""
        return self.log_path.read_text(errors="replace") if self.log_path is not None else ""

    def _where(self) -> str:
        return f"; log: {self.log_path}" if self.log_path is not None else ""


def stop_in_order(
    services: Mapping[str, ServiceProcess], order: tuple[str, ...], timeout_s: float = STOP_TIMEOUT_S
) -> dict[str, int]:
    """Stop the services named in `order`, in that order, then any others, each as `ServiceProcess.stop` does;
    returns exit codes by name. The order matters: a scheduler drains through executors still running."""
    ranked = sorted(services, key=lambda name: order.index(name) if name in order else len(order))
    return {name: services[name].stop(timeout_s) for name in ranked}
