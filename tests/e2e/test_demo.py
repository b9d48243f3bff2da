"""`make demo`: the flash-sale scenario, live and compressed, checks its own outcome and stops cleanly.

The first tests run `python -m examples.demo` as a newcomer would (its own Pacer as processes, its own shop); the
last ones show that the summary's checks can fail, on records of behaviour the scenario must not show.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from examples.demo import checks
from examples.demo.steering import OneShotRequest
from pacer_common.ports import parse_addr
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "examples.demo"]


def listening(addr: str) -> bool:
    host, port = parse_addr(addr)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


@pytest.mark.e2e
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("options", "steered_by"),
    [([], "(rule surge)"), (["--agent"], "agent  traffic-monitor: tighten")],
    ids=["policies", "agent"],
)
def test_the_demo_plays_the_flash_sale_and_every_check_passes(options: list[str], steered_by: str) -> None:
    # 60x: 40 simulated minutes in 40 s; `make demo` runs at 30x, the checks' tolerances are in simulated seconds.
    # By default no agent runs (the traffic monitor's policies steer); --agent steers from outside instead.
    command = [*DEMO, "--compression", "60", *options]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=200)
    output = done.stdout
    assert done.returncode == 0, output + done.stderr
    summary = output[output.index("Summary") :]
    verdicts = re.findall(r"^  (PASS|FAIL)  ", summary, flags=re.MULTILINE)
    assert len(verdicts) >= 25
    assert set(verdicts) == {"PASS"}, summary
    assert f"all {len(verdicts)} checks PASS" in summary
    timeline = output[: output.index("Summary")]
    for seen in ("SURGE", "traffic-monitor: tighten to 20 s", "on-call-page called", "back to baseline", steered_by):
        assert seen in timeline


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_services_and_the_shop(tmp_path: Path) -> None:
    output = tmp_path / "demo.log"
    with output.open("wb") as sink:
        demo = subprocess.Popen([*DEMO, "--compression", "60"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "BASELINE" in output.read_text(), 60, "the timeline to start")
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
    text = output.read_text()
    assert code == 130, text
    assert "interrupted: stopping everything" in text
    addrs = re.findall(r"(?:control plane|scheduler|shop +http://)\s*(127\.0\.0\.1:\d+)", text)
    assert len(addrs) == 3, text
    assert not any(listening(addr) for addr in addrs)


def record(**hits: list[float]) -> checks.Record:
    """A record of the scenario as it should go, with `hits` replacing some endpoints' fire times."""
    asked = {
        "cache-warm-up": [OneShotRequest("", 550, 550), OneShotRequest("", 560, 1150)],
        "ops-chat": [OneShotRequest("", 790, 790), OneShotRequest("", 800, 1390)],
    }
    base = {"cache-warm-up": [550.5, 1150.5], "ops-chat": [790.5]}
    return checks.Record({**base, **hits}, [], asked)


def verdicts(record: checks.Record) -> dict[str, bool]:
    return {check.subject: check.passed for check in checks.one_shots(record)}


def test_the_checks_pass_recovery_and_alerts_fired_as_steered() -> None:
    found = verdicts(record())
    assert found["fire cache-warm-up"]
    assert found["fire ops-chat"]


@pytest.mark.parametrize(
    ("hits", "failing"),
    [
        ({"ops-chat": [790.5, 900.0]}, "fire ops-chat"),  # again within its 10-minute cooldown
        ({"cache-warm-up": [550.5, 1170.0]}, "fire cache-warm-up"),  # 20 s after the cooldown ended
        ({"ops-chat": [700.0]}, "fire ops-chat"),  # before the pages were critical, and unasked
        ({"on-call-page": [1100.0, 1200.0]}, "on-call at most once"),
    ],
)
def test_the_checks_fail_when_an_alert_misbehaves(hits: dict[str, list[float]], failing: str) -> None:
    assert not verdicts(record(**hits))[failing]
