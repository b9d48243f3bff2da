"""QuotaGuard: each tenant limit refuses the request that crosses it and creates nothing; the rate limit recovers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pacer.control.v1 import control_service_pb2 as pb
from pacer_control.quotas import EMBEDDED, PRODUCTION, Quota, default_quota
from pacer_control.settings import ControlSettings
from tests.support.harness import UNLIMITED, Harness, dt, status_of, ts, violations

HarnessFactory = Callable[[Quota], Harness]


@pytest.fixture
def with_quota(database_url: str) -> Iterator[HarnessFactory]:
    started: list[Harness] = []

    def start(quota: Quota) -> Harness:
        backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
        started.append(Harness(database_url, backend, quotas=quota))
        return started[-1]

    yield start
    for harness in started:
        harness.close()


def quota_failure(error: grpc.RpcError) -> tuple[list[str], float | None]:
    """Subjects of the QuotaFailure detail and the RetryInfo delay (None when absent)."""
    subjects, retry = [], None
    for detail in rpc_status.from_call(error).details:
        failure, info = error_details_pb2.QuotaFailure(), error_details_pb2.RetryInfo()
        if detail.Unpack(failure):
            subjects += [v.subject for v in failure.violations]
        elif detail.Unpack(info):
            retry = info.retry_delay.ToMilliseconds() / 1000
    return subjects, retry


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert status_of(caught.value) == grpc.StatusCode.RESOURCE_EXHAUSTED
    return caught.value


def new_job(harness: Harness, name: str = "quota") -> str:
    return str(harness.a.CreateJob(pb.CreateJobRequest(name=name)).job_id)


def endpoint_request(job_id: str, **fields: object) -> pb.AddEndpointToJobRequest:
    fields.setdefault("baseline", pb.Baseline(interval_ms=60_000))
    return pb.AddEndpointToJobRequest(job_id=job_id, name="check", url="https://status.example.com/", **fields)


def test_the_job_limit_refuses_the_job_that_crosses_it(with_quota: HarnessFactory) -> None:
    harness = with_quota(Quota(max_jobs=2, rate_per_s=1e9, burst=10**9))
    first, _ = new_job(harness, "one"), new_job(harness, "two")
    error = refused(lambda: new_job(harness, "three"))
    assert quota_failure(error)[0] == [f"tenant:{harness.tenants['acme']}/max_jobs"]
    assert [j.name for j in harness.a.ListJobs(pb.ListJobsRequest()).jobs] == ["two", "one"]
    assert [r["action"] for r in harness.audit()].count("CreateJob") == 2
    harness.b.CreateJob(pb.CreateJobRequest(name="other tenant"))  # its own count
    harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=first))
    assert new_job(harness, "three")  # archived jobs do not count


def test_the_endpoint_limit_refuses_the_endpoint_that_crosses_it(with_quota: HarnessFactory) -> None:
    harness = with_quota(Quota(max_endpoints=2, rate_per_s=1e9, burst=10**9))
    job_id = new_job(harness)
    for _ in range(2):
        harness.a.AddEndpointToJob(endpoint_request(job_id))
    error = refused(lambda: harness.a.AddEndpointToJob(endpoint_request(job_id)))
    assert quota_failure(error)[0] == [f"tenant:{harness.tenants['acme']}/max_endpoints"]
    assert len(harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints) == 2
    assert [r["action"] for r in harness.audit()].count("AddEndpointToJob") == 2


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"baseline": pb.Baseline(interval_ms=30_000)}, "baseline.interval_ms"),
        ({"clamp": pb.Clamp(min_interval_ms=5_000)}, "clamp.min_interval_ms"),
        ({"baseline": pb.Baseline(cron=pb.CronSchedule(expression="*/10 * * * * *"))}, "baseline.cron"),
    ],
    ids=["baseline", "clamp", "cron"],
)
def test_the_tenant_floor_refuses_shorter_intervals(
    with_quota: HarnessFactory, request_fields: dict[str, object], field: str
) -> None:
    harness = with_quota(Quota(min_interval_ms=60_000, rate_per_s=1e9, burst=10**9))
    job_id = new_job(harness)
    error = refused(lambda: harness.a.AddEndpointToJob(endpoint_request(job_id, **request_fields)))
    assert field in error.details()
    assert quota_failure(error)[0] == [f"tenant:{harness.tenants['acme']}/min_interval_ms"]
    assert harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints == []


def test_the_tenant_floor_holds_for_hints_and_the_service_floor_stays_a_validation_error(
    with_quota: HarnessFactory,
) -> None:
    harness = with_quota(Quota(min_interval_ms=60_000, rate_per_s=1e9, burst=10**9))
    job_id = new_job(harness)
    hourly = pb.Baseline(cron=pb.CronSchedule(expression="0 * * * *"))
    endpoint_id = harness.a.AddEndpointToJob(endpoint_request(job_id, baseline=hourly)).endpoint_id
    refused(
        lambda: harness.a.ApplyIntervalHint(pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=10_000))
    )
    with pytest.raises(grpc.RpcError) as invalid:
        harness.a.ApplyIntervalHint(pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=500))
    assert status_of(invalid.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert "interval_ms" in violations(invalid.value)
    ok = harness.a.ApplyIntervalHint(pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=60_000))
    assert ok.HasField("hint_expires_at")


def test_the_rate_limit_refuses_with_retry_info_and_recovers(with_quota: HarnessFactory) -> None:
    harness = with_quota(Quota(rate_per_s=2, burst=3))
    for _ in range(3):
        harness.a.ListJobs(pb.ListJobsRequest())
    error = refused(lambda: harness.a.ListJobs(pb.ListJobsRequest()))
    subjects, retry = quota_failure(error)
    assert subjects == [f"tenant:{harness.tenants['acme']}/rate"]
    assert retry == pytest.approx(0.5)
    assert harness.b.ListJobs(pb.ListJobsRequest()).jobs == []  # another tenant has its own bucket
    harness.clock.advance(0.5)
    assert harness.a.ListJobs(pb.ListJobsRequest()).jobs == []
    refused(lambda: harness.a.ListJobs(pb.ListJobsRequest()))


def test_a_tenants_own_quota_overrides_the_default(with_quota: HarnessFactory) -> None:
    harness = with_quota(Quota(max_jobs=100, rate_per_s=1e9, burst=10**9))
    new_job(harness)
    harness.catalog.set_tenant_quota(harness.tenants["acme"], {"max_jobs": 1}, harness.clock.now())
    harness.clock.advance(6)  # quotas are cached for a few seconds
    refused(lambda: new_job(harness))
    harness.b.CreateJob(pb.CreateJobRequest(name="unaffected"))
    harness.catalog.set_tenant_quota(harness.tenants["acme"], {"max_jobs": None}, harness.clock.now())
    harness.clock.advance(6)
    assert new_job(harness)


def test_one_shots_are_held_to_the_tenant_floor(with_quota: HarnessFactory) -> None:
    harness = with_quota(Quota(min_interval_ms=60_000, rate_per_s=1e9, burst=10**9))
    job_id = new_job(harness)
    endpoint_id = harness.a.AddEndpointToJob(endpoint_request(job_id, baseline=pb.Baseline(interval_ms=3_600_000)))
    started = harness.clock.now()
    harness.fire(endpoint_id.endpoint_id)
    asked = pb.ScheduleOneShotRunRequest(endpoint_id=endpoint_id.endpoint_id, run_at=ts(harness.clock.now()))
    scheduled = dt(harness.a.ScheduleOneShotRun(asked).scheduled_for)
    listed = harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints[0]
    last_start = dt(listed.last_run_at)
    assert last_start is not None
    assert last_start >= started
    assert scheduled == last_start + timedelta(milliseconds=60_000)
    assert dt(listed.next_run_at) == scheduled


def test_a_shared_installation_gets_production_limits_and_the_embedded_profile_generous_ones() -> None:
    production = default_quota(ControlSettings(bootstrap_dev=False))
    assert production == PRODUCTION
    assert production.max_endpoints * 1000 / production.min_interval_ms <= 100  # runs/s one tenant can ask for
    assert default_quota(ControlSettings(bootstrap_dev=True)) == EMBEDDED
    tuned = default_quota(ControlSettings(bootstrap_dev=False, quota_max_endpoints=5000, quota_min_interval_ms=0))
    assert (tuned.max_endpoints, tuned.min_interval_ms, tuned.rate_per_s) == (5000, 0, PRODUCTION.rate_per_s)


def test_concurrent_additions_never_pass_the_endpoint_limit(with_quota: HarnessFactory) -> None:
    # Eight clients at once, on two jobs: the limit holds whatever order their transactions interleave in.
    harness = with_quota(replace(UNLIMITED, max_endpoints=7))
    jobs = [new_job(harness, "first"), new_job(harness, "second")]

    def add(n: int) -> grpc.StatusCode:
        try:
            harness.a.AddEndpointToJob(endpoint_request(jobs[n % 2]))
        except grpc.RpcError as error:
            return status_of(error)
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(add, range(24)))

    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    made = codes.count(grpc.StatusCode.OK)
    listed = sum(len(harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=j)).endpoints) for j in jobs)
    assert made == listed == 7
