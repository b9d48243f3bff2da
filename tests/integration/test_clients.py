"""The client examples of docs/clients.md, run as a user runs them against a real control plane."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.settings import process_environment
from tests.support.harness import Harness

ROOT = Path(__file__).resolve().parents[2]
NODE_EXAMPLE = ROOT / "examples" / "clients" / "node"
GO_EXAMPLE = ROOT / "examples" / "clients" / "go"
BUF = ROOT / ".venv" / "bin" / "buf"
GRPCURL = ROOT / ".venv" / "bin" / "grpcurl"
GO_TOOLS = ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc")


@pytest.fixture(scope="module")
def node_example() -> Path:
    """The Node.js example with its locked dependencies installed (`npm ci`, from the npm registry, once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the Node.js client example (Debian: apt-get install nodejs npm)")
    if not (NODE_EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_EXAMPLE, check=True, timeout=300)
    return NODE_EXAMPLE


@pytest.fixture(scope="module")
def go_example() -> Path:
    """The Go example's binary, built by its build.sh (stubs generated from the protos, Debian's Go libraries)."""
    missing = [tool for tool in GO_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing for the Go client example: run scripts/ensure-go.sh (make test does)"
        )
    built = subprocess.run([str(GO_EXAMPLE / "build.sh")], capture_output=True, text=True, timeout=240, check=False)
    if built.returncode != 0:
        pytest.fail(
            f"examples/clients/go/build.sh failed (scripts/ensure-go.sh installs what it needs):\n{built.stderr}"
        )
    return Path(built.stdout.strip())


def run_example(argv: list[str], address: str, key: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a client example as a user does: the control plane's address and an API key in its environment."""
    return subprocess.run(
        argv,
        cwd=cwd,
        env=process_environment({"PACER_CONTROL_ADDR": address, "PACER_API_KEY": key}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_node_example_creates_an_endpoint_and_lists_the_tenants_jobs(harness: Harness, node_example: Path) -> None:
    harness.a.CreateJob(pb.CreateJobRequest(name="made in Python"))

    result = run_example(["node", "create-and-list.mjs"], harness.address, harness.a.key or "", cwd=node_example)

    assert result.returncode == 0, result.stderr
    assert "endpoint ep_" in result.stdout
    assert "JOB_STATUS_ACTIVE  Node.js example" in result.stdout
    assert "made in Python" in result.stdout


def test_the_node_example_reports_a_refusal_by_its_status_name(harness: Harness, node_example: Path) -> None:
    result = run_example(["node", "create-and-list.mjs"], harness.address, "pk_abcdefgh_wrong", cwd=node_example)

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


@pytest.mark.timeout(300)  # the first build on a machine compiles grpc-go and its dependencies (about a minute)
def test_the_go_example_creates_an_endpoint_and_lists_the_tenants_jobs(harness: Harness, go_example: Path) -> None:
    harness.a.CreateJob(pb.CreateJobRequest(name="made in Python"))

    result = run_example([str(go_example)], harness.address, harness.a.key or "")

    assert result.returncode == 0, result.stderr
    assert "endpoint ep_" in result.stdout
    assert "JOB_STATUS_ACTIVE  Go example" in result.stdout
    assert "made in Python" in result.stdout


@pytest.mark.timeout(300)
def test_the_go_example_reports_a_refusal_by_its_status_name(harness: Harness, go_example: Path) -> None:
    result = run_example([str(go_example)], harness.address, "pk_abcdefgh_wrong")

    assert result.returncode == 1
    assert result.stderr.startswith("Unauthenticated: ")


def test_the_docs_show_the_go_example_as_it_is() -> None:
    docs = (ROOT / "docs" / "clients.md").read_text()
    snippets = re.findall(r"```go\n(.*?)```", docs, flags=re.DOTALL)

    assert snippets
    for snippet in snippets:
        assert snippet in (GO_EXAMPLE / "main.go").read_text()


def test_grpcurl_lists_the_jobs_through_server_reflection(harness: Harness) -> None:
    if not GRPCURL.exists():
        pytest.fail(f"{GRPCURL} is missing: make setup installs it (requirements-dev.txt)")
    harness.a.CreateJob(pb.CreateJobRequest(name="seen by grpcurl"))

    result = subprocess.run(
        [
            str(GRPCURL),
            "-plaintext",
            "-H",
            f"authorization: Bearer {harness.a.key}",
            "-d",
            json.dumps({"page_size": 10}),
            harness.address,
            "pacer.control.v1.ControlService/ListJobs",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert [job["name"] for job in json.loads(result.stdout)["jobs"]] == ["seen by grpcurl"]
