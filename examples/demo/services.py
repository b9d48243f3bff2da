"""Pacer's three services as local processes for the demo: SQLite in a folder of its own, free ports.

The same approach as `scripts/run_local.py` and the end-to-end tests' stack: each service is its console script from
this virtualenv, started in its own process group (so a Ctrl-C reaches only the demo, which then stops them in
order), logging to a file, and considered up once grpc.health.v1 says SERVING.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
STOP_ORDER = ("scheduler", "executor", "control")


class StartError(RuntimeError):
    """A service exited or did not report SERVING in time."""


def free_addr() -> str:
    """A loopback address with a port free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def is_serving(addr: str) -> bool:
    """True when the grpc.health.v1 server at `addr` answers SERVING."""
    with grpc.insecure_channel(addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class Service:
    """One running service process and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def wait_serving(self, health_addr: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll its health until SERVING; raises StartError if it exits or takes longer than `timeout_s`."""
        give_up = time.monotonic() + timeout_s
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise StartError(f"{self.name} exited with {self.process.returncode}; log: {self.log_path}")
            if is_serving(health_addr):
                return
            time.sleep(0.1)
        raise StartError(f"{self.name} did not report SERVING within {timeout_s:.0f} s; log: {self.log_path}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait (kill after `timeout_s`); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return int(self.process.returncode)


def launch(name: str, command: str, env: Mapping[str, str], folder: Path) -> Service:
    """Start `command` from this virtualenv with `env` added, its output in `folder/<name>.log`."""
    log_path = folder / f"{name}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(BIN / command)],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        process_group=0,
    )
    return Service(name, process, log_path, log)


@dataclass
class LocalPacer:
    """Control plane, one scheduler and one executor on SQLite in `folder`.

    `control_env` and `scheduler_env` are added to those services' settings (the demo shortens the interval floor,
    the claim horizon and the claim interval to suit its compressed time).
    """

    folder: Path
    control_env: Mapping[str, str] = field(default_factory=dict)
    scheduler_env: Mapping[str, str] = field(default_factory=dict)
    control_addr: str = field(default_factory=free_addr)
    scheduler_addr: str = field(default_factory=free_addr)
    executor_health_addr: str = field(default_factory=free_addr)
    services: list[Service] = field(default_factory=list)

    @property
    def var_dir(self) -> Path:
        """Where the control plane writes the dev key and the service token."""
        return self.folder / "var"

    def api_key(self) -> str:
        """The dev tenant's key, written by the control plane on its first start."""
        return (self.var_dir / "dev-api-key").read_text().strip()

    def start(self) -> None:
        """Start the three services in order, each once the one before is SERVING; raises StartError."""
        control = launch("control", "pacer-control", self._control_settings(), self.folder)
        self.services.append(control)
        control.wait_serving(self.control_addr)
        scheduler = launch("scheduler", "pacer-scheduler", self._scheduler_settings(), self.folder)
        self.services.append(scheduler)
        scheduler.wait_serving(self.scheduler_addr)
        executor = launch("executor", "pacer-executor", self._executor_settings(), self.folder)
        self.services.append(executor)
        executor.wait_serving(self.executor_health_addr)  # ready once its stream to the scheduler is open

    def stop(self) -> dict[str, int]:
        """SIGTERM each service and wait for it, scheduler first: it stops claiming and dispatches what it already
        claimed while the executor is still there, so no run is left to expire. Returns exit codes by name."""
        ordered = sorted(self.services, key=lambda service: STOP_ORDER.index(service.name))
        codes = {service.name: service.stop() for service in ordered}
        self.services.clear()
        return codes

    def _common(self) -> dict[str, str]:
        return {"PACER_VAR_DIR": str(self.var_dir), "PACER_METRICS_ADDR": "", "PACER_LOG_LEVEL": "INFO"}

    def _control_settings(self) -> dict[str, str]:
        return {
            **self._common(),
            "PACER_LISTEN_ADDR": self.control_addr,
            "PACER_DATABASE_URL": f"sqlite:///{self.folder / 'pacer.db'}",
            **self.control_env,
        }

    def _scheduler_settings(self) -> dict[str, str]:
        return {
            **self._common(),
            "PACER_SCHEDULER_ADDR": self.scheduler_addr,
            "PACER_CONTROL_ADDR": self.control_addr,
            "PACER_SCHEDULER_ID": "demo-scheduler",
            **self.scheduler_env,
        }

    def _executor_settings(self) -> dict[str, str]:
        return {
            **self._common(),
            "PACER_SCHEDULER_ADDRS": self.scheduler_addr,
            "PACER_EXECUTOR_ID": "demo-executor",
            "PACER_EGRESS_ALLOW": "loopback",  # the demo shop listens on 127.0.0.1
            "PACER_HEALTH_ADDR": self.executor_health_addr,
            "PACER_CAPACITY": "20",
        }
