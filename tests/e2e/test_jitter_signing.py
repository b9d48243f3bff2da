"""Jitter and signed requests end to end: control, a scheduler and an executor as processes, a real HTTP target.

Runs land inside their jitter window while X-Pacer-Scheduled-For stays the slot; a run held for its jittered start
by a scheduler killed with kill -9 is claimed again by the next one and starts at the very same time; and the target
verifies every signature with the recipes of docs/signing.md, run as written (Python here, Node with the machine's
`node`). One stack for the module, on the embedded SQLite (the integration tests cover both backends).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common import jitter
from tests.support.environment import require
from tests.support.polling import wait_for
from tests.support.stack import Stack
from tests.support.target import Hit, HttpTarget

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "signing.md"
SECRET = "e2e-signing-secret-0123456789abcdefXYZ"
ROTATED = "e2e-rotated-secret-9876543210fedcbaXYZ"
BODY = '{"event":"tick","note":"caf\u00e9"}'
# How late a dispatch may be on a loaded 2-core machine and still count as on time.
LATE_S = 0.75
DEBUG = {"PACER_LOG_LEVEL": "DEBUG"}


@pytest.fixture(scope="module")
def target() -> Iterator[HttpTarget]:
    running = HttpTarget().start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("jitter")
    # At DEBUG, so every log statement on a signed run's path is exercised (see the last test).
    running = Stack(tmp, f"sqlite:///{tmp / 'pacer.db'}", control_env=DEBUG)
    try:
        running.add_scheduler(env=DEBUG)
        running.add_executor(env=DEBUG)
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def job(stack: Stack) -> str:
    return stack.job("jitter-signing")


def python_recipe() -> Callable[..., bool]:
    """`verify_pacer_signature` exactly as docs/signing.md gives it."""
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    scope: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), scope)  # the documented recipe, run as written
    return scope["verify_pacer_signature"]  # type: ignore[no-any-return]


def node_recipe(tmp: Path, cases: list[dict[str, Any]]) -> list[bool]:
    """Each case checked by `verifyPacerSignature` exactly as docs/signing.md gives it, run by the machine's node."""
    node = shutil.which("node")
    if node is None:
        require("node is not on PATH", "the Node recipe of docs/signing.md")
    (code,) = re.findall(r"```javascript\n(.*?)```", DOC.read_text(), re.S)
    (tmp / "recipe.js").write_text(code)
    (tmp / "check.js").write_text(
        'const { verifyPacerSignature } = require("./recipe.js");\n'
        'const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));\n'
        "console.log(JSON.stringify(cases.map((c) =>\n"
        '  verifyPacerSignature(c.header, c.runId, Buffer.from(c.body, "utf8"), c.secrets, c.nowS))));\n'
    )
    done = subprocess.run(
        [node, str(tmp / "check.js")], input=json.dumps(cases), capture_output=True, text=True, timeout=30, check=True
    )
    return [bool(ok) for ok in json.loads(done.stdout)]


def add(stack: Stack, job: str, path: str, target: HttpTarget, **fields: Any) -> pb.AddEndpointToJobResponse:
    request = pb.AddEndpointToJobRequest(job_id=job, name=path.strip("/"), url=target.url(path), **fields)
    return stack.client.AddEndpointToJob(request)


def details(stack: Stack, hit: Hit) -> pb.Run:
    return stack.client.GetRunDetails(pb.GetRunDetailsRequest(run_id=hit.run_id)).run


def when(stamp: Any) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


def test_runs_land_inside_their_jitter_window_and_name_their_slot(stack: Stack, job: str, target: HttpTarget) -> None:
    interval_ms, jitter_ms = 2_000, 1_500
    endpoint_id = add(
        stack, job, "/spread", target, baseline=pb.Baseline(interval_ms=interval_ms), jitter_ms=jitter_ms
    ).endpoint_id
    wait_for(lambda: len(target.hits_on("/spread")) >= 5, 30, "five jittered runs")
    offsets = []
    for hit in target.hits_on("/spread")[:5]:
        run = details(stack, hit)
        slot = when(run.scheduled_for)
        # X-Pacer-Scheduled-For is the slot, not the jittered start.
        assert hit.scheduled_for == slot.replace(microsecond=slot.microsecond // 1000 * 1000)
        expected = slot + timedelta(milliseconds=jitter.offset_ms(endpoint_id, slot, jitter_ms))
        arrived = hit.received_at
        assert expected <= arrived <= expected + timedelta(seconds=LATE_S), (slot, expected, arrived)
        assert arrived <= slot + timedelta(milliseconds=jitter_ms + LATE_S * 1000)
        offsets.append((arrived - slot).total_seconds())
    assert max(offsets) - min(offsets) > 0.1, offsets  # spread, not one fixed delay


def test_a_run_reclaimed_after_its_scheduler_is_killed_starts_at_the_same_time(
    stack: Stack, job: str, target: HttpTarget
) -> None:
    interval_ms, jitter_ms = 12_000, 11_000
    # An endpoint whose first run waits at least 7 s past its slot: long enough to kill the scheduler holding it,
    # let its session lapse (3 s) and have the next scheduler claim the run again, before the start comes.
    for attempt in range(40):
        added = add(
            stack, job, f"/held-{attempt}", target, baseline=pb.Baseline(interval_ms=interval_ms), jitter_ms=jitter_ms
        )
        slot = when(added.next_run_at)
        offset_ms = jitter.offset_ms(added.endpoint_id, slot, jitter_ms)
        if offset_ms >= 7_000:
            break
        stack.client.DeleteEndpoint(pb.DeleteEndpointRequest(endpoint_id=added.endpoint_id))
    else:
        raise AssertionError("no endpoint with a long enough offset in 40 tries")
    endpoint_id, path, start = added.endpoint_id, f"/held-{attempt}", slot + timedelta(milliseconds=offset_ms)

    def running() -> list[pb.RunSummary]:
        return [run for run in stack.runs(endpoint_id) if run.status == pb.RUN_STATUS_RUNNING]

    wait_for(running, 20, "the first claim of the slot")
    (first,) = running()
    assert datetime.now(UTC) < start - timedelta(seconds=5)  # still held by the scheduler, waiting for its start
    process, _ = stack.schedulers["scheduler"]
    os.kill(process.process.pid, signal.SIGKILL)
    process.process.wait()
    stack.restart_scheduler()

    wait_for(lambda: target.hits_on(path), 30, "the run of the slot, claimed again")
    (hit,) = target.hits_on(path)
    run = details(stack, hit)
    assert hit.run_id != first.run_id  # a new claim: the first one was released with its dead scheduler
    assert [r.run_id for r in stack.runs(endpoint_id)] == [hit.run_id]
    assert when(run.scheduled_for) == slot
    assert start <= hit.received_at <= start + timedelta(seconds=LATE_S), (start, hit.received_at)


def test_the_target_verifies_every_signature_with_the_documented_recipes(
    stack: Stack, job: str, target: HttpTarget, tmp_path: Path
) -> None:
    endpoint_id = add(
        stack,
        job,
        "/signed",
        target,
        method="POST",
        body=BODY,
        baseline=pb.Baseline(interval_ms=1_000),
        signing_secret=SECRET,
    ).endpoint_id
    wait_for(lambda: len(target.hits_on("/signed")) >= 2, 20, "two signed runs")
    stack.client.UpdateEndpointConfig(
        pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, signing_secret=ROTATED, signing_overlap_ms=600_000)
    )
    rotated_after = len(target.hits_on("/signed"))
    wait_for(lambda: len(target.hits_on("/signed")) >= rotated_after + 3, 20, "signed runs after the rotation")
    stack.client.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=endpoint_id))
    hits = target.hits_on("/signed")
    verify = python_recipe()
    cases = []
    for hit in hits:
        header = hit.headers["X-Pacer-Signature"]
        assert hit.body == BODY
        assert verify(header, hit.run_id, hit.body.encode(), [SECRET])
        assert not verify(header, hit.run_id, hit.body.encode() + b" ", [SECRET, ROTATED])  # an altered body
        assert not verify(header, "run_someone_else", hit.body.encode(), [SECRET, ROTATED])
        assert not verify(header, hit.run_id, hit.body.encode(), [SECRET], now=int(header[2:12]) + 301)  # replayed
        cases.append({"header": header, "runId": hit.run_id, "body": hit.body, "secrets": [SECRET]})
    signed_twice = hits[rotated_after + 1 :]  # the first one after the update may have been claimed before it
    assert signed_twice
    assert all(hit.headers["X-Pacer-Signature"].count("v1=") == 2 for hit in signed_twice)
    assert all(verify(h.headers["X-Pacer-Signature"], h.run_id, h.body.encode(), [ROTATED]) for h in signed_twice)
    assert all(h.headers["X-Pacer-Signature"].count("v1=") == 1 for h in hits[:2])

    now_s = datetime.now(UTC).timestamp()
    wrong = {**cases[-1], "secrets": ["not-the-secret-000000000000000000000"]}
    late = {**cases[-1], "nowS": now_s + 600}
    rotated = [{**c, "secrets": [ROTATED]} for c in cases[rotated_after + 1 :]]
    results = node_recipe(tmp_path, [*cases, *rotated, wrong, late])
    assert results == [True] * (len(cases) + len(rotated)) + [False, False]


def test_no_signing_secret_reaches_a_log(stack: Stack) -> None:
    """After the runs above: signed, rotated, claimed again by a restarted scheduler."""
    logs = stack.log_texts()
    assert {"control.log", "scheduler.log", "scheduler-restarted.log", "executor.log"} <= set(logs)
    for name, text in logs.items():
        assert SECRET not in text, name
        assert ROTATED not in text, name
