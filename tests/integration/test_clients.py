"""The client examples of docs/clients.md, run as a user runs them against a real control plane."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.settings import process_environment
from tests.support.harness import Harness

ROOT = Path(__file__).resolve().parents[2]
NODE_EXAMPLE = ROOT / "examples" / "clients" / "node"
BUF = ROOT / ".venv" / "bin" / "buf"


@pytest.fixture(scope="module")
def node_example() -> Path:
    """The Node.js example with its locked dependencies installed (`npm ci`, from the npm registry, once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the Node.js client example (Debian: apt-get install nodejs npm)")
    if not (NODE_EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_EXAMPLE, check=True, timeout=300)
    return NODE_EXAMPLE


def test_the_node_example_creates_an_endpoint_and_lists_the_tenants_jobs(harness: Harness, node_example: Path) -> None:
    harness.a.CreateJob(pb.CreateJobRequest(name="made in Python"))

    result = subprocess.run(
        ["node", "create-and-list.mjs"],
        cwd=node_example,
        env=process_environment({"PACER_CONTROL_ADDR": harness.address, "PACER_API_KEY": harness.a.key or ""}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "endpoint ep_" in result.stdout
    assert "JOB_STATUS_ACTIVE  Node.js example" in result.stdout
    assert "made in Python" in result.stdout


def test_the_node_example_reports_a_refusal_by_its_status_name(harness: Harness, node_example: Path) -> None:
    result = subprocess.run(
        ["node", "create-and-list.mjs"],
        cwd=node_example,
        env=process_environment({"PACER_CONTROL_ADDR": harness.address, "PACER_API_KEY": "pk_abcdefgh_wrong"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("UNAUTHENTICATED: ")


def test_buf_curl_calls_an_rpc_with_the_protos_as_its_schema(harness: Harness) -> None:
    job_id = harness.a.CreateJob(pb.CreateJobRequest(name="seen by buf curl")).job_id

    result = subprocess.run(
        [
            str(BUF),
            "curl",
            "--protocol",
            "grpc",
            "--http2-prior-knowledge",
            "--schema",
            str(ROOT / "protos"),
            "-H",
            f"authorization: Bearer {harness.a.key}",
            "-d",
            json.dumps({"job_id": job_id}),
            f"http://{harness.address}/pacer.control.v1.ControlService/GetJob",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["job"]["name"] == "seen by buf curl"
