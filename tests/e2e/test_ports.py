"""A port already in use stops a service at start, with one plain line naming the setting and the address.

Nothing shares a port: before, gRPC servers bound with SO_REUSEPORT, so a second control plane on a port in use
started and answered half the connections from its own database.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.settings import process_environment
from tests.support.harness import Client
from tests.support.processes import BIN, free_port, health_status, start_control

pytestmark = pytest.mark.e2e

EXIT_WITHIN_S = 20  # interpreter start and imports included; a refused start takes one to three seconds


def local_addr() -> str:
    return f"127.0.0.1:{free_port()}"


@contextmanager
def held_port() -> Iterator[str]:
    """An address some other program listens on, for as long as the block runs."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield f"127.0.0.1:{holder.getsockname()[1]}"


def run_to_exit(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Start the service, wait for it to exit (failing the test when it keeps running), capture its output."""
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        env=process_environment(env),
        capture_output=True,
        text=True,
        timeout=EXIT_WITHIN_S,
    )


def settings_of(command: str, tmp: Path) -> dict[str, str]:
    """Settings under which `command` would start, every port it listens on free."""
    token = {"PACER_SERVICE_TOKEN": "svc_ports", "PACER_VAR_DIR": str(tmp / "var")}
    match command:
        case "pacer-control":
            return {
                **token,
                "PACER_DATABASE_URL": f"sqlite:///{tmp / 'pacer.db'}",
                "PACER_LISTEN_ADDR": local_addr(),
                "PACER_INTERNAL_ADDR": local_addr(),
                "PACER_HEALTH_ADDR": local_addr(),
                "PACER_METRICS_ADDR": local_addr(),
            }
        case "pacer-scheduler":
            return {
                **token,
                "PACER_CONTROL_ADDR": local_addr(),
                "PACER_SCHEDULER_ADDR": local_addr(),
                "PACER_HEALTH_ADDR": local_addr(),
                "PACER_METRICS_ADDR": local_addr(),
            }
        case "pacer-executor":
            return {
                **token,
                "PACER_SCHEDULER_ADDRS": local_addr(),
                "PACER_HEALTH_ADDR": local_addr(),
                "PACER_METRICS_ADDR": local_addr(),
            }
        case "pacer-gateway":
            return {
                "PACER_CONTROL_ADDR": local_addr(),
                "PACER_GATEWAY_ADDR": local_addr(),
                "PACER_METRICS_ADDR": local_addr(),
            }
        case "pacer-mcp":
            return {
                "PACER_CONTROL_ADDR": local_addr(),
                "PACER_MCP_ADDR": local_addr(),
                "PACER_METRICS_ADDR": local_addr(),
            }
    raise AssertionError(f"no settings for {command}")


def assert_refused(result: subprocess.CompletedProcess[str], command: str, setting: str, addr: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"{command}: {setting}={addr} is already in use" in result.stderr, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize(
    ("command", "setting"),
    [
        ("pacer-control", "PACER_LISTEN_ADDR"),
        ("pacer-control", "PACER_INTERNAL_ADDR"),
        ("pacer-control", "PACER_HEALTH_ADDR"),
        ("pacer-control", "PACER_METRICS_ADDR"),
        ("pacer-scheduler", "PACER_SCHEDULER_ADDR"),
        ("pacer-scheduler", "PACER_HEALTH_ADDR"),
        ("pacer-scheduler", "PACER_METRICS_ADDR"),
        ("pacer-executor", "PACER_HEALTH_ADDR"),
        ("pacer-executor", "PACER_METRICS_ADDR"),
        ("pacer-gateway", "PACER_GATEWAY_ADDR"),
        ("pacer-gateway", "PACER_METRICS_ADDR"),
        ("pacer-mcp", "PACER_MCP_ADDR"),
        ("pacer-mcp", "PACER_METRICS_ADDR"),
    ],
)
def test_a_port_in_use_stops_the_service_at_start_naming_the_setting(
    tmp_path: Path, command: str, setting: str
) -> None:
    arguments = ["--transport", "http"] if command == "pacer-mcp" else []
    with held_port() as addr:
        result = run_to_exit([command, *arguments], {**settings_of(command, tmp_path), setting: addr})
    assert_refused(result, command, setting, addr)
    if command == "pacer-control":  # it gives up before it touches its database
        assert not (tmp_path / "pacer.db").exists()


def test_a_second_control_plane_on_the_port_of_a_running_one_does_not_start(tmp_path: Path) -> None:
    first, addr = start_control(tmp_path, f"sqlite:///{tmp_path / 'first.db'}")
    try:
        key_file = tmp_path / "var" / "dev-api-key"
        key = key_file.read_text()
        # Another database, the same var folder: had it started, it would have answered some of the calls and
        # written its own dev key over the first one's.
        second = {"PACER_LISTEN_ADDR": addr, "PACER_DATABASE_URL": f"sqlite:///{tmp_path / 'second.db'}"}
        env = {**second, "PACER_VAR_DIR": str(tmp_path / "var"), "PACER_METRICS_ADDR": local_addr()}
        result = run_to_exit(["pacer-control"], env)

        assert_refused(result, "pacer-control", "PACER_LISTEN_ADDR", addr)
        assert not (tmp_path / "second.db").exists()
        assert key_file.read_text() == key
        assert first.process.poll() is None
        assert health_status(addr) == "SERVING"
        for attempt in range(6):  # a new connection each time: none of them may land elsewhere
            with grpc.insecure_channel(addr) as channel:
                Client(channel, key.strip()).CreateJob(pb.CreateJobRequest(name=f"after {attempt}"))
            with grpc.insecure_channel(addr) as channel:
                listed = Client(channel, key.strip()).ListJobs(pb.ListJobsRequest(page_size=50))
            assert len(listed.jobs) == attempt + 1
    finally:
        assert first.stop() == 0, first.logs()
