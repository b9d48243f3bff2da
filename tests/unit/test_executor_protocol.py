"""The executor's side of the dispatch protocol: work items in, run results out, and the reconnect backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacer.control.v1 import control_service_pb2 as control_pb
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.retrying import JitteredBackoff
from pacer_executor.runner import Outcome, RunStatus
from pacer_executor.stream import decode_work, encode_result, reconnect_backoff

STARTED = datetime(2026, 1, 5, 10, 0, 0, 250_000, tzinfo=UTC)
FINISHED = STARTED + timedelta(milliseconds=1500)


def outcome(status: RunStatus, *, http_status: int = 0, error_message: str = "", body: str = "") -> Outcome:
    return Outcome(
        run_id="run_1",
        status=status,
        started_at=STARTED,
        finished_at=FINISHED,
        duration_ms=1500,
        http_status=http_status,
        error_message=error_message,
        response_body=body,
        response_truncated=len(body) > 8,
    )


def test_work_item_becomes_the_runners_item() -> None:
    item = lease_pb.WorkItem(
        run_id="run_1",
        endpoint_id="ep_1",
        tenant_id="tn_1",
        url="https://example.com/hook",
        method="POST",
        headers={"Content-Type": "application/json"},
        body='{"a": 1}',
        timeout_ms=2500,
    )
    item.scheduled_for.FromDatetime(STARTED)

    work = decode_work(item)

    assert work.run_id == "run_1"
    assert work.endpoint_id == "ep_1"
    assert work.scheduled_for == STARTED
    assert work.scheduled_for.tzinfo is not None
    assert (work.url, work.method, work.body, work.timeout_ms) == ("https://example.com/hook", "POST", '{"a": 1}', 2500)
    assert dict(work.headers) == {"Content-Type": "application/json"}


def test_result_carries_the_outcome_and_the_executor() -> None:
    result = encode_result(
        outcome("FAILURE", http_status=503, error_message="HTTP 503", body="x" * 10),
        "exec-1",
    )

    assert result.run_id == "run_1"
    assert result.status == control_pb.RUN_STATUS_FAILURE
    assert result.started_at.ToDatetime(tzinfo=UTC) == STARTED
    assert result.finished_at.ToDatetime(tzinfo=UTC) == FINISHED
    assert result.duration_ms == 1500
    assert (result.http_status, result.error_message) == (503, "HTTP 503")
    assert (result.response_body, result.response_truncated) == ("x" * 10, True)
    assert result.executor_id == "exec-1"


@pytest.mark.parametrize(
    ("status", "wire"),
    [
        ("SUCCESS", control_pb.RUN_STATUS_SUCCESS),
        ("FAILURE", control_pb.RUN_STATUS_FAILURE),
        ("TIMEOUT", control_pb.RUN_STATUS_TIMEOUT),
        ("BLOCKED", control_pb.RUN_STATUS_BLOCKED),
    ],
)
def test_every_status_has_its_wire_value(status: RunStatus, wire: int) -> None:
    assert encode_result(outcome(status), "exec-1").status == wire


def test_blocked_run_has_no_start_time() -> None:
    result = encode_result(outcome("BLOCKED", error_message="egress refused: 10.0.0.1 is a private address"), "e")

    assert not result.HasField("started_at")
    assert result.HasField("finished_at")


def test_backoff_doubles_from_100_ms_to_2_s_and_resets() -> None:
    backoff = reconnect_backoff(lambda: 0.0)  # a draw of 0 is the full step
    delays = [round(backoff.next_delay_s(), 3) for _ in range(8)]

    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    backoff.reset()
    assert round(backoff.next_delay_s(), 3) == 0.1


@given(draws=st.lists(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), min_size=1, max_size=20))
def test_jitter_keeps_each_delay_between_half_and_all_of_its_step(draws: list[float]) -> None:
    values = iter(draws)
    backoff = JitteredBackoff(initial_s=0.1, max_s=5.0, draw=lambda: next(values))
    nominal = 0.1
    for _ in draws:
        delay = backoff.next_delay_s()
        assert nominal / 2 <= delay <= nominal
        nominal = min(nominal * 2, 5.0)
