"""pacerctl against the real control plane (SQLite and PostgreSQL): every subcommand's output as a table and as JSON,
refused input naming the field with the documented exit code, wrong keys and other tenants' ids, key and address
resolution, and `runs watch` as a live process.

Most commands run in-process through `pacer_cli.main.run` (fast, and relative times count from the harness's fake
clock); a representative set runs the installed `pacerctl` script as a real subprocess.
"""

from __future__ import annotations

import io
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli.main import run
from pacer_common.settings import process_environment
from pacer_control.models import Endpoint
from pacer_control.sealing import EndpointSecrets
from tests.support.harness import Harness
from tests.support.processes import free_port

PACERCTL = Path(sys.executable).with_name("pacerctl")
URL = "https://api.example.com/errors"
JOB_NAME = "Production Health Monitor"
DEADLINE_S = 15.0


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """Runs pacerctl in-process against the harness, as tenant a unless another key is given."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def __call__(self, *argv: str, key: str | None = None) -> Result:
        return self.raw("--addr", self.harness.address, "--api-key", key or self.harness.a.key, *argv)

    def raw(self, *argv: str, environ: Mapping[str, str] | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        # No config file unless a test writes one: the machine's own ~/.config/pacer never leaks in.
        env = {"PACER_CONFIG": "/nonexistent/pacer/config.yaml", **(environ or {})}
        code = run(list(argv), out, err, environ=env, now=self.harness.clock.now)
        return Result(code, out.getvalue(), err.getvalue())

    def ok(self, *argv: str) -> Result:
        result = self(*argv)
        assert result.code == 0, result.err
        assert result.err == ""
        return result

    def data(self, *argv: str) -> Any:
        return self.ok("--json", *argv).json()


@pytest.fixture
def cli(harness: Harness) -> Cli:
    return Cli(harness)


def new_job(cli: Cli, name: str = JOB_NAME) -> str:
    return str(cli.data("jobs", "create", name)["job_id"])


def new_endpoint(cli: Cli, job: str, *options: str, name: str = "check_error_rate") -> str:
    argv = ("endpoints", "add", job, "--name", name, "--url", URL, *(options or ("--every", "1m")))
    return str(cli.data(*argv)["endpoint_id"])


def stored_endpoint(harness: Harness, endpoint_id: str) -> Endpoint:
    """The endpoint's configuration as the control plane stored it (no RPC returns all of it)."""
    with Session(harness.engine) as session:
        endpoint = session.get(Endpoint, endpoint_id)
        assert endpoint is not None
        return endpoint


def stored_headers(harness: Harness, endpoint_id: str) -> dict[str, str]:
    """The endpoint's headers as the control plane keeps them: sealed at rest, opened here with its key."""
    return EndpointSecrets.open(
        harness.catalog.keyring, endpoint_id, stored_endpoint(harness, endpoint_id).secrets
    ).headers


def rows(table: str) -> list[list[str]]:
    """A rendered table as cells (columns are two or more spaces apart; cells have at most single spaces)."""
    return [re.split(r" {2,}", line.strip()) for line in table.splitlines()]


def pairs(block: str) -> dict[str, str]:
    """A rendered key/value block as a dict (continuation lines are ignored)."""
    found: dict[str, str] = {}
    for line in block.splitlines():
        if line and not line.startswith(" "):
            key, _, value = line.partition(" ")
            found[key] = value.strip()
    return found


def assert_refused(result: Result, exit_code: int, code: str, field: str | None = None) -> None:
    assert result.code == exit_code, result
    assert result.err.startswith(f"error: {code}: "), result.err
    assert result.out == ""
    if field is not None:
        assert f"\n  {field}: " in result.err, result.err


def assert_usage(result: Result, mentions: str) -> None:
    """A mistake caught before any call: exit 2 with the option or problem named."""
    assert result.code == 2, result
    assert mentions in result.err, result.err
    assert result.out == ""


# --- jobs ------------------------------------------------------------------------------------------------------------


def test_jobs_create_prints_the_new_id_and_time(cli: Cli) -> None:
    table = pairs(cli.ok("jobs", "create", JOB_NAME, "--description", "prod, all regions").out)
    assert table["job_id"].startswith("job_")
    assert table["created_at"] == "2026-01-05 10:00:00Z"
    created = cli.data("jobs", "create", "Second")
    assert created["created_at"] == "2026-01-05T10:00:00Z"
    assert created["job_id"].startswith("job_")


def test_jobs_create_refuses_an_empty_name(cli: Cli) -> None:
    assert_refused(cli("jobs", "create", ""), 2, "INVALID_ARGUMENT", "name")
    assert_refused(cli("jobs", "create", "x", "--description", "d" * 2001), 2, "INVALID_ARGUMENT", "description")


def test_jobs_get_shows_the_job(cli: Cli) -> None:
    job = new_job(cli)
    new_endpoint(cli, job)
    shown = pairs(cli.ok("jobs", "get", job).out)
    assert shown["name"] == JOB_NAME
    assert shown["status"] == "ACTIVE"
    assert shown["endpoint_count"] == "1"
    assert shown["archived_at"] == "-"
    data = cli.data("jobs", "get", job)["job"]
    assert data["job_id"] == job
    assert data["status"] == "JOB_STATUS_ACTIVE"
    assert data["failure_count"] == 0


def test_jobs_get_reports_an_unknown_id_as_not_found(cli: Cli) -> None:
    assert_refused(cli("jobs", "get", "job_01m8bgzr89a5qqqzt6zmqdht20"), 3, "NOT_FOUND")


def test_jobs_list_pages_filters_and_follows_tokens(cli: Cli) -> None:
    ids = [new_job(cli, f"job {n}") for n in range(3)]
    cli.ok("jobs", "archive", ids[0])
    table = rows(cli.ok("jobs", "list").out)
    assert table[0] == ["ID", "NAME", "STATUS", "ENDPOINTS", "LAST RUN"]
    assert {row[0]: row[2] for row in table[1:]} == {ids[0]: "ARCHIVED", ids[1]: "ACTIVE", ids[2]: "ACTIVE"}
    first = cli.ok("jobs", "list", "--page-size", "2").out
    assert len(rows(first)) == 4  # header, two jobs, the "more" line
    token = re.search(r"more: --page-token (\S+)", first)
    assert token is not None
    rest = rows(cli.ok("jobs", "list", "--page-size", "2", "--page-token", token.group(1)).out)
    assert len(rest) == 2
    every = cli.data("jobs", "list", "--page-size", "1", "--all")
    assert sorted(job["job_id"] for job in every["jobs"]) == sorted(ids)
    assert every["next_page_token"] == ""
    archived = cli.data("jobs", "list", "--status", "archived")["jobs"]
    assert [job["job_id"] for job in archived] == [ids[0]]


def test_jobs_list_refuses_bad_paging(cli: Cli) -> None:
    assert_refused(cli("jobs", "list", "--page-size", "101"), 2, "INVALID_ARGUMENT", "page_size")
    assert_usage(cli("jobs", "list", "--status", "deleted"), "argument --status")
    assert_usage(cli("jobs", "list", "--page-size", "ten"), "argument --page-size")


def test_jobs_list_with_no_jobs_says_so(cli: Cli) -> None:
    assert cli.ok("jobs", "list").out == "no jobs\n"


def test_jobs_update_changes_only_what_is_given(cli: Cli) -> None:
    job = new_job(cli)
    cli.ok("jobs", "update", job, "--description", "EU region", "--reason", "scope")
    assert pairs(cli.ok("jobs", "get", job).out)["description"] == "EU region"
    updated = cli.data("jobs", "update", job, "--name", "Prod Health")
    assert updated["updated_at"] == "2026-01-05T10:00:00Z"
    shown = cli.data("jobs", "get", job)["job"]
    assert (shown["name"], shown["description"]) == ("Prod Health", "EU region")
    assert any(entry["action"] == "UpdateJob" and entry["reason"] == "scope" for entry in cli.harness.audit())


def test_jobs_update_refuses_bad_input(cli: Cli) -> None:
    job = new_job(cli)
    assert_usage(cli("jobs", "update", job), "nothing to change")
    assert_refused(cli("jobs", "update", job, "--name", ""), 2, "INVALID_ARGUMENT", "name")
    assert_refused(cli("jobs", "update", job, "--name", "ok", "--reason", "r" * 501), 2, "INVALID_ARGUMENT", "reason")


def test_jobs_archive_stops_changes(cli: Cli) -> None:
    job = new_job(cli)
    archived = pairs(cli.ok("jobs", "archive", job, "--reason", "replaced").out)
    assert archived["archived_at"] == "2026-01-05 10:00:00Z"
    assert cli.data("jobs", "archive", job)["archived_at"] == "2026-01-05T10:00:00Z"  # idempotent
    assert_refused(cli("jobs", "update", job, "--name", "again"), 4, "FAILED_PRECONDITION")
    assert_refused(cli("endpoints", "add", job, "--name", "x", "--url", URL, "--every", "1m"), 4, "FAILED_PRECONDITION")
    assert_refused(cli("jobs", "archive", job, "--reason", "r" * 501), 2, "INVALID_ARGUMENT", "reason")


# --- endpoints: configuration ----------------------------------------------------------------------------------------


def test_endpoints_add_sends_every_option(cli: Cli, tmp_path: Path) -> None:
    job = new_job(cli)
    body = tmp_path / "body.json"
    body.write_text('{"pods": "unhealthy"}')
    added = pairs(
        cli.ok(
            "endpoints",
            "add",
            job,
            "--name",
            "restart_unhealthy_pods",
            "--url",
            URL,
            "--method",
            "post",
            "--header",
            "Authorization=Bearer t0k=n",
            "--header",
            "X-Team: sre",
            "--body-file",
            str(body),
            "--every",
            "1h",
            "--min-interval",
            "10m",
            "--max-interval",
            "2h",
            "--timeout",
            "5s",
            "--reason",
            "setup",
        ).out
    )
    assert added["endpoint_id"].startswith("ep_")
    assert added["next_run_at"] == "2026-01-05 11:00:00Z"
    stored = stored_endpoint(cli.harness, added["endpoint_id"])
    assert (stored.method, stored_headers(cli.harness, stored.id), stored.body) == (
        "POST",
        {"Authorization": "Bearer t0k=n", "X-Team": "sre"},
        '{"pods": "unhealthy"}',
    )
    assert (stored.interval_ms, stored.min_interval_ms, stored.max_interval_ms) == (3_600_000, 600_000, 7_200_000)
    assert stored.timeout_ms == 5000
    listed = rows(cli.ok("endpoints", "list", job).out)
    assert listed[1][:4] == [
        added["endpoint_id"],
        "restart_unhealthy_pods",
        "2026-01-05 11:00:00Z",
        "baseline-interval",
    ]


def test_endpoints_add_with_a_cron_baseline(cli: Cli) -> None:
    job = new_job(cli)
    added = cli.data(
        "endpoints",
        "add",
        job,
        "--name",
        "daily_report",
        "--url",
        URL,
        "--cron",
        "0 9 * * *",
        "--timezone",
        "Europe/Berlin",
    )
    assert added["next_run_at"] == "2026-01-06T08:00:00Z"  # 09:00 in Berlin (UTC+1 in January)


ADD_INVALID = [
    pytest.param(("--every", "500ms"), "baseline.interval_ms", id="interval-below-floor"),
    pytest.param(("--cron", "61 * * * *"), "baseline.cron.expression", id="bad-cron"),
    pytest.param(("--cron", "0 9 * * *", "--timezone", "Mars/Olympus_Mons"), "baseline.cron.timezone", id="bad-tz"),
    pytest.param(("--every", "1m", "--min-interval", "2m", "--max-interval", "1m"), "clamp", id="clamp-inverted"),
    pytest.param(("--every", "1m", "--timeout", "50ms"), "timeout_ms", id="timeout-too-short"),
    pytest.param(("--every", "1m", "--method", "fetch"), "method", id="unknown-method"),
    pytest.param(("--every", "1m", "--header", "X@Y=1"), "headers", id="bad-header-name"),
    pytest.param(("--every", "1m", "--attempts", "6"), "retry.max_attempts", id="too-many-attempts"),
]


@pytest.mark.parametrize(("options", "field"), ADD_INVALID)
def test_endpoints_add_refuses_bad_input_naming_the_field(cli: Cli, options: tuple[str, ...], field: str) -> None:
    job = new_job(cli)
    result = cli("endpoints", "add", job, "--name", "x", "--url", URL, *options)
    assert_refused(result, 2, "INVALID_ARGUMENT", field)


def test_endpoints_add_points_at_the_option_behind_a_field(cli: Cli) -> None:
    job = new_job(cli)
    result = cli("endpoints", "add", job, "--name", "x", "--url", "ftp://x", "--every", "500ms")
    assert_refused(result, 2, "INVALID_ARGUMENT", "url")
    assert re.search(r"\n  url: .*\(--url\)\n", result.err)
    assert re.search(r"\n  baseline.interval_ms: .*\(--every\)\n", result.err)


ADD_USAGE = [
    pytest.param(("--url", URL, "--every", "1m"), "--name", id="no-name"),
    pytest.param(("--name", "x", "--url", URL), "--every", id="no-baseline"),
    pytest.param(("--name", "x", "--url", URL, "--every", "1m", "--cron", "* * * * *"), "not allowed", id="two"),
    pytest.param(("--name", "x", "--url", URL, "--every", "5 minutes"), "argument --every", id="bad-duration"),
    pytest.param(("--name", "x", "--url", URL, "--every", "60"), "argument --every", id="unitless-duration"),
    pytest.param(("--name", "x", "--url", URL, "--every", "1m", "--timezone", "UTC"), "--timezone", id="tz-no-cron"),
    pytest.param(("--name", "x", "--url", URL, "--every", "1m", "--header", "no separator"), "--header", id="hdr"),
    pytest.param(("--name", "x", "--url", URL, "--every", "1m", "--body-file", "/nonexistent"), "cannot read", id="f"),
    pytest.param(("--name", "x", "--url", URL, "--every", "1m", "--retry-backoff", "2s"), "--attempts", id="backoff"),
]


@pytest.mark.parametrize(("options", "mentions"), ADD_USAGE)
def test_endpoints_add_usage_errors_exit_2(options: tuple[str, ...], mentions: str) -> None:
    """Caught before any call, so no control plane is needed (nothing listens at the address)."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["--addr", "127.0.0.1:9", "--api-key", "pk_unused", "endpoints", "add", "job_x", *options]
    assert_usage(Result(run(argv, out, err, environ={}), out.getvalue(), err.getvalue()), mentions)


def test_endpoints_update_changes_the_schedule(cli: Cli) -> None:
    job = new_job(cli)
    endpoint = new_endpoint(cli, job)
    updated = pairs(cli.ok("endpoints", "update", endpoint, "--every", "30s", "--reason", "tighter baseline").out)
    assert updated["updated_at"] == "2026-01-05 10:00:00Z"
    assert updated["next_run_at"] == "2026-01-05 10:00:30Z"
    renamed = cli.data("endpoints", "update", endpoint, "--name", "error_rate", "--header", "X-A=1", "--timeout", "2s")
    assert renamed["next_run_at"] == "2026-01-05T10:00:30Z"  # the baseline was not touched
    assert rows(cli.ok("endpoints", "list", job).out)[1][1] == "error_rate"
    assert stored_headers(cli.harness, endpoint) == {"X-A": "1"}
    cli.ok("endpoints", "update", endpoint, "--no-headers", "--cron", "*/5 * * * *")
    assert rows(cli.ok("endpoints", "list", job).out)[1][2:4] == ["2026-01-05 10:05:00Z", "baseline-cron"]
    stored = stored_endpoint(cli.harness, endpoint)
    assert (stored_headers(cli.harness, endpoint), stored.url, stored.timeout_ms) == ({}, URL, 2000)


def test_endpoints_add_and_update_set_the_retry_policy(cli: Cli) -> None:
    job = new_job(cli)
    added = cli.data(
        "endpoints",
        "add",
        job,
        "--name",
        "x",
        "--url",
        URL,
        "--every",
        "1m",
        "--attempts",
        "3",
        "--retry-backoff",
        "2s",
    )
    endpoint = added["endpoint_id"]
    stored = stored_endpoint(cli.harness, endpoint)
    assert (stored.retry_max_attempts, stored.retry_backoff_ms) == (3, 2000)
    shown = pairs(cli.ok("endpoints", "get", job, endpoint).out)
    assert (shown["retry.max_attempts"], shown["retry.backoff_ms"]) == ("3", "2000")
    cli.ok("endpoints", "update", endpoint, "--attempts", "1", "--reason", "idempotency not guaranteed")
    assert stored_endpoint(cli.harness, endpoint).retry_max_attempts == 1
    refused = cli("endpoints", "update", endpoint, "--attempts", "2", "--retry-backoff", "50ms")
    assert_refused(refused, 2, "INVALID_ARGUMENT", "retry.backoff_ms")
    assert "(--retry-backoff)" in refused.err


def test_endpoints_update_refuses_bad_input(cli: Cli) -> None:
    endpoint = new_endpoint(cli, new_job(cli))
    assert_usage(cli("endpoints", "update", endpoint), "nothing to change")
    assert_usage(cli("endpoints", "update", endpoint, "--no-headers", "--header", "A=1"), "contradict")
    assert_refused(
        cli("endpoints", "update", endpoint, "--every", "100ms"), 2, "INVALID_ARGUMENT", "baseline.interval_ms"
    )
    assert_refused(cli("endpoints", "update", endpoint, "--url", "nope"), 2, "INVALID_ARGUMENT", "url")


def test_endpoints_delete_removes_it_from_the_job(cli: Cli) -> None:
    job = new_job(cli)
    endpoint = new_endpoint(cli, job)
    deleted = pairs(cli.ok("endpoints", "delete", endpoint, "--reason", "moved").out)
    assert deleted["deleted_at"] == "2026-01-05 10:00:00Z"
    assert cli.ok("endpoints", "list", job).out == "no endpoints\n"
    assert cli.data("endpoints", "delete", endpoint)["deleted_at"] == "2026-01-05T10:00:00Z"
    assert_refused(cli("endpoints", "hint", endpoint, "--every", "10s"), 4, "FAILED_PRECONDITION")
    assert_refused(cli("endpoints", "delete", endpoint, "--reason", "r" * 501), 2, "INVALID_ARGUMENT", "reason")


def test_endpoints_list_shows_schedule_state(cli: Cli) -> None:
    job = new_job(cli)
    health = new_endpoint(cli, job)
    slow = new_endpoint(cli, job, "--every", "5m", name="fetch_slow_query_logs")
    cli.ok("endpoints", "pause", slow, "--reason", "investigate only when the DB degrades")
    cli.harness.fire(health, status="FAILURE", http_status=500)
    table = rows(cli.ok("endpoints", "list", job).out)
    assert table[0] == ["ID", "NAME", "NEXT RUN", "SOURCE", "LAST RUN", "FAILURES", "PAUSED"]
    assert table[1] == [
        health,
        "check_error_rate",
        "2026-01-05 10:03:00Z",
        "baseline-interval",
        "2026-01-05 10:01:00Z",
        "1",
        "no",
    ]
    assert table[2] == [slow, "fetch_slow_query_logs", "-", "paused", "-", "0", "indefinitely"]
    listed = cli.data("endpoints", "list", job)["endpoints"]
    assert [e["endpoint_id"] for e in listed] == [health, slow]
    assert listed[1]["paused"] is True
    assert listed[0]["next_run_source"] == "RUN_SOURCE_BASELINE_INTERVAL"
    assert_refused(cli("endpoints", "list", "job_01m8bgzr89a5qqqzt6zmqdht20"), 3, "NOT_FOUND")


# --- endpoints: steering ---------------------------------------------------------------------------------------------


def test_endpoints_hint_tightens_the_cadence_for_a_while(cli: Cli) -> None:
    endpoint = new_endpoint(cli, new_job(cli))
    hinted = pairs(cli.ok("endpoints", "hint", endpoint, "--every", "10s", "--ttl", "30", "--reason", "errors up").out)
    assert hinted == {"hint_expires_at": "2026-01-05 10:30:00Z", "next_run_at": "2026-01-05 10:00:10Z"}
    again = cli.data("endpoints", "hint", endpoint, "--every", "20s", "--ttl", "2h")
    assert again == {"hint_expires_at": "2026-01-05T12:00:00Z", "next_run_at": "2026-01-05T10:00:20Z"}


def test_endpoints_hint_refuses_bad_input(cli: Cli) -> None:
    endpoint = new_endpoint(cli, new_job(cli))
    assert_refused(cli("endpoints", "hint", endpoint, "--every", "10ms"), 2, "INVALID_ARGUMENT", "interval_ms")
    assert_refused(
        cli("endpoints", "hint", endpoint, "--every", "10s", "--ttl", "20000"), 2, "INVALID_ARGUMENT", "ttl_minutes"
    )
    assert_usage(cli("endpoints", "hint", endpoint, "--every", "10s", "--ttl", "90s"), "whole minutes")
    assert_usage(cli("endpoints", "hint", endpoint), "--every")


def test_endpoints_once_schedules_a_run(cli: Cli) -> None:
    endpoint = new_endpoint(cli, new_job(cli), "--every", "1h")
    assert pairs(cli.ok("endpoints", "once", endpoint, "--in", "5m").out) == {"scheduled_for": "2026-01-05 10:05:00Z"}
    at = cli.data("endpoints", "once", endpoint, "--at", "2026-01-05T10:02:00+00:00", "--ttl", "15", "--reason", "x")
    assert at == {"scheduled_for": "2026-01-05T10:02:00Z"}
    now = cli.data("endpoints", "once", endpoint)
    assert now == {"scheduled_for": "2026-01-05T10:00:00Z"}


def test_endpoints_once_refuses_bad_input(cli: Cli) -> None:
    endpoint = new_endpoint(cli, new_job(cli))
    assert_refused(cli("endpoints", "once", endpoint, "--at", "2030-01-01T00:00:00Z"), 2, "INVALID_ARGUMENT", "run_at")
    assert_usage(cli("endpoints", "once", endpoint, "--at", "tomorrow"), "argument --at")
    assert_usage(cli("endpoints", "once", endpoint, "--at", "2026-01-05T10:02:00Z", "--in", "1m"), "not allowed")


def test_endpoints_pause_and_resume(cli: Cli) -> None:
    job = new_job(cli)
    endpoint = new_endpoint(cli, job)
    paused = pairs(cli.ok("endpoints", "pause", endpoint, "--for", "1h", "--reason", "maintenance").out)
    assert paused == {"paused_until": "2026-01-05 11:00:00Z", "paused": "yes", "next_run_at": "2026-01-05 11:00:00Z"}
    assert rows(cli.ok("endpoints", "list", job).out)[1][6] == "until 2026-01-05 11:00:00Z"
    until = cli.data("endpoints", "pause", endpoint, "--until", "2026-01-05 12:00")
    assert until["paused_until"] == "2026-01-05T12:00:00Z"
    forever = cli.data("endpoints", "pause", endpoint)
    assert forever["paused"] is True
    assert "paused_until" not in forever
    resumed = pairs(cli.ok("endpoints", "resume", endpoint, "--reason", "done").out)
    assert resumed == {"paused_until": "-", "paused": "no", "next_run_at": "2026-01-05 10:01:00Z"}
    assert rows(cli.ok("endpoints", "list", job).out)[1][6] == "no"


def test_endpoints_pause_refuses_a_past_time(cli: Cli) -> None:
    endpoint = new_endpoint(cli, new_job(cli))
    assert_refused(
        cli("endpoints", "pause", endpoint, "--until", "2020-01-01T00:00:00Z"), 2, "INVALID_ARGUMENT", "pause_until"
    )
    assert_usage(cli("endpoints", "pause", endpoint, "--for", "soon"), "argument --for")
    assert_refused(cli("endpoints", "resume", endpoint, "--reason", "r" * 501), 2, "INVALID_ARGUMENT", "reason")


def test_endpoints_clear_hints_returns_to_the_baseline(cli: Cli) -> None:
    endpoint = new_endpoint(cli, new_job(cli))
    cli.ok("endpoints", "hint", endpoint, "--every", "10s")
    cleared = pairs(cli.ok("endpoints", "clear-hints", endpoint, "--reason", "incident over").out)
    assert cleared == {"cleared_at": "2026-01-05 10:00:00Z", "next_run_at": "2026-01-05 10:01:00Z"}
    assert cli.data("endpoints", "clear-hints", endpoint)["next_run_at"] == "2026-01-05T10:01:00Z"
    assert_refused(cli("endpoints", "clear-hints", endpoint, "--reason", "r" * 501), 2, "INVALID_ARGUMENT", "reason")


def test_endpoints_reset_failures_removes_the_backoff(cli: Cli) -> None:
    job = new_job(cli)
    endpoint = new_endpoint(cli, job)
    cli.harness.fire(endpoint, status="FAILURE", http_status=503)
    cli.harness.fire(endpoint, status="FAILURE", http_status=503)
    assert rows(cli.ok("endpoints", "list", job).out)[1][5] == "2"
    reset = pairs(cli.ok("endpoints", "reset-failures", endpoint, "--reason", "deployed the fix").out)
    assert reset["failure_count"] == "0"
    assert rows(cli.ok("endpoints", "list", job).out)[1][5] == "0"
    assert cli.data("endpoints", "reset-failures", endpoint)["failure_count"] == 0
    assert_refused(cli("endpoints", "reset-failures", endpoint, "--reason", "r" * 501), 2, "INVALID_ARGUMENT", "reason")


def test_endpoints_health_summarizes_runs(cli: Cli) -> None:
    endpoint = new_endpoint(cli, new_job(cli))
    cli.harness.fire(endpoint, duration_ms=100)
    cli.harness.fire(endpoint, status="FAILURE", duration_ms=300, http_status=500)
    health = pairs(cli.ok("endpoints", "health", endpoint, "--window-hours", "6").out)
    assert health["success_count"] == "1"
    assert health["failure_count"] == "1"
    assert health["failure_streak"] == "1"
    assert health["last_run.status"] == "FAILURE"
    assert (health["missed_slots"], health["last_missed_at"]) == ("0", "-")
    data = cli.data("endpoints", "health", endpoint)
    assert data["avg_duration_ms"] == 200
    assert data["last_run"]["status"] == "RUN_STATUS_FAILURE"
    assert_refused(cli("endpoints", "health", endpoint, "--window-hours", "721"), 2, "INVALID_ARGUMENT", "window_hours")


# --- runs ------------------------------------------------------------------------------------------------------------


def test_runs_list_filters_and_pages(cli: Cli) -> None:
    job = new_job(cli)
    endpoint = new_endpoint(cli, job)
    ok = cli.harness.fire(endpoint, duration_ms=42)
    failed = cli.harness.fire(endpoint, status="FAILURE", http_status=503, duration_ms=1500)
    table = rows(cli.ok("runs", "list", "--job", job).out)
    assert table[0] == ["ID", "ENDPOINT", "SCHEDULED", "STARTED", "STATUS", "DURATION", "SOURCE"]
    assert table[1] == [
        failed,
        endpoint,
        "2026-01-05 10:02:00Z",
        "2026-01-05 10:02:00Z",
        "FAILURE",
        "1.5s",
        "baseline-interval",
    ]
    assert [table[2][i] for i in (0, 4, 5, 6)] == [ok, "SUCCESS", "42ms", "baseline-interval"]
    assert table[3] == ["runs 1-2 of 2"]
    page = cli.ok("runs", "list", "--endpoint", endpoint, "--limit", "1", "--offset", "1").out
    assert rows(page)[1][0] == ok
    assert page.endswith("runs 2-2 of 2\n")
    assert "more: --offset 1" in cli.ok("runs", "list", "--limit", "1").out
    failures = cli.data("runs", "list", "--job", job, "--status", "failure")
    assert [r["run_id"] for r in failures["runs"]] == [failed]
    assert failures["total"] == 1
    assert failures["runs"][0]["duration_ms"] == 1500
    assert cli.ok("runs", "list", "--status", "running").out == "no runs\n"


def test_runs_list_refuses_bad_input(cli: Cli) -> None:
    assert_refused(cli("runs", "list", "--limit", "501"), 2, "INVALID_ARGUMENT", "limit")
    assert_refused(cli("runs", "list", "--offset", "-1"), 2, "INVALID_ARGUMENT", "offset")
    assert_usage(cli("runs", "list", "--status", "lost"), "argument --status")


def test_runs_get_shows_the_outcome(cli: Cli) -> None:
    endpoint = new_endpoint(cli, new_job(cli))
    run_id = cli.harness.fire(
        endpoint, status="FAILURE", http_status=503, error_message="HTTP 503", response_body="upstream\nunavailable"
    )
    out = cli.ok("runs", "get", run_id).out
    shown = pairs(out)
    assert (shown["status"], shown["http_status"], shown["error_message"]) == ("FAILURE", "503", "HTTP 503")
    assert shown["scheduled_for"] == "2026-01-05 10:01:00Z"
    assert "response_body       upstream\n                    unavailable\n" in out
    data = cli.data("runs", "get", run_id)["run"]
    assert data["status"] == "RUN_STATUS_FAILURE"
    assert data["response_body"] == "upstream\nunavailable"
    assert_refused(cli("runs", "get", "run_01m8bgzrdwc1kthte344nnjqj0"), 3, "NOT_FOUND")


# --- every command: wrong key, other tenant, --json after the subcommand ---------------------------------------------


@dataclass(frozen=True)
class Ids:
    job: str
    endpoint: str
    run: str


@pytest.fixture
def ids(cli: Cli) -> Ids:
    job = new_job(cli)
    endpoint = new_endpoint(cli, job)
    return Ids(job, endpoint, cli.harness.fire(endpoint))


EVERY_COMMAND = [
    ("jobs", "create", "x"),
    ("jobs", "get", "{job}"),
    ("jobs", "list"),
    ("jobs", "update", "{job}", "--name", "y"),
    ("jobs", "archive", "{job}"),
    ("endpoints", "add", "{job}", "--name", "x", "--url", URL, "--every", "1m"),
    ("endpoints", "update", "{endpoint}", "--every", "2m"),
    ("endpoints", "delete", "{endpoint}"),
    ("endpoints", "list", "{job}"),
    ("endpoints", "hint", "{endpoint}", "--every", "10s"),
    ("endpoints", "once", "{endpoint}"),
    ("endpoints", "pause", "{endpoint}"),
    ("endpoints", "resume", "{endpoint}"),
    ("endpoints", "clear-hints", "{endpoint}"),
    ("endpoints", "reset-failures", "{endpoint}"),
    ("endpoints", "health", "{endpoint}"),
    ("runs", "list", "--job", "{job}"),
    ("runs", "get", "{run}"),
    ("runs", "watch", "--job", "{job}"),
]


def fill(argv: tuple[str, ...], ids: Ids) -> list[str]:
    return [arg.format(job=ids.job, endpoint=ids.endpoint, run=ids.run) for arg in argv]


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=lambda argv: " ".join(argv[:2]))
def test_every_command_refuses_strangers_and_prints_json(cli: Cli, ids: Ids, argv: tuple[str, ...]) -> None:
    """A wrong key is UNAUTHENTICATED (5); tenant b gets NOT_FOUND (3) for tenant a's ids, and listing runs by a's job
    shows b nothing; for the owner, `--json` after the subcommand prints a JSON object."""
    filled = fill(argv, ids)
    assert_refused(cli(*filled, key="pk_wrongkey_0000000000000000000000"), 5, "UNAUTHENTICATED")
    if argv[1] == "watch":
        return  # a watch that is not refused waits for runs; tests/integration/test_cli.py watches in a process
    stranger = cli(*filled, key=cli.harness.b.key)
    if argv[:2] == ("runs", "list"):
        assert (stranger.code, stranger.out) == (0, "no runs\n")
    elif "{" in "".join(argv):
        assert_refused(stranger, 3, "NOT_FOUND")
    owner = cli(*filled, "--json")
    assert owner.code == 0, owner.err
    assert isinstance(owner.json(), dict)


# --- key and address resolution --------------------------------------------------------------------------------------


def test_key_and_address_come_from_the_environment(cli: Cli, tmp_path: Path) -> None:
    harness = cli.harness
    env = {"PACER_CONTROL_ADDR": harness.address, "PACER_API_KEY": harness.a.key}
    assert cli.raw("jobs", "list", environ=env).code == 0
    older_alias = {"PACER_ADDR": harness.address, "PACER_API_KEY": harness.a.key}
    assert cli.raw("jobs", "list", environ=older_alias).code == 0
    both = {"PACER_CONTROL_ADDR": harness.address, "PACER_ADDR": "127.0.0.1:1", "PACER_API_KEY": harness.a.key}
    assert cli.raw("jobs", "list", environ=both).code == 0  # the one name every service reads wins
    (tmp_path / "dev-api-key").write_text(harness.a.key + "\n")
    from_file = {"PACER_ADDR": harness.address, "PACER_VAR_DIR": str(tmp_path)}
    assert cli.raw("jobs", "list", environ=from_file).code == 0
    wrong_env = {"PACER_ADDR": harness.address, "PACER_API_KEY": "pk_wrong"}
    assert cli.raw("--api-key", harness.a.key, "jobs", "list", environ=wrong_env).code == 0  # the flag wins
    assert cli.raw("jobs", "list", environ=wrong_env).code == 5
    other = {"PACER_ADDR": "127.0.0.1:1", "PACER_API_KEY": harness.a.key}
    assert cli.raw("--addr", harness.address, "jobs", "list", environ=other).code == 0
    assert cli.raw("jobs", "list", "--addr", harness.address, environ=other).code == 0


def test_no_key_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli.raw("--addr", cli.harness.address, "jobs", "list", environ={"PACER_VAR_DIR": str(tmp_path)})
    assert_usage(result, "no API key")


# --- as a real process -----------------------------------------------------------------------------------------------


def process_env(harness: Harness, key: str | None) -> dict[str, str]:
    env = {name: value for name, value in process_environment().items() if not name.startswith("PACER_")}
    env["PACER_CONTROL_ADDR"] = harness.address
    if key is not None:
        env["PACER_API_KEY"] = key
    return env


def pacerctl(harness: Harness, *argv: str, key: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = process_env(harness, key)
    return subprocess.run(
        [str(PACERCTL), *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=DEADLINE_S, check=False
    )


def test_the_installed_script_sets_up_and_steers_a_job(harness: Harness, tmp_path: Path) -> None:
    key = harness.a.key
    created = pacerctl(harness, "jobs", "create", JOB_NAME, "--json", key=key, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout)["job_id"]
    added = pacerctl(
        harness,
        "endpoints",
        "add",
        job,
        "--name",
        "check_error_rate",
        "--url",
        URL,
        "--every",
        "1m",
        key=key,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    endpoint = pairs(added.stdout)["endpoint_id"]
    hinted = pacerctl(
        harness,
        "--json",
        "endpoints",
        "hint",
        endpoint,
        "--every",
        "15s",
        "--ttl",
        "30m",
        "--reason",
        "error rate rising",
        key=key,
        cwd=tmp_path,
    )
    assert json.loads(hinted.stdout)["next_run_at"] == "2026-01-05T10:00:15Z"
    listed = pacerctl(harness, "endpoints", "list", job, key=key, cwd=tmp_path)
    assert rows(listed.stdout)[1][:4] == [endpoint, "check_error_rate", "2026-01-05 10:00:15Z", "ai-interval"]


def test_the_installed_script_exit_codes(harness: Harness, tmp_path: Path) -> None:
    key = harness.a.key
    missing = pacerctl(harness, "jobs", "get", "job_01m8bgzr89a5qqqzt6zmqdht20", key=key, cwd=tmp_path)
    assert (missing.returncode, missing.stdout) == (3, "")
    assert missing.stderr.startswith("error: NOT_FOUND: ")
    invalid = pacerctl(harness, "jobs", "create", "", key=key, cwd=tmp_path)
    assert invalid.returncode == 2
    assert invalid.stderr.startswith("error: INVALID_ARGUMENT: ")
    assert "\n  name: " in invalid.stderr
    wrong = pacerctl(harness, "jobs", "list", key="pk_wrong", cwd=tmp_path)
    assert wrong.returncode == 5
    assert "UNAUTHENTICATED" in wrong.stderr
    no_key = pacerctl(harness, "jobs", "list", key=None, cwd=tmp_path)  # no var/dev-api-key in tmp_path
    assert (no_key.returncode, no_key.stdout) == (2, "")
    assert "no API key" in no_key.stderr
    usage = pacerctl(harness, "jobs", "frobnicate", key=key, cwd=tmp_path)
    assert usage.returncode == 2
    helped = pacerctl(harness, "--help", key=None, cwd=tmp_path)
    assert helped.returncode == 0
    assert "exit codes:" in helped.stdout


def test_the_installed_script_reports_an_unreachable_control_plane(harness: Harness, tmp_path: Path) -> None:
    closed_port = free_port()
    down = pacerctl(harness, "--addr", f"127.0.0.1:{closed_port}", "jobs", "list", key=harness.a.key, cwd=tmp_path)
    assert down.returncode == 7
    assert down.stderr.startswith("error: UNAVAILABLE: ")
    assert f"127.0.0.1:{closed_port}" in down.stderr


# --- runs watch ------------------------------------------------------------------------------------------------------


class Lines:
    """The lines of a child's stream, read on a thread so the test can wait for one with a deadline."""

    def __init__(self, stream: Any) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for line in self._stream:
            self._queue.put(line)

    def close(self) -> None:
        """After the child exited: let the reader reach the end of the stream, then close it."""
        self._thread.join(timeout=DEADLINE_S)
        self._stream.close()

    def wait_for(self, predicate: Any, what: str) -> str:
        deadline = time.monotonic() + DEADLINE_S
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no {what} within {DEADLINE_S}s; saw {self.seen!r}")


@pytest.fixture
def watcher(harness: Harness, tmp_path: Path) -> Iterator[Any]:
    """Starts `pacerctl runs watch ARGS` and waits until it has taken its first look; stops it at the end."""
    started: list[tuple[subprocess.Popen[str], Lines, Lines]] = []

    def start(*argv: str) -> tuple[subprocess.Popen[str], Lines]:
        process = subprocess.Popen(
            [str(PACERCTL), "runs", "watch", "--interval", "0.1", *argv],
            env=process_env(harness, harness.a.key),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        err, out = Lines(process.stderr), Lines(process.stdout)
        started.append((process, err, out))
        err.wait_for(lambda line: line.startswith("watching runs"), "watching line")
        return process, out

    yield start
    for process, err, out in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=DEADLINE_S)
        err.close()
        out.close()


def interrupt(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=DEADLINE_S)


def test_runs_watch_prints_each_finished_run_once_until_ctrl_c(harness: Harness, cli: Cli, watcher: Any) -> None:
    endpoint = new_endpoint(cli, new_job(cli))
    before = harness.fire(endpoint)  # finished before the watch: not printed
    process, out = watcher()
    fired = [harness.fire(endpoint), harness.fire(endpoint, status="FAILURE", http_status=500), harness.fire(endpoint)]
    for run_id in fired:
        out.wait_for(lambda line, run_id=run_id: run_id in line, run_id)
    sentinel = harness.fire(endpoint)  # once it shows, any repeat of the earlier runs would have shown too
    out.wait_for(lambda line: sentinel in line, "the sentinel run")
    assert interrupt(process) == 0
    printed = [line.split()[5] for line in out.seen]
    assert printed == [*fired, sentinel]  # each once, in the order they ran, none from before the watch
    assert before not in "".join(out.seen)
    first = out.seen[0].split()
    assert first[:5] == ["2026-01-05", "10:02:00Z", "SUCCESS", "50ms", endpoint]
    assert out.seen[1].split()[2] == "FAILURE"


def test_runs_watch_json_lines_and_filters(harness: Harness, cli: Cli, watcher: Any) -> None:
    watched = new_endpoint(cli, new_job(cli))
    other = new_endpoint(cli, new_job(cli, "Other"), "--every", "7m", name="other")
    process, out = watcher("--endpoint", watched, "--json")
    harness.fire(other)
    mine = harness.fire(watched, status="FAILURE", http_status=502)
    out.wait_for(lambda line: mine in line, mine)
    assert interrupt(process) == 0
    printed = [json.loads(line) for line in out.seen]
    # fire(other) moved the clock past watched's due time too, so watched ran twice, both after the watch started.
    newest_first = harness.a.ListRuns(pb.ListRunsRequest(endpoint_id=watched)).runs
    assert [run["run_id"] for run in printed] == [run.run_id for run in reversed(newest_first)]
    assert all(run["endpoint_id"] == watched for run in printed)
    assert printed[-1]["status"] == "RUN_STATUS_FAILURE"


def test_runs_watch_refuses_a_bad_interval(cli: Cli) -> None:
    assert_usage(cli("runs", "watch", "--interval", "0"), "argument --interval")


def test_audit_list_shows_who_did_what_and_why_newest_first(cli: Cli) -> None:
    job = new_job(cli)
    endpoint = new_endpoint(cli, job)
    cli.ok("endpoints", "pause", endpoint, "--reason", "supplier maintenance")
    table = cli.ok("audit", "list", "--endpoint", endpoint).out.splitlines()
    assert table[0].split() == ["AT", "WHO", "WHAT", "TARGET", "WHY"]
    assert "PauseOrResumeEndpoint" in table[1]
    assert "supplier maintenance" in table[1]
    assert "AddEndpointToJob" in table[2]
    page = cli.data("audit", "list", "--job", job, "--page-size", "1")
    assert len(page["records"]) == 1
    assert page["next_page_token"]
    assert "audit list --job" not in cli.ok("audit", "list", "--job", job).out  # one page holds them all
    foreign = cli("audit", "list", "--job", job, key=cli.harness.b.key)
    assert_refused(foreign, 3, "NOT_FOUND")
