"""Tenant isolation: tenant globex (harness.b) can neither see nor change anything of tenant acme (harness.a).

Another tenant's objects must look exactly like unknown ones (NOT_FOUND), and a refused call must change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import status_of, ts


@dataclass(frozen=True)
class World:
    job_id: str
    endpoint_id: str
    run_id: str
    b_job_id: str
    b_endpoint_id: str
    b_run_id: str


def new_job(client, name: str) -> str:
    return client.CreateJob(pb.CreateJobRequest(name=name, description=f"{name} monitors")).job_id


def new_endpoint(client, job_id: str, interval_ms: int) -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name="health", url="https://example.com/health", baseline=pb.Baseline(interval_ms=interval_ms)
    )
    return client.AddEndpointToJob(request).endpoint_id


@pytest.fixture
def world(harness) -> World:
    """acme has a job with a 60 s endpoint that failed once at 10:01; globex has its own job, endpoint and run."""
    job_id = new_job(harness.a, "acme job")
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=60_000)
    b_job_id = new_job(harness.b, "globex job")
    b_endpoint_id = new_endpoint(harness.b, b_job_id, interval_ms=90_000)
    run_id = harness.fire(endpoint_id, status="FAILURE", http_status=500, error_message="boom")  # 10:01:00
    b_run_id = harness.fire(b_endpoint_id)  # 10:01:30
    return World(job_id, endpoint_id, run_id, b_job_id, b_endpoint_id, b_run_id)


def outcome(call, request):
    """(response, None) on success, (None, status code) on failure: for calls that may either refuse or filter."""
    try:
        return call(request), None
    except grpc.RpcError as err:
        return None, status_of(err)


def acme_state(harness, w: World) -> list:
    """Everything acme can observe about its objects."""
    a = harness.a
    return [
        a.GetJob(pb.GetJobRequest(job_id=w.job_id)),
        a.ListJobs(pb.ListJobsRequest()),
        a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=w.job_id)),
        a.ListRuns(pb.ListRunsRequest()),
        a.GetRunDetails(pb.GetRunDetailsRequest(run_id=w.run_id)),
        a.SummarizeEndpointHealth(pb.SummarizeEndpointHealthRequest(endpoint_id=w.endpoint_id)),
        harness.audit("acme"),
    ]


FOREIGN_ID_CALLS = [
    pytest.param("GetJob", lambda w, now: pb.GetJobRequest(job_id=w.job_id), id="GetJob"),
    pytest.param(
        "UpdateJob", lambda w, now: pb.UpdateJobRequest(job_id=w.job_id, name="hijacked", reason="x"), id="UpdateJob"
    ),
    pytest.param("ArchiveJob", lambda w, now: pb.ArchiveJobRequest(job_id=w.job_id, reason="x"), id="ArchiveJob"),
    pytest.param(
        "AddEndpointToJob",
        lambda w, now: pb.AddEndpointToJobRequest(
            job_id=w.job_id, name="intruder", url="https://evil.example.com/", baseline=pb.Baseline(interval_ms=60_000)
        ),
        id="AddEndpointToJob",
    ),
    pytest.param(
        "UpdateEndpointConfig",
        lambda w, now: pb.UpdateEndpointConfigRequest(
            endpoint_id=w.endpoint_id, name="hijacked", url="https://evil.example.com/", reason="x"
        ),
        id="UpdateEndpointConfig",
    ),
    pytest.param(
        "DeleteEndpoint", lambda w, now: pb.DeleteEndpointRequest(endpoint_id=w.endpoint_id), id="DeleteEndpoint"
    ),
    pytest.param("ListJobEndpoints", lambda w, now: pb.ListJobEndpointsRequest(job_id=w.job_id), id="ListJobEndpoints"),
    pytest.param(
        "ApplyIntervalHint",
        lambda w, now: pb.ApplyIntervalHintRequest(endpoint_id=w.endpoint_id, interval_ms=5_000, reason="x"),
        id="ApplyIntervalHint",
    ),
    pytest.param(
        "ScheduleOneShotRun",
        lambda w, now: pb.ScheduleOneShotRunRequest(endpoint_id=w.endpoint_id, run_at=ts(now), reason="x"),
        id="ScheduleOneShotRun",
    ),
    pytest.param(
        "PauseOrResumeEndpoint",
        lambda w, now: pb.PauseOrResumeEndpointRequest(endpoint_id=w.endpoint_id, reason="x"),
        id="PauseOrResumeEndpoint-pause",
    ),
    pytest.param(
        "PauseOrResumeEndpoint",
        lambda w, now: pb.PauseOrResumeEndpointRequest(endpoint_id=w.endpoint_id, resume=True),
        id="PauseOrResumeEndpoint-resume",
    ),
    pytest.param(
        "ClearAdaptiveHints",
        lambda w, now: pb.ClearAdaptiveHintsRequest(endpoint_id=w.endpoint_id, reason="x"),
        id="ClearAdaptiveHints",
    ),
    pytest.param(
        "ResetFailureCount",
        lambda w, now: pb.ResetFailureCountRequest(endpoint_id=w.endpoint_id, reason="x"),
        id="ResetFailureCount",
    ),
    pytest.param("GetRunDetails", lambda w, now: pb.GetRunDetailsRequest(run_id=w.run_id), id="GetRunDetails"),
    pytest.param(
        "SummarizeEndpointHealth",
        lambda w, now: pb.SummarizeEndpointHealthRequest(endpoint_id=w.endpoint_id),
        id="SummarizeEndpointHealth",
    ),
]


@pytest.mark.parametrize(("rpc", "build"), FOREIGN_ID_CALLS)
def test_another_tenants_id_is_not_found_and_nothing_changes(harness, world, rpc, build):
    before = acme_state(harness, world)

    with pytest.raises(grpc.RpcError) as raised:
        getattr(harness.b, rpc)(build(world, harness.clock.now()))

    assert status_of(raised.value) == grpc.StatusCode.NOT_FOUND
    assert acme_state(harness, world) == before


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda w: pb.ListRunsRequest(job_id=w.job_id), id="by-job"),
        pytest.param(lambda w: pb.ListRunsRequest(endpoint_id=w.endpoint_id), id="by-endpoint"),
        pytest.param(lambda w: pb.ListRunsRequest(job_id=w.b_job_id, endpoint_id=w.endpoint_id), id="mixed"),
    ],
)
def test_list_runs_filtered_by_another_tenants_ids_shows_nothing(harness, world, build):
    response, code = outcome(harness.b.ListRuns, build(world))

    assert code in (None, grpc.StatusCode.NOT_FOUND)
    if response is not None:
        assert list(response.runs) == []
        assert response.total == 0


def test_each_tenant_lists_only_its_own_jobs(harness, world):
    assert [j.job_id for j in harness.b.ListJobs(pb.ListJobsRequest()).jobs] == [world.b_job_id]
    assert [j.job_id for j in harness.a.ListJobs(pb.ListJobsRequest()).jobs] == [world.job_id]
    for status in (pb.JOB_STATUS_ACTIVE, pb.JOB_STATUS_ARCHIVED):
        listed = harness.b.ListJobs(pb.ListJobsRequest(status=status)).jobs
        assert world.job_id not in [j.job_id for j in listed]


def test_each_tenant_lists_only_its_own_runs(harness, world):
    for status in (pb.RUN_STATUS_FILTER_UNSPECIFIED, pb.RUN_STATUS_FILTER_SUCCESS, pb.RUN_STATUS_FILTER_FAILURE):
        b_runs = harness.b.ListRuns(pb.ListRunsRequest(status=status))
        assert world.run_id not in [r.run_id for r in b_runs.runs]
    everything_b = harness.b.ListRuns(pb.ListRunsRequest())
    assert ([r.run_id for r in everything_b.runs], everything_b.total) == ([world.b_run_id], 1)
    everything_a = harness.a.ListRuns(pb.ListRunsRequest())
    assert ([r.run_id for r in everything_a.runs], everything_a.total) == ([world.run_id], 1)


def test_a_new_job_of_one_tenant_does_not_appear_for_the_other(harness, world):
    before = acme_state(harness, world)

    harness.b.CreateJob(pb.CreateJobRequest(name="globex second job"))

    assert acme_state(harness, world) == before
    assert len(harness.b.ListJobs(pb.ListJobsRequest()).jobs) == 2


def test_own_objects_still_work_for_the_other_tenant(harness, world):
    """The refusals above are about ownership: globex can use its own ids through the same calls."""
    assert harness.b.GetJob(pb.GetJobRequest(job_id=world.b_job_id)).job.name == "globex job"
    assert harness.b.GetRunDetails(pb.GetRunDetailsRequest(run_id=world.b_run_id)).run.status == pb.RUN_STATUS_SUCCESS
    with pytest.raises(grpc.RpcError) as raised:
        harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=world.b_run_id))
    assert status_of(raised.value) == grpc.StatusCode.NOT_FOUND
