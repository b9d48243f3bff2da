"""Retries within a run, as an executor performs them against a real local HTTP server: which failures are tried
again, what the target sees on each attempt, how the run's outcome lists them, and what stops them (the lease,
draining)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from pacer_common.clock import SystemClock
from pacer_common.retries import NO_RETRY, RetryPolicy
from pacer_executor import attempts
from pacer_executor.egress import EgressPolicy
from pacer_executor.metrics import ExecutorMetrics
from pacer_executor.runner import HttpRunner, Outcome, WorkItem
from tests.support.target import HttpTarget

CLOCK = SystemClock()


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    running = HttpTarget().start()
    yield running
    running.stop()


def failing(target: HttpTarget, status: int, times: int) -> str:
    """The URL of a path that answers `status` to the first `times` requests of each run, then 200."""
    path = f"/fail/{status}/{times}"
    target.respond(path, status=status, fail_first=times)
    return target.url(path)


def attempts_seen(target: HttpTarget, path: str) -> list[str | None]:
    """The X-Pacer-Attempt header of each request `path` received, in order."""
    return [hit.headers.get("X-Pacer-Attempt") for hit in target.hits_on(path)]


@pytest_asyncio.fixture
async def runner() -> AsyncIterator[HttpRunner]:
    async with HttpRunner(EgressPolicy(allow_loopback=True), CLOCK) as running:
        yield running


def _item(url: str, run_id: str, retry: RetryPolicy = NO_RETRY, *, timeout_ms: int = 2000) -> WorkItem:
    now = CLOCK.now()
    return WorkItem(
        run_id=run_id,
        endpoint_id="ep_retry",
        scheduled_for=now,
        url=url,
        method="POST",
        headers={"X-Pacer-Attempt": "9"},  # an endpoint's own value never reaches the target
        body="{}",
        timeout_ms=timeout_ms,
        tenant_id="t_retry",
        retry=retry,
        lease_expires_at=now + timedelta(milliseconds=retry.budget_ms(timeout_ms) + 5000),
    )


async def _perform(
    runner: HttpRunner, item: WorkItem, stopping: asyncio.Event | None = None, metrics: ExecutorMetrics | None = None
) -> Outcome:
    return await attempts.perform(runner, item, CLOCK, stopping or asyncio.Event(), metrics or ExecutorMetrics())


@pytest.mark.asyncio
async def test_a_503_is_tried_again_and_the_run_succeeds_listing_every_attempt(
    target: HttpTarget, runner: HttpRunner
) -> None:
    item = _item(failing(target, 503, 2), "run_flaky", RetryPolicy(max_attempts=3, backoff_ms=100))
    metrics = ExecutorMetrics()

    outcome = await _perform(runner, item, metrics=metrics)

    assert outcome.status == "SUCCESS"
    assert attempts_seen(target, "/fail/503/2") == ["1", "2", "3"]
    assert [(a.number, a.status, a.http_status) for a in outcome.attempts] == [
        (1, "FAILURE", 503),
        (2, "FAILURE", 503),
        (3, "SUCCESS", 200),
    ]
    # One run: it started with the first attempt and lasted through the waits (100 ms, then 200 ms).
    assert outcome.started_at == outcome.attempts[0].started_at
    assert outcome.duration_ms >= 300
    assert metrics.registry.get_sample_value("pacer_run_retries_total") == 2


@pytest.mark.asyncio
async def test_the_last_attempts_failure_is_the_runs_and_says_how_many_were_made(
    target: HttpTarget, runner: HttpRunner
) -> None:
    item = _item(failing(target, 502, 9), "run_down", RetryPolicy(max_attempts=2, backoff_ms=100))

    outcome = await _perform(runner, item)

    assert outcome.status == "FAILURE"
    assert outcome.http_status == 502
    assert outcome.error_message == "HTTP 502 (attempt 2 of 2)"
    assert len(attempts_seen(target, "/fail/502/9")) == 2


@pytest.mark.asyncio
async def test_an_answer_that_is_not_transient_is_not_tried_again(target: HttpTarget, runner: HttpRunner) -> None:
    item = _item(failing(target, 500, 1), "run_refused", RetryPolicy(max_attempts=3, backoff_ms=100))

    outcome = await _perform(runner, item)

    assert outcome.status == "FAILURE"
    assert outcome.http_status == 500
    assert attempts_seen(target, "/fail/500/1") == ["1"]
    assert outcome.attempts == ()  # one attempt: the run's own fields describe it


@pytest.mark.asyncio
async def test_a_refused_connection_and_a_timeout_are_tried_again(target: HttpTarget, runner: HttpRunner) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the connection is refused
    retry = RetryPolicy(max_attempts=2, backoff_ms=100)

    refused = await _perform(runner, _item(f"http://127.0.0.1:{port}/", "run_refused_conn", retry))
    target.respond("/slow", delay_ms=5000)
    slow = await _perform(runner, _item(target.url("/slow"), "run_slow", retry, timeout_ms=200))

    assert [a.status for a in refused.attempts] == ["FAILURE", "FAILURE"]
    assert "connection failed" in refused.attempts[0].error_message
    assert [a.status for a in slow.attempts] == ["TIMEOUT", "TIMEOUT"]
    assert slow.status == "TIMEOUT"


@pytest.mark.asyncio
async def test_without_a_retry_policy_one_attempt_is_made_and_no_attempt_header_is_sent(
    target: HttpTarget, runner: HttpRunner
) -> None:
    outcome = await _perform(runner, _item(failing(target, 503, 1), "run_once"))

    assert outcome.status == "FAILURE"
    assert attempts_seen(target, "/fail/503/1") == [None]


@pytest.mark.asyncio
async def test_no_attempt_starts_that_could_not_end_before_the_lease(target: HttpTarget, runner: HttpRunner) -> None:
    item = _item(failing(target, 503, 9), "run_leased", RetryPolicy(max_attempts=5, backoff_ms=100))
    # Room for the first attempt and one wait, not for a second attempt's whole timeout.
    short = CLOCK.now() + timedelta(milliseconds=1500)
    outcome = await _perform(runner, replace(item, lease_expires_at=short))

    assert outcome.status == "FAILURE"
    assert attempts_seen(target, "/fail/503/9") == ["1"]


@pytest.mark.asyncio
async def test_draining_cuts_the_wait_short_and_reports_the_attempts_made(
    target: HttpTarget, runner: HttpRunner
) -> None:
    item = _item(failing(target, 503, 9), "run_drained", RetryPolicy(max_attempts=3, backoff_ms=30_000))
    stopping = asyncio.Event()
    began = datetime.now(UTC)

    performing = asyncio.create_task(_perform(runner, item, stopping))
    await asyncio.sleep(0.3)
    stopping.set()
    outcome = await asyncio.wait_for(performing, 5)

    assert outcome.status == "FAILURE"
    assert outcome.http_status == 503
    assert attempts_seen(target, "/fail/503/9") == ["1"]
    assert datetime.now(UTC) - began < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("policy", "budget_ms"),
    [
        (NO_RETRY, 2000),
        (RetryPolicy(3, 1000), 3 * 2000 + 1000 + 2000),
        (RetryPolicy(5, 60_000), 5 * 2000 + 60_000 + 120_000 + 240_000 + 300_000),
    ],
)
def test_the_lease_covers_every_attempt_and_every_wait(policy: RetryPolicy, budget_ms: int) -> None:
    assert policy.budget_ms(2000) == budget_ms
