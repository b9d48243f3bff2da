"""Pacer's services as real processes for end-to-end tests, with health-checked start and clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def health_status(addr: str, service: str = "", timeout_s: float = 2.0) -> str:
    """The grpc.health.v1 status name `service` has at `addr` (plaintext), or the gRPC error code's name."""
    with grpc.insecure_channel(addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as error:
            return str(error.code().name)  # type: ignore[attr-defined]
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def wait_serving(addr: str, deadline_s: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll grpc.health.v1 until the server at `addr` says SERVING."""
    give_up = time.monotonic() + deadline_s
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < give_up:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode} before serving")
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{addr} did not become SERVING within {deadline_s} s")


class ServiceProcess:
    """One service started from its console script, logs captured to a file."""

    def __init__(self, command: str, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        full_env = {**os.environ, **env}
        self.process = subprocess.Popen([str(BIN / command)], env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then wait; returns the exit code (kills after the timeout)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_service(command: str, addr: str | None, env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    """Start a service; when it listens on `addr`, return only once it reports SERVING (asked on its plaintext
    health port, PACER_HEALTH_ADDR, when it has one: `addr` may speak TLS)."""
    service = ServiceProcess(command, env, log_path)
    if addr is None:
        return service
    try:
        wait_serving(env.get("PACER_HEALTH_ADDR") or addr, process=service.process)
    except (RuntimeError, TimeoutError):
        service.stop()
        raise AssertionError(f"{command} did not start:\n{service.logs()}") from None
    return service


def start_control(
    tmp: Path, database_url: str, name: str = "control", addr: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[ServiceProcess, str]:
    """Start pacer-control (on a free port unless `addr`) with its state in `tmp`; returns it once healthy.

    Its metrics go to a free port too, unless `env` names one: the default port would collide between tests.
    """
    addr = addr or f"127.0.0.1:{free_port()}"
    settings = {
        "PACER_LISTEN_ADDR": addr,
        "PACER_DATABASE_URL": database_url,
        "PACER_VAR_DIR": str(tmp / "var"),
        "PACER_METRICS_ADDR": f"127.0.0.1:{free_port()}",
    }
    return start_service("pacer-control", addr, {**settings, **(env or {})}, tmp / f"{name}.log"), addr
