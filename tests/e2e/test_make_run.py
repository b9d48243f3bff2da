"""What `make run` gives a newcomer: three services up, a first endpoint firing within seconds, a clean Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pacer_common.settings import process_environment
from tests.support.polling import wait_for
from tests.support.processes import free_port
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_run_local_starts_everything_and_a_first_endpoint_fires(tmp_path: Path, target: HttpTarget) -> None:
    control, scheduler = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = process_environment(
        {
            "PACER_DATABASE_URL": f"sqlite:///{tmp_path / 'pacer.db'}",
            "PACER_VAR_DIR": str(tmp_path / "var"),
            "PACER_LISTEN_ADDR": control,
            "PACER_CONTROL_ADDR": control,
            "PACER_SCHEDULER_ADDR": scheduler,
            "PACER_SCHEDULER_ADDRS": scheduler,
            "PACER_GATEWAY_ADDR": f"127.0.0.1:{free_port()}",
            # Every port moved off its default, as a second stack on the same machine would: each service its own.
            **{
                f"PACER_{name}_METRICS_ADDR": f"127.0.0.1:{free_port()}"
                for name in ("CONTROL", "SCHEDULER", "EXECUTOR", "GATEWAY")
            },
            "PACER_EXECUTOR_HEALTH_ADDR": f"127.0.0.1:{free_port()}",
        }
    )
    output = tmp_path / "run.log"
    with output.open("wb") as sink:
        launcher = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run_local.py")], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: "Pacer is running" in output.read_text(), 60, "the three services")
        wait_for(lambda: "executor connected" in output.read_text(), 30, "the executor to connect")
        created = subprocess.run(
            [sys.executable, "-m", "examples.first_endpoint", target.url("/health"), "--every-s", "1"],
            cwd=ROOT,
            env={**env, "PACER_API_KEY": (tmp_path / "var" / "dev-api-key").read_text().strip()},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert created.returncode == 0, created.stderr
        wait_for(lambda: len(target.hits_on("/health")) >= 2, 10, "the first endpoint to fire")
        wait_for(lambda: " run " in output.read_text() and "SUCCESS 200" in output.read_text(), 10, "a run line")
        with urllib.request.urlopen(f"http://{env['PACER_GATEWAY_ADDR']}/openapi.json", timeout=10) as answer:
            assert answer.status == 200  # the REST gateway is up too
        for name in ("CONTROL", "SCHEDULER", "EXECUTOR", "GATEWAY"):  # each service serves metrics on its own port
            with urllib.request.urlopen(f"http://{env[f'PACER_{name}_METRICS_ADDR']}/metrics", timeout=10) as answer:
                assert b"pacer_" in answer.read()
        with urllib.request.urlopen(f"http://{env['PACER_GATEWAY_ADDR']}/", timeout=10) as page:
            assert b"/console/app.js" in page.read()  # and serves the console, as the banner says
        assert f"Console on http://{env['PACER_GATEWAY_ADDR']}/" in output.read_text()
    finally:
        launcher.send_signal(signal.SIGINT)
        code = launcher.wait(timeout=60)
    assert code == 0, output.read_text()
    log = output.read_text()
    assert "scheduler stopped" in log
    assert "control plane stopping" in log


def test_run_local_refuses_one_metrics_port_for_every_service(tmp_path: Path) -> None:
    env = process_environment({"PACER_VAR_DIR": str(tmp_path / "var"), "PACER_METRICS_ADDR": "127.0.0.1:9999"})

    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_local.py")], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2
    assert "PACER_CONTROL_METRICS_ADDR" in result.stderr
