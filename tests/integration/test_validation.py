"""Bad input and refused calls: INVALID_ARGUMENT naming the field, NOT_FOUND for unknown ids, UNAUTHENTICATED for a
missing or wrong key, FAILED_PRECONDITION for archived jobs and deleted endpoints. Also the limits themselves are
accepted, so a user can rely on the documented bounds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc
import pytest

from pacer.control.v1 import control_service_pb2 as pb
from pacer_control.auth import issue_key
from tests.support.harness import status_of, ts, violations

URL = "https://shop.example.com/health"
INTERVAL = pb.Baseline(interval_ms=60_000)


@dataclass(frozen=True)
class Ctx:
    job_id: str
    endpoint_id: str
    now: datetime


def new_job(client) -> str:
    return client.CreateJob(pb.CreateJobRequest(name="Validation")).job_id


def new_endpoint(client, job_id: str) -> str:
    request = pb.AddEndpointToJobRequest(job_id=job_id, name="health", url=URL, baseline=INTERVAL)
    return client.AddEndpointToJob(request).endpoint_id


@pytest.fixture
def ctx(harness) -> Ctx:
    job_id = new_job(harness.a)
    return Ctx(job_id, new_endpoint(harness.a, job_id), harness.clock.now())


def add(c: Ctx, **fields) -> pb.AddEndpointToJobRequest:
    fields.setdefault("name", "health")
    fields.setdefault("url", URL)
    fields.setdefault("baseline", INTERVAL)
    return pb.AddEndpointToJobRequest(job_id=c.job_id, **fields)


def upd(c: Ctx, **fields) -> pb.UpdateEndpointConfigRequest:
    return pb.UpdateEndpointConfigRequest(endpoint_id=c.endpoint_id, **fields)


def hint(c: Ctx, interval_ms: int = 30_000, **fields) -> pb.ApplyIntervalHintRequest:
    return pb.ApplyIntervalHintRequest(endpoint_id=c.endpoint_id, interval_ms=interval_ms, **fields)


def shot(c: Ctx, run_at: datetime | None, **fields) -> pb.ScheduleOneShotRunRequest:
    request = pb.ScheduleOneShotRunRequest(endpoint_id=c.endpoint_id, **fields)
    if run_at is not None:
        request.run_at.CopyFrom(ts(run_at))
    return request


def cron(expression: str, timezone: str = "") -> pb.Baseline:
    return pb.Baseline(cron=pb.CronSchedule(expression=expression, timezone=timezone))


def many_headers(count: int) -> dict[str, str]:
    return {f"X-Header-{n}": "v" for n in range(count)}


TOO_LONG_URL = "https://shop.example.com/" + "a" * 2030  # 2055 characters
LONGEST_URL = "https://shop.example.com/" + "a" * (2048 - 25)
BIG_HEADERS = {"X-One": "v" * 9000, "X-Two": "v" * 9000}  # about 18 KiB
LONG_REASON = "r" * 501
MINUTE = timedelta(minutes=1)

# (rpc, request builder, field named in the BadRequest violation)
INVALID = [
    pytest.param("CreateJob", lambda c: pb.CreateJobRequest(name=""), "name", id="create-job-empty-name"),
    pytest.param("CreateJob", lambda c: pb.CreateJobRequest(name="n" * 201), "name", id="create-job-long-name"),
    pytest.param(
        "CreateJob",
        lambda c: pb.CreateJobRequest(name="ok", description="d" * 2001),
        "description",
        id="create-job-long-description",
    ),
    pytest.param(
        "UpdateJob", lambda c: pb.UpdateJobRequest(job_id=c.job_id, name=""), "name", id="update-job-empty-name"
    ),
    pytest.param(
        "UpdateJob", lambda c: pb.UpdateJobRequest(job_id=c.job_id, name="n" * 201), "name", id="update-job-long-name"
    ),
    pytest.param(
        "UpdateJob",
        lambda c: pb.UpdateJobRequest(job_id=c.job_id, description="d" * 2001),
        "description",
        id="update-job-long-description",
    ),
    pytest.param(
        "UpdateJob",
        lambda c: pb.UpdateJobRequest(job_id=c.job_id, name="ok", reason=LONG_REASON),
        "reason",
        id="update-job-long-reason",
    ),
    pytest.param(
        "ArchiveJob",
        lambda c: pb.ArchiveJobRequest(job_id=c.job_id, reason=LONG_REASON),
        "reason",
        id="archive-job-long-reason",
    ),
    # AddEndpointToJob
    pytest.param("AddEndpointToJob", lambda c: add(c, name=""), "name", id="add-empty-name"),
    pytest.param("AddEndpointToJob", lambda c: add(c, name="n" * 201), "name", id="add-long-name"),
    pytest.param("AddEndpointToJob", lambda c: add(c, url=""), "url", id="add-empty-url"),
    pytest.param("AddEndpointToJob", lambda c: add(c, url="ftp://files.example.com/x"), "url", id="add-ftp-url"),
    pytest.param("AddEndpointToJob", lambda c: add(c, url="file:///etc/passwd"), "url", id="add-file-url"),
    pytest.param("AddEndpointToJob", lambda c: add(c, url="https://"), "url", id="add-url-without-host"),
    pytest.param("AddEndpointToJob", lambda c: add(c, url="shop.example.com/health"), "url", id="add-relative-url"),
    pytest.param("AddEndpointToJob", lambda c: add(c, url=TOO_LONG_URL), "url", id="add-long-url"),
    pytest.param("AddEndpointToJob", lambda c: add(c, method="FETCH"), "method", id="add-unknown-method"),
    pytest.param("AddEndpointToJob", lambda c: add(c, method="CONNECT"), "method", id="add-connect-method"),
    pytest.param("AddEndpointToJob", lambda c: add(c, headers=many_headers(51)), "headers", id="add-51-headers"),
    pytest.param(
        "AddEndpointToJob", lambda c: add(c, headers={"Bad Header": "v"}), "headers", id="add-header-name-with-space"
    ),
    pytest.param(
        "AddEndpointToJob", lambda c: add(c, headers={"X-Bad:Name": "v"}), "headers", id="add-header-name-with-colon"
    ),
    pytest.param("AddEndpointToJob", lambda c: add(c, headers={"X" * 257: "v"}), "headers", id="add-long-header-name"),
    pytest.param("AddEndpointToJob", lambda c: add(c, headers=BIG_HEADERS), "headers", id="add-headers-over-16k"),
    pytest.param("AddEndpointToJob", lambda c: add(c, body="b" * (256 * 1024 + 1)), "body", id="add-body-over-256k"),
    pytest.param("AddEndpointToJob", lambda c: add(c, timeout_ms=99), "timeout_ms", id="add-timeout-too-short"),
    pytest.param("AddEndpointToJob", lambda c: add(c, timeout_ms=300_001), "timeout_ms", id="add-timeout-too-long"),
    pytest.param("AddEndpointToJob", lambda c: add(c, timeout_ms=-1), "timeout_ms", id="add-negative-timeout"),
    pytest.param("AddEndpointToJob", lambda c: add(c, baseline=pb.Baseline()), "baseline", id="add-empty-baseline"),
    pytest.param(
        "AddEndpointToJob",
        lambda c: pb.AddEndpointToJobRequest(job_id=c.job_id, name="health", url=URL),
        "baseline",
        id="add-no-baseline",
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, baseline=pb.Baseline(cron=pb.CronSchedule(expression="* * * * *"), interval_ms=60_000)),
        "baseline",
        id="add-cron-and-interval",
    ),
    pytest.param(
        "AddEndpointToJob", lambda c: add(c, baseline=cron("not a cron")), "baseline.cron.expression", id="add-bad-cron"
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, baseline=cron("61 * * * *")),
        "baseline.cron.expression",
        id="add-cron-minute-out-of-range",
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, baseline=cron("* * * *")),
        "baseline.cron.expression",
        id="add-cron-four-fields",
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, baseline=cron("0 9 * * *", "Mars/Olympus_Mons")),
        "baseline.cron.timezone",
        id="add-unknown-timezone",
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, baseline=pb.Baseline(interval_ms=999)),
        "baseline.interval_ms",
        id="add-interval-below-floor",
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, baseline=pb.Baseline(interval_ms=-60_000)),
        "baseline.interval_ms",
        id="add-negative-interval",
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, clamp=pb.Clamp(min_interval_ms=120_000, max_interval_ms=60_000)),
        "clamp",
        id="add-clamp-min-above-max",
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, clamp=pb.Clamp(min_interval_ms=-1)),
        "clamp.min_interval_ms",
        id="add-negative-clamp-min",
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, clamp=pb.Clamp(max_interval_ms=-1)),
        "clamp.max_interval_ms",
        id="add-negative-clamp-max",
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, clamp=pb.Clamp(min_interval_ms=500)),
        "clamp.min_interval_ms",
        id="add-clamp-min-below-floor",
    ),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, clamp=pb.Clamp(max_interval_ms=999)),
        "clamp.max_interval_ms",
        id="add-clamp-max-below-floor",
    ),
    pytest.param("AddEndpointToJob", lambda c: add(c, reason=LONG_REASON), "reason", id="add-long-reason"),
    # UpdateEndpointConfig
    pytest.param("UpdateEndpointConfig", lambda c: upd(c, name=""), "name", id="update-empty-name"),
    pytest.param("UpdateEndpointConfig", lambda c: upd(c, url="ftp://files.example.com/x"), "url", id="update-ftp-url"),
    pytest.param("UpdateEndpointConfig", lambda c: upd(c, url=TOO_LONG_URL), "url", id="update-long-url"),
    pytest.param("UpdateEndpointConfig", lambda c: upd(c, method="BREW"), "method", id="update-unknown-method"),
    pytest.param(
        "UpdateEndpointConfig",
        lambda c: upd(c, headers=pb.Headers(entries=many_headers(51))),
        "headers",
        id="update-51-headers",
    ),
    pytest.param(
        "UpdateEndpointConfig",
        lambda c: upd(c, headers=pb.Headers(entries={"Bad Header": "v"})),
        "headers",
        id="update-bad-header-name",
    ),
    pytest.param(
        "UpdateEndpointConfig", lambda c: upd(c, body="b" * (256 * 1024 + 1)), "body", id="update-body-over-256k"
    ),
    pytest.param("UpdateEndpointConfig", lambda c: upd(c, timeout_ms=50), "timeout_ms", id="update-timeout-too-short"),
    pytest.param(
        "UpdateEndpointConfig", lambda c: upd(c, timeout_ms=300_001), "timeout_ms", id="update-timeout-too-long"
    ),
    pytest.param(
        "UpdateEndpointConfig", lambda c: upd(c, baseline=pb.Baseline()), "baseline", id="update-empty-baseline"
    ),
    pytest.param(
        "UpdateEndpointConfig",
        lambda c: upd(c, baseline=cron("every monday")),
        "baseline.cron.expression",
        id="update-bad-cron",
    ),
    pytest.param(
        "UpdateEndpointConfig",
        lambda c: upd(c, baseline=cron("0 9 * * *", "Nowhere/City")),
        "baseline.cron.timezone",
        id="update-unknown-timezone",
    ),
    pytest.param(
        "UpdateEndpointConfig",
        lambda c: upd(c, baseline=pb.Baseline(interval_ms=500)),
        "baseline.interval_ms",
        id="update-interval-below-floor",
    ),
    pytest.param(
        "UpdateEndpointConfig",
        lambda c: upd(c, clamp=pb.Clamp(min_interval_ms=60_000, max_interval_ms=30_000)),
        "clamp",
        id="update-clamp-min-above-max",
    ),
    pytest.param(
        "UpdateEndpointConfig",
        lambda c: upd(c, clamp=pb.Clamp(min_interval_ms=-5)),
        "clamp.min_interval_ms",
        id="update-negative-clamp-min",
    ),
    pytest.param(
        "UpdateEndpointConfig",
        lambda c: upd(c, clamp=pb.Clamp(max_interval_ms=10)),
        "clamp.max_interval_ms",
        id="update-clamp-max-below-floor",
    ),
    pytest.param(
        "UpdateEndpointConfig", lambda c: upd(c, name="ok", reason=LONG_REASON), "reason", id="update-long-reason"
    ),
    pytest.param(
        "DeleteEndpoint",
        lambda c: pb.DeleteEndpointRequest(endpoint_id=c.endpoint_id, reason=LONG_REASON),
        "reason",
        id="delete-long-reason",
    ),
    # ApplyIntervalHint
    pytest.param("ApplyIntervalHint", lambda c: hint(c, interval_ms=999), "interval_ms", id="hint-below-floor"),
    pytest.param("ApplyIntervalHint", lambda c: hint(c, interval_ms=0), "interval_ms", id="hint-zero-interval"),
    pytest.param("ApplyIntervalHint", lambda c: hint(c, interval_ms=-1000), "interval_ms", id="hint-negative-interval"),
    pytest.param("ApplyIntervalHint", lambda c: hint(c, ttl_minutes=0), "ttl_minutes", id="hint-zero-ttl"),
    pytest.param("ApplyIntervalHint", lambda c: hint(c, ttl_minutes=-5), "ttl_minutes", id="hint-negative-ttl"),
    pytest.param("ApplyIntervalHint", lambda c: hint(c, ttl_minutes=10_081), "ttl_minutes", id="hint-ttl-over-a-week"),
    pytest.param("ApplyIntervalHint", lambda c: hint(c, reason=LONG_REASON), "reason", id="hint-long-reason"),
    # ScheduleOneShotRun
    pytest.param("ScheduleOneShotRun", lambda c: shot(c, None), "run_at", id="one-shot-without-run-at"),
    pytest.param(
        "ScheduleOneShotRun", lambda c: shot(c, c.now - 6 * MINUTE), "run_at", id="one-shot-more-than-5-min-ago"
    ),
    pytest.param("ScheduleOneShotRun", lambda c: shot(c, c.now - timedelta(days=30)), "run_at", id="one-shot-long-ago"),
    pytest.param(
        "ScheduleOneShotRun", lambda c: shot(c, c.now + timedelta(days=367)), "run_at", id="one-shot-over-a-year-ahead"
    ),
    pytest.param(
        "ScheduleOneShotRun", lambda c: shot(c, c.now, reason=LONG_REASON), "reason", id="one-shot-long-reason"
    ),
    # PauseOrResumeEndpoint
    pytest.param(
        "PauseOrResumeEndpoint",
        lambda c: pb.PauseOrResumeEndpointRequest(endpoint_id=c.endpoint_id, pause_until=ts(c.now - MINUTE)),
        "pause_until",
        id="pause-until-the-past",
    ),
    pytest.param(
        "PauseOrResumeEndpoint",
        lambda c: pb.PauseOrResumeEndpointRequest(
            endpoint_id=c.endpoint_id, pause_until=ts(c.now + timedelta(hours=1)), resume=True
        ),
        "pause_until",
        id="resume-with-pause-until",
    ),
    pytest.param(
        "PauseOrResumeEndpoint",
        lambda c: pb.PauseOrResumeEndpointRequest(endpoint_id=c.endpoint_id, reason=LONG_REASON),
        "reason",
        id="pause-long-reason",
    ),
    pytest.param(
        "ClearAdaptiveHints",
        lambda c: pb.ClearAdaptiveHintsRequest(endpoint_id=c.endpoint_id, reason=LONG_REASON),
        "reason",
        id="clear-long-reason",
    ),
    pytest.param(
        "ResetFailureCount",
        lambda c: pb.ResetFailureCountRequest(endpoint_id=c.endpoint_id, reason=LONG_REASON),
        "reason",
        id="reset-long-reason",
    ),
    # Reads
    pytest.param("ListJobs", lambda c: pb.ListJobsRequest(page_size=-1), "page_size", id="list-jobs-negative-page"),
    pytest.param("ListJobs", lambda c: pb.ListJobsRequest(page_size=101), "page_size", id="list-jobs-page-over-100"),
    pytest.param(
        "ListJobs", lambda c: pb.ListJobsRequest(page_token="not-a-token!"), "page_token", id="list-jobs-bad-token"
    ),
    pytest.param("ListRuns", lambda c: pb.ListRunsRequest(limit=-1), "limit", id="list-runs-negative-limit"),
    pytest.param("ListRuns", lambda c: pb.ListRunsRequest(limit=501), "limit", id="list-runs-limit-over-500"),
    pytest.param("ListRuns", lambda c: pb.ListRunsRequest(offset=-1), "offset", id="list-runs-negative-offset"),
    pytest.param(
        "SummarizeEndpointHealth",
        lambda c: pb.SummarizeEndpointHealthRequest(endpoint_id=c.endpoint_id, window_hours=-1),
        "window_hours",
        id="health-negative-window",
    ),
    pytest.param(
        "SummarizeEndpointHealth",
        lambda c: pb.SummarizeEndpointHealthRequest(endpoint_id=c.endpoint_id, window_hours=721),
        "window_hours",
        id="health-window-over-30-days",
    ),
]


@pytest.mark.parametrize(("rpc", "build", "field"), INVALID)
def test_invalid_input_is_rejected_naming_the_field(harness, ctx, rpc, build, field):
    with pytest.raises(grpc.RpcError) as raised:
        getattr(harness.a, rpc)(build(ctx))

    assert status_of(raised.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(raised.value), violations(raised.value)


def test_several_bad_fields_are_all_named(harness, ctx):
    request = add(ctx, name="", url="ftp://x.example.com", method="FETCH", timeout_ms=1)

    with pytest.raises(grpc.RpcError) as raised:
        harness.a.AddEndpointToJob(request)

    assert status_of(raised.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert {"name", "url", "method", "timeout_ms"} <= set(violations(raised.value))


def test_rejected_input_changes_nothing(harness, ctx):
    before = harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=ctx.job_id))

    with pytest.raises(grpc.RpcError):
        harness.a.AddEndpointToJob(add(ctx, name="new", url="gopher://x.example.com"))
    with pytest.raises(grpc.RpcError):
        harness.a.UpdateEndpointConfig(upd(ctx, name="renamed", timeout_ms=1))

    assert harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=ctx.job_id)) == before


# The bounds themselves are accepted.
ACCEPTED = [
    pytest.param("CreateJob", lambda c: pb.CreateJobRequest(name="n" * 200, description="d" * 2000), id="job-limits"),
    pytest.param("AddEndpointToJob", lambda c: add(c, name="n" * 200), id="endpoint-name-200"),
    pytest.param("AddEndpointToJob", lambda c: add(c, url=LONGEST_URL), id="url-2048"),
    pytest.param("AddEndpointToJob", lambda c: add(c, url="http://10.0.0.7:8080/x"), id="plain-http"),
    pytest.param("AddEndpointToJob", lambda c: add(c, method=""), id="empty-method-means-get"),
    pytest.param("AddEndpointToJob", lambda c: add(c, method="delete"), id="lowercase-method"),
    pytest.param("AddEndpointToJob", lambda c: add(c, method="Options"), id="mixed-case-method"),
    pytest.param("AddEndpointToJob", lambda c: add(c, headers=many_headers(50)), id="50-headers"),
    pytest.param("AddEndpointToJob", lambda c: add(c, headers={"X" * 256: "v"}), id="header-name-256"),
    pytest.param("AddEndpointToJob", lambda c: add(c, body="b" * (256 * 1024)), id="body-256k"),
    pytest.param("AddEndpointToJob", lambda c: add(c, timeout_ms=100), id="timeout-100"),
    pytest.param("AddEndpointToJob", lambda c: add(c, timeout_ms=300_000), id="timeout-300000"),
    pytest.param("AddEndpointToJob", lambda c: add(c, baseline=pb.Baseline(interval_ms=1000)), id="interval-1000"),
    pytest.param(
        "AddEndpointToJob",
        lambda c: add(c, clamp=pb.Clamp(min_interval_ms=1000, max_interval_ms=1000)),
        id="clamp-min-equals-max",
    ),
    pytest.param("AddEndpointToJob", lambda c: add(c, reason="r" * 500), id="reason-500"),
    pytest.param("ApplyIntervalHint", lambda c: hint(c, interval_ms=1000, ttl_minutes=10_080), id="hint-limits"),
    pytest.param("ApplyIntervalHint", lambda c: hint(c, ttl_minutes=1), id="hint-ttl-1"),
    pytest.param("ScheduleOneShotRun", lambda c: shot(c, c.now - 4 * MINUTE), id="one-shot-4-min-ago"),
    pytest.param("ScheduleOneShotRun", lambda c: shot(c, c.now + timedelta(days=365)), id="one-shot-a-year-ahead"),
    pytest.param("ListJobs", lambda c: pb.ListJobsRequest(page_size=100), id="page-size-100"),
    pytest.param("ListRuns", lambda c: pb.ListRunsRequest(limit=500, offset=1000), id="limit-500"),
    pytest.param(
        "SummarizeEndpointHealth",
        lambda c: pb.SummarizeEndpointHealthRequest(endpoint_id=c.endpoint_id, window_hours=720),
        id="window-720",
    ),
]


@pytest.mark.parametrize(("rpc", "build"), ACCEPTED)
def test_input_at_the_documented_limits_is_accepted(harness, ctx, rpc, build):
    response = getattr(harness.a, rpc)(build(ctx))

    assert isinstance(response, getattr(pb, f"{rpc}Response"))


# Unknown and malformed ids

UNKNOWN_IDS = ["00000000-0000-0000-0000-000000000000", "no-such-id", "'; DROP TABLE jobs; --", "x" * 300]

BY_ID = [
    pytest.param("GetJob", lambda i, now: pb.GetJobRequest(job_id=i), id="GetJob"),
    pytest.param("UpdateJob", lambda i, now: pb.UpdateJobRequest(job_id=i, name="x"), id="UpdateJob"),
    pytest.param("ArchiveJob", lambda i, now: pb.ArchiveJobRequest(job_id=i), id="ArchiveJob"),
    pytest.param(
        "AddEndpointToJob",
        lambda i, now: pb.AddEndpointToJobRequest(job_id=i, name="h", url=URL, baseline=INTERVAL),
        id="AddEndpointToJob",
    ),
    pytest.param("ListJobEndpoints", lambda i, now: pb.ListJobEndpointsRequest(job_id=i), id="ListJobEndpoints"),
    pytest.param(
        "UpdateEndpointConfig",
        lambda i, now: pb.UpdateEndpointConfigRequest(endpoint_id=i, name="x"),
        id="UpdateEndpointConfig",
    ),
    pytest.param("DeleteEndpoint", lambda i, now: pb.DeleteEndpointRequest(endpoint_id=i), id="DeleteEndpoint"),
    pytest.param(
        "ApplyIntervalHint",
        lambda i, now: pb.ApplyIntervalHintRequest(endpoint_id=i, interval_ms=5_000),
        id="ApplyIntervalHint",
    ),
    pytest.param(
        "ScheduleOneShotRun",
        lambda i, now: pb.ScheduleOneShotRunRequest(endpoint_id=i, run_at=ts(now)),
        id="ScheduleOneShotRun",
    ),
    pytest.param(
        "PauseOrResumeEndpoint",
        lambda i, now: pb.PauseOrResumeEndpointRequest(endpoint_id=i),
        id="PauseOrResumeEndpoint",
    ),
    pytest.param(
        "ClearAdaptiveHints", lambda i, now: pb.ClearAdaptiveHintsRequest(endpoint_id=i), id="ClearAdaptiveHints"
    ),
    pytest.param(
        "ResetFailureCount", lambda i, now: pb.ResetFailureCountRequest(endpoint_id=i), id="ResetFailureCount"
    ),
    pytest.param("GetRunDetails", lambda i, now: pb.GetRunDetailsRequest(run_id=i), id="GetRunDetails"),
    pytest.param(
        "SummarizeEndpointHealth",
        lambda i, now: pb.SummarizeEndpointHealthRequest(endpoint_id=i),
        id="SummarizeEndpointHealth",
    ),
]


@pytest.mark.parametrize(("rpc", "build"), BY_ID)
def test_unknown_or_malformed_id_is_not_found(harness, rpc, build):
    for unknown in UNKNOWN_IDS:
        with pytest.raises(grpc.RpcError) as raised:
            getattr(harness.a, rpc)(build(unknown, harness.clock.now()))
        assert status_of(raised.value) == grpc.StatusCode.NOT_FOUND, unknown


def test_an_endpoint_id_is_not_a_job_id(harness, ctx):
    with pytest.raises(grpc.RpcError) as raised:
        harness.a.GetJob(pb.GetJobRequest(job_id=ctx.endpoint_id))
    assert status_of(raised.value) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as raised:
        harness.a.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=ctx.job_id))
    assert status_of(raised.value) == grpc.StatusCode.NOT_FOUND


# Authentication

RPCS = [
    "CreateJob",
    "GetJob",
    "ListJobs",
    "UpdateJob",
    "ArchiveJob",
    "AddEndpointToJob",
    "UpdateEndpointConfig",
    "DeleteEndpoint",
    "ListJobEndpoints",
    "ApplyIntervalHint",
    "ScheduleOneShotRun",
    "PauseOrResumeEndpoint",
    "ClearAdaptiveHints",
    "ResetFailureCount",
    "ListRuns",
    "GetRunDetails",
    "SummarizeEndpointHealth",
]


@pytest.mark.parametrize("rpc", RPCS)
def test_every_action_needs_an_api_key(harness, rpc):
    request = getattr(pb, f"{rpc}Request")()

    with pytest.raises(grpc.RpcError) as raised:
        getattr(harness.client(None), rpc)(request)

    assert status_of(raised.value) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("not a key", id="malformed"),
        pytest.param("pk_live_0123456789abcdef0123456789abcdef", id="wrong"),
    ],
)
def test_a_bad_key_is_unauthenticated_and_creates_nothing(harness, key):
    with pytest.raises(grpc.RpcError) as raised:
        harness.client(key).CreateJob(pb.CreateJobRequest(name="sneaky"))
    assert status_of(raised.value) == grpc.StatusCode.UNAUTHENTICATED

    with pytest.raises(grpc.RpcError) as raised:
        harness.client(key).ListJobs(pb.ListJobsRequest())
    assert status_of(raised.value) == grpc.StatusCode.UNAUTHENTICATED

    assert list(harness.a.ListJobs(pb.ListJobsRequest()).jobs) == []
    assert list(harness.b.ListJobs(pb.ListJobsRequest()).jobs) == []


def test_a_tampered_key_of_the_right_shape_is_unauthenticated(harness):
    key = harness.a.key
    tampered = key[:-1] + ("a" if key[-1] != "a" else "b")

    with pytest.raises(grpc.RpcError) as raised:
        harness.client(tampered).ListJobs(pb.ListJobsRequest())

    assert status_of(raised.value) == grpc.StatusCode.UNAUTHENTICATED


def test_a_revoked_key_is_unauthenticated(harness):
    # Keys are issued and revoked by the admin CLI, not the public API: use the same functions it does.
    issued = issue_key(harness.catalog, harness.tenants["acme"], "temporary", harness.clock.now())
    client = harness.client(issued.secret)
    job_id = new_job(client)

    harness.catalog.revoke_api_key(issued.prefix, harness.clock.now())

    with pytest.raises(grpc.RpcError) as raised:
        client.GetJob(pb.GetJobRequest(job_id=job_id))
    assert status_of(raised.value) == grpc.StatusCode.UNAUTHENTICATED
    assert harness.a.GetJob(pb.GetJobRequest(job_id=job_id)).job.job_id == job_id


def test_bad_input_with_a_bad_key_is_unauthenticated(harness):
    with pytest.raises(grpc.RpcError) as raised:
        harness.client("wrong").CreateJob(pb.CreateJobRequest(name=""))
    assert status_of(raised.value) == grpc.StatusCode.UNAUTHENTICATED


# Archived jobs and deleted endpoints

ON_DELETED_ENDPOINT = [
    pytest.param(
        "UpdateEndpointConfig",
        lambda e, now: pb.UpdateEndpointConfigRequest(endpoint_id=e, name="x"),
        id="UpdateEndpointConfig",
    ),
    pytest.param(
        "ApplyIntervalHint",
        lambda e, now: pb.ApplyIntervalHintRequest(endpoint_id=e, interval_ms=5_000),
        id="ApplyIntervalHint",
    ),
    pytest.param(
        "ScheduleOneShotRun",
        lambda e, now: pb.ScheduleOneShotRunRequest(endpoint_id=e, run_at=ts(now)),
        id="ScheduleOneShotRun",
    ),
    pytest.param("PauseOrResumeEndpoint", lambda e, now: pb.PauseOrResumeEndpointRequest(endpoint_id=e), id="Pause"),
    pytest.param(
        "PauseOrResumeEndpoint",
        lambda e, now: pb.PauseOrResumeEndpointRequest(endpoint_id=e, resume=True),
        id="Resume",
    ),
    pytest.param(
        "ClearAdaptiveHints", lambda e, now: pb.ClearAdaptiveHintsRequest(endpoint_id=e), id="ClearAdaptiveHints"
    ),
    pytest.param(
        "ResetFailureCount", lambda e, now: pb.ResetFailureCountRequest(endpoint_id=e), id="ResetFailureCount"
    ),
]

STEERING = {"ApplyIntervalHint", "ScheduleOneShotRun", "PauseOrResumeEndpoint", "ClearAdaptiveHints"}
ON_ARCHIVED_JOBS_ENDPOINT = [p for p in ON_DELETED_ENDPOINT if p.values[0] in STEERING]


@pytest.mark.parametrize(("rpc", "build"), ON_DELETED_ENDPOINT)
def test_changing_a_deleted_endpoint_fails_precondition(harness, ctx, rpc, build):
    harness.a.DeleteEndpoint(pb.DeleteEndpointRequest(endpoint_id=ctx.endpoint_id))

    with pytest.raises(grpc.RpcError) as raised:
        getattr(harness.a, rpc)(build(ctx.endpoint_id, harness.clock.now()))

    assert status_of(raised.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=ctx.job_id)).endpoints == []


@pytest.mark.parametrize(("rpc", "build"), ON_ARCHIVED_JOBS_ENDPOINT)
def test_steering_an_endpoint_of_an_archived_job_fails_precondition(harness, ctx, rpc, build):
    harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=ctx.job_id))
    before = harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=ctx.job_id))

    with pytest.raises(grpc.RpcError) as raised:
        getattr(harness.a, rpc)(build(ctx.endpoint_id, harness.clock.now()))

    assert status_of(raised.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=ctx.job_id)) == before


def test_updating_an_archived_job_fails_precondition(harness, ctx):
    harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=ctx.job_id))

    with pytest.raises(grpc.RpcError) as raised:
        harness.a.UpdateJob(pb.UpdateJobRequest(job_id=ctx.job_id, name="revived"))

    assert status_of(raised.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert harness.a.GetJob(pb.GetJobRequest(job_id=ctx.job_id)).job.name == "Validation"


def test_adding_an_endpoint_to_an_archived_job_fails_precondition(harness, ctx):
    harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=ctx.job_id))

    with pytest.raises(grpc.RpcError) as raised:
        harness.a.AddEndpointToJob(add(ctx, name="late"))

    assert status_of(raised.value) == grpc.StatusCode.FAILED_PRECONDITION
    names = [e.name for e in harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=ctx.job_id)).endpoints]
    assert names == ["health"]


NUL_CASES = [
    ("CreateJob", lambda h, ids: pb.CreateJobRequest(name="bad\x00name"), "name"),
    ("CreateJob", lambda h, ids: pb.CreateJobRequest(name="ok", description="a\x00b"), "description"),
    (
        "AddEndpointToJob",
        lambda h, ids: pb.AddEndpointToJobRequest(
            job_id=ids["job"], name="n", url="https://x.example.com/\x00", baseline=pb.Baseline(interval_ms=60_000)
        ),
        "url",
    ),
    (
        "AddEndpointToJob",
        lambda h, ids: pb.AddEndpointToJobRequest(
            job_id=ids["job"],
            name="n",
            url="https://x.example.com/",
            body="\x00",
            baseline=pb.Baseline(interval_ms=60_000),
        ),
        "body",
    ),
    ("UpdateJob", lambda h, ids: pb.UpdateJobRequest(job_id=ids["job"], reason="\x00"), "reason"),
]


@pytest.mark.parametrize(("rpc", "build", "field"), NUL_CASES, ids=[f"{c[0]}-{c[2]}" for c in NUL_CASES])
def test_nul_characters_are_refused_with_the_field_named(harness, rpc, build, field):
    ids = {"job": harness.a.CreateJob(pb.CreateJobRequest(name="nul")).job_id}
    with pytest.raises(grpc.RpcError) as refused:
        getattr(harness.a, rpc)(build(harness, ids))
    assert status_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(refused.value)


def test_run_filters_and_page_tokens_with_nul_never_reach_the_database(harness):
    assert harness.a.ListRuns(pb.ListRunsRequest(job_id="job_\x00")).total == 0
    assert harness.a.ListRuns(pb.ListRunsRequest(endpoint_id="\x00")).total == 0
    import base64
    import json

    token = base64.urlsafe_b64encode(json.dumps(["2026-01-05T10:00:00+00:00", "job_\x00"]).encode()).decode()
    with pytest.raises(grpc.RpcError) as refused:
        harness.a.ListJobs(pb.ListJobsRequest(page_token=token))
    assert status_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in violations(refused.value)
