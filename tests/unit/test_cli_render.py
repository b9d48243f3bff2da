"""pacerctl without a server: the values people type (durations, TTLs, times, headers), how responses and errors are
rendered, the exit-code table, and the bookkeeping that makes `runs watch` print each run once."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli import render
from pacer_cli.commands import flag_for, parse_duration_ms, parse_header, parse_time, parse_ttl_minutes
from pacer_cli.main import exit_code
from pacer_cli.watch import RunTail
from pacer_common.client import ApiError
from pacer_common.errors import FieldViolation, QuotaViolation

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# --- durations and other typed values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("500ms", 500),
        ("20s", 20_000),
        ("5m", 300_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("1h30m", 5_400_000),
        ("1m30s500ms", 90_500),
        ("1.5s", 1500),
        ("0.5h", 1_800_000),
        (" 10S ", 10_000),
        ("0", 0),
        ("0s", 0),
    ],
)
def test_durations_parse_to_milliseconds(text: str, millis: int) -> None:
    assert parse_duration_ms(text) == millis


@pytest.mark.parametrize("text", ["", "60", "5 m", "5min", "m5", "-5s", "1h-30m", "1.5", "1e3s", "five minutes"])
def test_malformed_durations_are_refused_with_examples(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="500ms, 20s, 5m"):
        parse_duration_ms(text)


@pytest.mark.parametrize(("text", "minutes"), [("30", 30), ("30m", 30), ("2h", 120), ("1d", 1440), ("90m", 90)])
def test_ttls_are_minutes_or_whole_minute_durations(text: str, minutes: int) -> None:
    assert parse_ttl_minutes(text) == minutes


@pytest.mark.parametrize("text", ["90s", "1.5m", "soon", "-5"])
def test_ttls_of_part_minutes_or_garbage_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_ttl_minutes(text)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-01-05T10:00:00Z", T0),
        ("2026-01-05 10:00", T0),
        ("2026-01-05T11:00:00+01:00", T0),
        ("2026-01-05T10:00:00.000+00:00", T0),
    ],
)
def test_times_are_iso_8601_and_utc_without_an_offset(text: str, moment: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == moment
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize("text", ["tomorrow", "10:00", "2026-13-01T00:00:00Z", ""])
def test_malformed_times_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="ISO 8601"):
        parse_time(text)


@pytest.mark.parametrize(
    ("text", "header"),
    [
        ("X-Team=sre", ("X-Team", "sre")),
        ("Authorization=Bearer a=b", ("Authorization", "Bearer a=b")),
        ("Authorization: Bearer abc", ("Authorization", "Bearer abc")),
        ("X-Empty=", ("X-Empty", "")),
    ],
)
def test_headers_are_name_equals_value_or_name_colon_value(text: str, header: tuple[str, str]) -> None:
    assert parse_header(text) == header


@pytest.mark.parametrize("text", ["no separator", "=value", "Bad Name=1"])
def test_malformed_headers_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_header(text)


# --- rendering -------------------------------------------------------------------------------------------------------


def test_times_render_as_utc_and_unset_as_a_dash() -> None:
    assert render.format_time(ts(datetime(2026, 1, 5, 11, 30, 5, 700_000, tzinfo=UTC))) == "2026-01-05 11:30:05Z"
    assert render.format_time(Timestamp()) == "-"


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (0, "0ms"),
        (850, "850ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (12_340, "12.3s"),
        (125_000, "2m5s"),
        (5_400_000, "1h30m"),
        (172_800_000, "2d"),
    ],
)
def test_durations_render_compactly(millis: int, text: str) -> None:
    assert render.format_millis(millis) == text


def test_enum_values_lose_their_prefix_and_sources_use_the_design_vocabulary() -> None:
    assert render.status_label(pb.RUN_STATUS_SUCCESS) == "SUCCESS"
    assert render.enum_label(pb.JobStatus.DESCRIPTOR, pb.JOB_STATUS_ARCHIVED) == "ARCHIVED"
    assert render.source_label(pb.RUN_SOURCE_AI_ONESHOT) == "ai-oneshot"
    assert render.source_label(pb.RUN_SOURCE_CLAMPED_MIN) == "clamped-min"
    assert render.status_label(pb.RUN_STATUS_UNSPECIFIED) == "-"
    assert render.status_label(99) == "99"  # a status from a newer server still prints


def test_tables_align_columns_and_right_align_numbers() -> None:
    text = render.table(("ID", "NAME", "COUNT"), [("a", "long name", "7"), ("bbbb", "x", "1234")], right=frozenset({2}))
    assert text == ("ID    NAME       COUNT\na     long name      7\nbbbb  x           1234\n")


def test_tables_have_no_trailing_spaces() -> None:
    text = render.table(("A", "LAST"), [("1", ""), ("22", "x")])
    assert all(line == line.rstrip() for line in text.splitlines())


def test_key_values_align_and_indent_multi_line_values() -> None:
    text = render.key_values([("status", "FAILURE"), ("response_body", "line one\nline two"), ("empty", "")])
    assert text == "status         FAILURE\nresponse_body  line one\n               line two\nempty\n"


def test_details_unwrap_the_single_object_and_flatten_nested_ones() -> None:
    job = pb.Job(job_id="job_1", name="Prod", status=pb.JOB_STATUS_ACTIVE, created_at=ts(T0), endpoint_count=2)
    shown = render.details(pb.GetJobResponse(job=job))
    assert shown.splitlines()[0].split() == ["job_id", "job_1"]
    assert "status          ACTIVE\n" in shown
    assert "archived_at     -\n" in shown
    last_run = pb.LastRun(status=pb.RUN_STATUS_TIMEOUT, at=ts(T0))
    health = render.details(pb.SummarizeEndpointHealthResponse(success_count=3, last_run=last_run))
    assert "last_run.status  TIMEOUT\n" in health
    assert "last_run.at      2026-01-05 10:00:00Z\n" in health
    assert "last_run         -\n" in render.details(pb.SummarizeEndpointHealthResponse())


def test_job_and_endpoint_tables() -> None:
    jobs = pb.ListJobsResponse(
        jobs=[pb.JobSummary(job_id="job_1", name="Prod Health", status=pb.JOB_STATUS_ACTIVE, endpoint_count=12)],
        next_page_token="tok",
    )
    assert render.jobs_table(jobs).splitlines() == [
        "ID     NAME         STATUS  ENDPOINTS  LAST RUN",
        "job_1  Prod Health  ACTIVE         12  -",
        "more: --page-token tok (or --all)",
    ]
    endpoints = pb.ListJobEndpointsResponse(
        endpoints=[
            pb.EndpointSummary(
                endpoint_id="ep_1", name="a", next_run_at=ts(T0), next_run_source=pb.RUN_SOURCE_AI_INTERVAL
            ),
            pb.EndpointSummary(endpoint_id="ep_2", name="b", paused=True, paused_until=ts(T0), failure_count=3),
            pb.EndpointSummary(endpoint_id="ep_3", name="c", paused=True, next_run_source=pb.RUN_SOURCE_PAUSED),
        ]
    )
    assert render.endpoints_table(endpoints).splitlines() == [
        "ID    NAME  NEXT RUN              SOURCE       LAST RUN  FAILURES  PAUSED",
        "ep_1  a     2026-01-05 10:00:00Z  ai-interval  -                0  no",
        "ep_2  b     -                     -            -                3  until 2026-01-05 10:00:00Z",
        "ep_3  c     -                     paused       -                0  indefinitely",
    ]
    assert render.jobs_table(pb.ListJobsResponse()) == "no jobs\n"


def test_runs_table_says_which_slice_it_shows() -> None:
    run = pb.RunSummary(run_id="run_1", endpoint_id="ep_1", scheduled_for=ts(T0), status=pb.RUN_STATUS_RUNNING)
    text = render.runs_table(pb.ListRunsResponse(runs=[run], total=5), offset=2)
    assert text.splitlines()[1].split() == ["run_1", "ep_1", "2026-01-05", "10:00:00Z", "-", "RUNNING", "-", "-"]
    assert text.endswith("runs 3-3 of 5; more: --offset 3\n")
    assert render.runs_table(pb.ListRunsResponse(total=5), offset=9) == "no runs (of 5 matching)\n"


def test_run_lines_have_fixed_columns() -> None:
    run = pb.RunSummary(
        run_id="run_1",
        endpoint_id="ep_1",
        scheduled_for=ts(T0),
        status=pb.RUN_STATUS_SUCCESS,
        duration_ms=42,
        source=pb.RUN_SOURCE_BASELINE_CRON,
    )
    assert render.run_line(run) == "2026-01-05 10:00:00Z  SUCCESS     42ms  ep_1  run_1  baseline-cron\n"


def test_json_uses_proto_field_names_and_shows_zero_values() -> None:
    data = json.loads(render.to_json(pb.ResetFailureCountResponse(failure_count=0, next_run_at=ts(T0))))
    assert data == {"failure_count": 0, "next_run_at": "2026-01-05T10:00:00Z"}
    line = render.to_json(pb.RunSummary(run_id="run_1", duration_ms=5), compact=True)
    assert "\n" not in line
    assert json.loads(line)["duration_ms"] == 5  # int64 as a JSON number, as REST and MCP write it


# --- errors and exit codes -------------------------------------------------------------------------------------------


def test_error_text_names_each_field_and_the_option_behind_it() -> None:
    error = ApiError(
        "INVALID_ARGUMENT",
        "invalid request",
        (FieldViolation("baseline.interval_ms", "must be at least 1000 ms"), FieldViolation("job_id", "bad")),
    )
    assert render.error_text(error, flag_for, "127.0.0.1:50051") == (
        "error: INVALID_ARGUMENT: invalid request\n"
        "  baseline.interval_ms: must be at least 1000 ms (--every)\n"
        "  job_id: bad\n"
    )


def test_error_text_gives_quota_and_retry_after() -> None:
    error = ApiError("RESOURCE_EXHAUSTED", "slow down", (), (QuotaViolation("tenant acme", "100 calls/s"),), 2.5)
    text = render.error_text(error, flag_for, "x")
    assert text.splitlines() == [
        "error: RESOURCE_EXHAUSTED: slow down",
        "  tenant acme: 100 calls/s",
        "  retry after 2.5 s",
    ]


def test_unavailable_names_the_address_tried() -> None:
    text = render.error_text(ApiError("UNAVAILABLE", "connection refused"), flag_for, "10.0.0.5:50051")
    assert "10.0.0.5:50051" in text


@pytest.mark.parametrize(
    ("field", "flag"),
    [
        ("baseline.cron.timezone", "--timezone"),
        ("clamp", "--min-interval/--max-interval"),
        ("headers.X-Bad", "--header"),
        ("ttl_minutes", "--ttl"),
        ("name", "--name"),
        ("job_id", None),
    ],
)
def test_fields_map_to_options(field: str, flag: str | None) -> None:
    assert flag_for(field) == flag


@pytest.mark.parametrize(
    ("code", "exit_status"),
    [
        ("INVALID_ARGUMENT", 2),
        ("NOT_FOUND", 3),
        ("FAILED_PRECONDITION", 4),
        ("UNAUTHENTICATED", 5),
        ("PERMISSION_DENIED", 5),
        ("RESOURCE_EXHAUSTED", 6),
        ("UNAVAILABLE", 7),
        ("INTERNAL", 7),
        ("UNKNOWN", 7),
    ],
)
def test_exit_codes(code: str, exit_status: int) -> None:
    assert exit_code(code) == exit_status


# --- runs watch bookkeeping ------------------------------------------------------------------------------------------


def summary(run_id: str, minute: int, status: int = pb.RUN_STATUS_SUCCESS) -> pb.RunSummary:
    return pb.RunSummary(run_id=run_id, scheduled_for=ts(T0.replace(minute=minute)), status=status)


def test_run_tail_returns_each_finished_run_once_in_scheduled_order() -> None:
    tail = RunTail()
    assert [r.run_id for r in tail.advance([summary("old", 0)])] == ["old"]
    running = summary("c", 3, pb.RUN_STATUS_RUNNING)
    newest_first = [running, summary("b", 2), summary("a", 1), summary("old", 0)]
    assert [r.run_id for r in tail.advance(newest_first)] == ["a", "b"]
    assert tail.advance(newest_first) == []
    finished = [summary("c", 3, pb.RUN_STATUS_LOST), summary("b", 2), summary("a", 1)]
    assert [r.run_id for r in tail.advance(finished)] == ["c"]


def test_run_tail_knows_when_a_page_reaches_back_to_the_last_window() -> None:
    tail = RunTail()
    tail.advance([summary("a", 1)])
    assert tail.overlaps([summary("b", 2), summary("a", 1)])
    assert not tail.overlaps([summary("c", 3), summary("b", 2)])
