"""Input an attacker would send: every one gets a bounded, clear status naming the field, never UNKNOWN, INTERNAL or
Python's own words, and a caller without a key learns nothing but that it has none."""

from __future__ import annotations

import base64
from datetime import timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from pacer.control.v1 import control_service_pb2 as pb
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_control.models import Endpoint
from pacer_control.pipeline import RunResult
from pacer_control.sealing import EndpointSecrets
from tests.support.harness import SERVICE_TOKEN, Harness, status_of, ts, violations

URL = "https://shop.example.com/health"
INTERVAL = pb.Baseline(interval_ms=60_000)
PYTHON_WORDS = ("Traceback", "<class", "Error:", "Unexpected", "sqlalchemy", "SELECT")


def endpoint(harness: Harness, **fields: object) -> str:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="hostile")).job_id
    fields.setdefault("url", URL)
    fields.setdefault("baseline", INTERVAL)
    return str(harness.a.AddEndpointToJob(pb.AddEndpointToJobRequest(job_id=job, name="probe", **fields)).endpoint_id)


def refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request)
    error = raised.value
    text = error.details() or ""  # type: ignore[attr-defined]
    assert not any(word in text for word in PYTHON_WORDS), text
    assert len(text) <= 1000
    return error


def raw_call(harness: Harness, method: str, payload: bytes, token: str | None) -> grpc.RpcError:
    """Send `payload` as the request bytes of `method`, as a client that does not speak protobuf would."""
    call = harness._channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with pytest.raises(grpc.RpcError) as raised:
        call(payload, metadata=metadata, timeout=30)
    text = raised.value.details() or ""  # type: ignore[attr-defined]
    assert not any(word in text for word in PYTHON_WORDS), text
    return raised.value


def stamp(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


OUT_OF_RANGE = [
    pytest.param(2**40, 0, id="seconds-2^40"),
    pytest.param(2**63 - 1, 0, id="seconds-max-int64"),
    pytest.param(-(2**63), 0, id="seconds-min-int64"),
    pytest.param(0, -1, id="nanos-negative"),
    pytest.param(0, 2_000_000_000, id="nanos-2e9"),
]


@pytest.mark.parametrize(("seconds", "nanos"), OUT_OF_RANGE)
def test_out_of_range_times_name_the_field(harness: Harness, seconds: int, nanos: int) -> None:
    target = endpoint(harness)
    shot = pb.ScheduleOneShotRunRequest(endpoint_id=target, run_at=stamp(seconds, nanos))
    error = refused(harness.a.ScheduleOneShotRun, shot)
    assert status_of(error) == grpc.StatusCode.INVALID_ARGUMENT
    assert "run_at" in violations(error)
    pause = pb.PauseOrResumeEndpointRequest(endpoint_id=target, pause_until=stamp(seconds, nanos))
    error = refused(harness.a.PauseOrResumeEndpoint, pause)
    assert status_of(error) == grpc.StatusCode.INVALID_ARGUMENT
    assert "pause_until" in violations(error)


def test_a_caller_without_a_key_hears_only_that(harness: Harness) -> None:
    shot = pb.ScheduleOneShotRunRequest(endpoint_id="ep_x", run_at=stamp(2**40))
    assert status_of(refused(harness.client(None).ScheduleOneShotRun, shot)) == grpc.StatusCode.UNAUTHENTICATED
    garbage = raw_call(harness, "/pacer.control.v1.ControlService/CreateJob", bytes.fromhex("0a02fffe"), None)
    assert status_of(garbage) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "payload",
    [bytes.fromhex("0a02fffe"), b"\xff" * 64, b"\x0a\xff\xff\xff\xff\x0f", b"\x08"],
    ids=["invalid-utf8", "garbage", "length-past-the-end", "truncated-varint"],
)
def test_bytes_that_are_no_message_are_invalid_argument(harness: Harness, payload: bytes) -> None:
    error = raw_call(harness, "/pacer.control.v1.ControlService/CreateJob", payload, harness.a.key)
    assert status_of(error) == grpc.StatusCode.INVALID_ARGUMENT
    assert "request" in violations(error)
    internal = raw_call(harness, "/pacer.internal.v1.LeaseService/ReportResults", payload, SERVICE_TOKEN)
    assert status_of(internal) == grpc.StatusCode.INVALID_ARGUMENT
    foreign = raw_call(harness, "/pacer.internal.v1.LeaseService/ReportResults", payload, harness.a.key)
    assert status_of(foreign) == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    "token",
    [
        base64.urlsafe_b64encode(b"[" * 100_000).decode(),
        "not base64 at all!",
        base64.urlsafe_b64encode(b"-99999999999999999.job_00000000000000000000000000").decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "job_x"]').decode(),
        "A" * 5000,
    ],
    ids=["deep-nesting", "not-base64", "time-out-of-range", "old-shape", "long"],
)
def test_a_forged_page_token_is_invalid_argument(harness: Harness, token: str) -> None:
    error = refused(harness.a.ListJobs, pb.ListJobsRequest(page_token=token))
    assert status_of(error) == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(error)) == {"page_token"}


def test_page_tokens_still_page_through_every_job(harness: Harness) -> None:
    made = {harness.a.CreateJob(pb.CreateJobRequest(name=f"job {n}")).job_id for n in range(5)}
    seen, token = [], ""
    while True:
        page = harness.a.ListJobs(pb.ListJobsRequest(page_size=2, page_token=token))
        seen += [job.job_id for job in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(made)


def test_unknown_enum_numbers_are_invalid_argument(harness: Harness) -> None:
    jobs = refused(harness.a.ListJobs, pb.ListJobsRequest(status=99))  # type: ignore[arg-type]
    assert violations(jobs).keys() == {"status"}
    runs = refused(harness.a.ListRuns, pb.ListRunsRequest(status=-5))  # type: ignore[arg-type]
    assert violations(runs).keys() == {"status"}


def test_huge_values_are_never_echoed_whole(harness: Harness) -> None:
    huge = "x" * 1_000_000
    missing = refused(harness.a.GetJob, pb.GetJobRequest(job_id=huge))
    assert status_of(missing) == grpc.StatusCode.NOT_FOUND
    job = harness.a.CreateJob(pb.CreateJobRequest(name="huge")).job_id
    for baseline in (
        pb.Baseline(cron=pb.CronSchedule(expression=huge)),
        pb.Baseline(cron=pb.CronSchedule(expression="0 * * * *", timezone=huge)),
    ):
        request = pb.AddEndpointToJobRequest(job_id=job, name="n", url=URL, baseline=baseline)
        error = refused(harness.a.AddEndpointToJob, request)
        assert status_of(error) == grpc.StatusCode.INVALID_ARGUMENT
        assert all(len(text) <= 300 for text in violations(error).values())


@pytest.mark.parametrize(
    "url",
    ["http://exa mple.com/", "http://a/\r\nX-Inj: 1", "https://example.com:0/", "http://a/\x7f", "http://[::1/"],
    ids=["space", "crlf", "port-0", "del", "broken-ipv6"],
)
def test_urls_that_cannot_be_sent_as_written_are_refused(harness: Harness, url: str) -> None:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="urls")).job_id
    request = pb.AddEndpointToJobRequest(job_id=job, name="n", url=url, baseline=INTERVAL)
    assert violations(refused(harness.a.AddEndpointToJob, request)).keys() == {"url"}
    target = endpoint(harness)
    update = pb.UpdateEndpointConfigRequest(endpoint_id=target, url=url)
    assert violations(refused(harness.a.UpdateEndpointConfig, update)).keys() == {"url"}


FRAMING = [
    "Transfer-Encoding",
    "transfer-encoding",
    "Content-Length",
    "Connection",
    "Keep-Alive",
    "Upgrade",
    "TE",
    "Trailer",
    "Host",
    "Expect",
    "Proxy-Authorization",
    "Proxy-Connection",
]


@pytest.mark.parametrize("name", FRAMING)
def test_headers_that_frame_or_route_the_request_are_refused(harness: Harness, name: str) -> None:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="framing")).job_id
    request = pb.AddEndpointToJobRequest(
        job_id=job, name="n", url=URL, baseline=INTERVAL, headers={name: "chunked", "X-Fine": "1"}
    )
    assert violations(refused(harness.a.AddEndpointToJob, request)).keys() == {f"headers.{name}"}
    update = pb.UpdateEndpointConfigRequest(endpoint_id=endpoint(harness), headers=pb.Headers(entries={name: "x"}))
    assert violations(refused(harness.a.UpdateEndpointConfig, update)).keys() == {f"headers.{name}"}


@pytest.mark.parametrize("value", ["a\x0bb", "a\x7fb", "a\x00b", "line\r\nX-Injected: 1", "\x85"])
def test_header_values_with_control_characters_are_refused(harness: Harness, value: str) -> None:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="values")).job_id
    request = pb.AddEndpointToJobRequest(job_id=job, name="n", url=URL, baseline=INTERVAL, headers={"X-Key": value})
    assert "headers.X-Key" in violations(refused(harness.a.AddEndpointToJob, request))


def test_tabs_and_non_ascii_text_stay_allowed_in_header_values(harness: Harness) -> None:
    endpoint(harness, headers={"X-Note": "a\tb", "X-Name": "Zoë"})


def test_a_url_password_is_shown_masked_and_kept_sealed_at_rest(harness: Harness) -> None:
    secret_url = "https://robot:s3cr3t-pass@shop.example.com/health?x=1"
    target = endpoint(harness, url=secret_url, headers={"X-Api-Key": "key-of-acme"})
    listed = [e for j in harness.a.ListJobs(pb.ListJobsRequest()).jobs for e in _endpoints(harness, j.job_id)]
    shown = next(e for e in listed if e.endpoint_id == target)
    assert shown.url == "https://robot:***@shop.example.com/health?x=1"
    with harness.engine.connect() as connection:
        row = connection.execute(select(Endpoint.url, Endpoint.secrets).where(Endpoint.id == target)).one()
    assert "s3cr3t-pass" not in row.url
    assert "s3cr3t-pass" not in row.secrets
    assert "key-of-acme" not in row.secrets
    assert row.secrets.startswith(f"v1.{harness.catalog.keyring.primary_id}.")
    opened = EndpointSecrets.open(harness.catalog.keyring, target, row.secrets)
    assert opened == EndpointSecrets({"X-Api-Key": "key-of-acme"}, "s3cr3t-pass")
    harness.clock.advance(minutes=2)
    (claimed,) = [c for c in harness.pipeline.claim_due(harness.clock.now(), 0, 100, 30_000) if c.endpoint_id == target]
    assert claimed.url == secret_url
    assert claimed.headers == {"X-Api-Key": "key-of-acme"}


def test_changing_only_the_url_keeps_the_headers_and_the_other_way_round(harness: Harness) -> None:
    target = endpoint(harness, url="https://u:old@shop.example.com/", headers={"X-Api-Key": "k1"})
    harness.a.UpdateEndpointConfig(pb.UpdateEndpointConfigRequest(endpoint_id=target, url="https://u:new@a.example/"))
    harness.a.UpdateEndpointConfig(
        pb.UpdateEndpointConfigRequest(endpoint_id=target, headers=pb.Headers(entries={"X-Api-Key": "k2"}))
    )
    harness.clock.advance(minutes=2)
    (claimed,) = [c for c in harness.pipeline.claim_due(harness.clock.now(), 0, 100, 30_000) if c.endpoint_id == target]
    assert (claimed.url, claimed.headers) == ("https://u:new@a.example/", {"X-Api-Key": "k2"})


def test_a_sealed_value_moved_to_another_endpoint_does_not_open(harness: Harness) -> None:
    first = endpoint(harness, headers={"Authorization": "Bearer of-first"})
    second = endpoint(harness, headers={"X-Other": "1"})
    with harness.engine.begin() as connection:
        sealed = connection.scalar(select(Endpoint.secrets).where(Endpoint.id == first))
        connection.execute(Endpoint.__table__.update().where(Endpoint.id == second).values(secrets=sealed))
    with pytest.raises(ValueError, match="does not open"):
        EndpointSecrets.open(harness.catalog.keyring, second, sealed)


def _endpoints(harness: Harness, job_id: str) -> list[pb.EndpointSummary]:
    return list(harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints)


def test_the_internal_api_refuses_oversized_batches_by_field(harness: Harness) -> None:
    stub = harness._channel.unary_unary(
        "/pacer.internal.v1.LeaseService/ExtendLeases",
        request_serializer=lease_pb.ExtendLeasesRequest.SerializeToString,
        response_deserializer=lease_pb.ExtendLeasesResponse.FromString,
    )
    request = lease_pb.ExtendLeasesRequest(run_ids=[f"run_{n}" for n in range(6000)], extend_ms=5000)
    with pytest.raises(grpc.RpcError) as raised:
        stub(request, metadata=[("authorization", f"Bearer {SERVICE_TOKEN}")], timeout=30)
    assert violations(raised.value).keys() == {"run_ids"}


def test_times_in_the_timestamp_range_still_work(harness: Harness) -> None:
    target = endpoint(harness)
    later = harness.clock.now() + timedelta(minutes=10)
    scheduled = harness.a.ScheduleOneShotRun(pb.ScheduleOneShotRunRequest(endpoint_id=target, run_at=ts(later)))
    assert scheduled.scheduled_for == ts(later)


def test_a_stored_cron_that_newer_rules_refuse_stops_its_endpoint_and_nothing_else(harness: Harness) -> None:
    hourly = pb.Baseline(cron=pb.CronSchedule(expression="0 * * * *"))
    old = endpoint(harness, baseline=hourly)
    other = endpoint(harness, baseline=hourly)
    harness.clock.advance(hours=1)
    claimed = {c.endpoint_id: c for c in harness.pipeline.claim_due(harness.clock.now(), 0, 100, 30_000)}
    assert set(claimed) >= {old, other}
    with harness.engine.begin() as connection:
        # What an older release accepted and this one refuses (a range that runs backwards).
        connection.execute(Endpoint.__table__.update().where(Endpoint.id == old).values(cron_expression="59-0 * * * *"))
    results = [
        RunResult(c.run_id, "SUCCESS", c.scheduled_for, c.scheduled_for + timedelta(seconds=1))
        for c in claimed.values()
    ]
    recorded = harness.pipeline.record_results(results, harness.clock.now())
    assert recorded.applied == len(results)
    listed = {e.endpoint_id: e for e in _endpoints(harness, harness.a.ListJobs(pb.ListJobsRequest()).jobs[0].job_id)}
    listed |= {e.endpoint_id: e for e in _endpoints(harness, harness.a.ListJobs(pb.ListJobsRequest()).jobs[1].job_id)}
    assert not listed[old].HasField("next_run_at")
    assert listed[other].HasField("next_run_at")
