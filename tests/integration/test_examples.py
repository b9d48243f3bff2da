"""The examples as a user runs them: they find the control plane as pacerctl does, and say so when it is not there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pacer_common.processes import free_port
from pacer_common.settings import process_environment

ROOT = Path(__file__).resolve().parents[2]


def run_example(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in process_environment().items() if not name.startswith("PACER_")}
    return subprocess.run(
        [sys.executable, "-m", "examples.first_endpoint", "https://example.com/health"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_example_with_no_control_plane_at_its_address_says_so_without_a_traceback() -> None:
    nowhere = f"127.0.0.1:{free_port()}"

    result = run_example({"PACER_CONTROL_ADDR": nowhere, "PACER_API_KEY": "pk_abcdefgh_key"})

    assert result.returncode == 1
    assert f"cannot reach the control plane at {nowhere}" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_example_creates_its_endpoint_on_the_control_plane_named_by_pacer_control_addr(harness) -> None:
    result = run_example({"PACER_CONTROL_ADDR": harness.address, "PACER_API_KEY": harness.a.key})

    assert result.returncode == 0, result.stderr
    assert "endpoint ep_" in result.stdout
