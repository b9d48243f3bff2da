"""The internal LeaseService: service-credential auth, claims under lease, batched results, fencing, LOST runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import grpc
import pytest

from pacer.control.v1 import control_service_pb2 as pb
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer.internal.v1 import lease_service_pb2_grpc as lease_grpc
from tests.support.harness import LEASE_GRACE_MS, SERVICE_TOKEN, Harness, dt, status_of, ts, violations


class Leases:
    """LeaseService client carrying a credential."""

    def __init__(self, harness: Harness, token: str | None = SERVICE_TOKEN, session_id: str = "ss_test") -> None:
        self._channel = grpc.insecure_channel(harness.address)
        self._stub = lease_grpc.LeaseServiceStub(self._channel)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self.session_id = session_id
        if token == SERVICE_TOKEN:
            self.heartbeat()

    def heartbeat(self, *, closing: bool = False) -> lease_pb.HeartbeatResponse:
        request = lease_pb.HeartbeatRequest(scheduler_id="test", session_id=self.session_id, closing=closing)
        return self._stub.Heartbeat(request, metadata=self._metadata, timeout=10)

    def claim(self, horizon_ms: int = 0, limit: int = 100, claim_id: str = "") -> lease_pb.ClaimDueRunsResponse:
        request = lease_pb.ClaimDueRunsRequest(
            scheduler_id="test", horizon_ms=horizon_ms, limit=limit, session_id=self.session_id, claim_id=claim_id
        )
        return self._stub.ClaimDueRuns(request, metadata=self._metadata, timeout=10)

    def report(
        self,
        *results: lease_pb.RunResult,
        held: list[str] | None = None,
        vanished: list[str] | None = None,
        released: list[str] | None = None,
    ) -> lease_pb.ReportResultsResponse:
        request = lease_pb.ReportResultsRequest(
            results=results, held_run_ids=held, vanished_run_ids=vanished, released_run_ids=released
        )
        return self._stub.ReportResults(request, metadata=self._metadata, timeout=10)

    def extend(self, run_ids: list[str], extend_ms: int) -> lease_pb.ExtendLeasesResponse:
        request = lease_pb.ExtendLeasesRequest(run_ids=run_ids, extend_ms=extend_ms)
        return self._stub.ExtendLeases(request, metadata=self._metadata, timeout=10)


def endpoint(harness: Harness, interval_ms: int = 60_000, timeout_ms: int = 5_000) -> str:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="health")).job_id
    request = pb.AddEndpointToJobRequest(
        job_id=job,
        name="api",
        url="https://api.example.com/health",
        headers={"Authorization": "Bearer target-secret"},
        baseline=pb.Baseline(interval_ms=interval_ms),
        timeout_ms=timeout_ms,
    )
    return harness.a.AddEndpointToJob(request).endpoint_id


def result(item: lease_pb.WorkItem, status: int = pb.RUN_STATUS_SUCCESS, **fields: object) -> lease_pb.RunResult:
    return lease_pb.RunResult(
        run_id=item.run_id,
        status=status,
        started_at=item.scheduled_for,
        finished_at=ts(dt(item.scheduled_for) + timedelta(milliseconds=30)),
        duration_ms=30,
        http_status=200 if status == pb.RUN_STATUS_SUCCESS else 500,
        **fields,
    )


def next_run(harness: Harness, endpoint_id: str, job_client=None) -> pb.EndpointSummary:
    client = job_client or harness.a
    jobs = client.ListJobs(pb.ListJobsRequest()).jobs
    for job in jobs:
        for summary in client.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job.job_id)).endpoints:
            if summary.endpoint_id == endpoint_id:
                return summary
    raise AssertionError(f"{endpoint_id} not listed")


def test_tenant_keys_cannot_call_internal_rpcs(harness: Harness) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        Leases(harness, token=harness.a.key).claim()
    assert status_of(refused.value) == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("token", [None, "svc_wrong"], ids=["missing", "wrong"])
def test_internal_rpcs_need_the_service_credential(harness: Harness, token: str | None) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        Leases(harness, token=token).claim()
    assert status_of(refused.value) == grpc.StatusCode.UNAUTHENTICATED


def test_the_service_credential_cannot_call_the_public_api(harness: Harness) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        harness.client(SERVICE_TOKEN).ListJobs(pb.ListJobsRequest())
    assert status_of(refused.value) == grpc.StatusCode.UNAUTHENTICATED


def test_claim_hands_out_due_runs_with_what_the_executor_needs(harness: Harness) -> None:
    endpoint_id = endpoint(harness)
    leases = Leases(harness)
    assert list(leases.claim(horizon_ms=1_000).items) == []  # due in 60 s, outside the horizon
    harness.clock.advance(59.5)
    (item,) = leases.claim(horizon_ms=1_000).items
    assert item.endpoint_id == endpoint_id
    assert dt(item.scheduled_for) == harness.clock.now() + timedelta(seconds=0.5)
    assert dt(item.lease_expires_at) == dt(item.scheduled_for) + timedelta(milliseconds=5_000 + LEASE_GRACE_MS)
    assert (item.url, item.method, item.timeout_ms) == ("https://api.example.com/health", "GET", 5_000)
    assert item.headers["Authorization"] == "Bearer target-secret"
    assert list(leases.claim(horizon_ms=60_000).items) == []  # leased: never handed out twice
    runs = harness.a.ListRuns(pb.ListRunsRequest(endpoint_id=endpoint_id)).runs
    assert [(r.run_id, r.status) for r in runs] == [(item.run_id, pb.RUN_STATUS_RUNNING)]


def test_a_reported_result_settles_the_run_and_replans(harness: Harness) -> None:
    endpoint_id = endpoint(harness)
    leases = Leases(harness)
    harness.clock.advance(60)
    (item,) = leases.claim().items
    answer = leases.report(result(item, response_body="ok"))
    assert (answer.applied, answer.stale) == (1, 0)
    run = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=item.run_id)).run
    assert (run.status, run.http_status, run.response_body) == (pb.RUN_STATUS_SUCCESS, 200, "ok")
    assert dt(next_run(harness, endpoint_id).next_run_at) == dt(item.scheduled_for) + timedelta(seconds=60)


def test_results_in_one_batch_are_all_applied(harness: Harness) -> None:
    ids = [endpoint(harness) for _ in range(5)]
    leases = Leases(harness)
    harness.clock.advance(60)
    items = leases.claim().items
    assert sorted(i.endpoint_id for i in items) == sorted(ids)
    answer = leases.report(*(result(i, status=pb.RUN_STATUS_FAILURE) for i in items))
    assert answer.applied == 5
    assert all(next_run(harness, e).failure_count == 1 for e in ids)


def test_a_lost_lease_is_reaped_and_its_late_result_cannot_move_the_schedule(harness: Harness) -> None:
    endpoint_id = endpoint(harness, timeout_ms=1_000)
    leases = Leases(harness)
    harness.clock.advance(60)
    (item,) = leases.claim().items
    harness.clock.advance(seconds=(1_000 + LEASE_GRACE_MS) / 1000 + 1)
    (reaped,) = harness.pipeline.reap_expired(harness.clock.now(), 100)
    assert (reaped.run_id, reaped.endpoint_id, reaped.tenant_id) == (item.run_id, endpoint_id, harness.tenants["acme"])
    lost = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=item.run_id)).run
    assert lost.status == pb.RUN_STATUS_LOST
    after_reap = next_run(harness, endpoint_id)
    assert after_reap.failure_count == 1
    assert dt(after_reap.next_run_at) == dt(item.scheduled_for) + timedelta(seconds=120)  # one failure: 2x backoff

    answer = leases.report(result(item, response_body="ok"))
    assert (answer.applied, answer.stale) == (0, 1)
    late = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=item.run_id)).run
    # The real outcome replaces the unknown one, marked as late; the schedule stays where the reaper put it.
    assert (late.status, late.http_status, late.response_body) == (pb.RUN_STATUS_SUCCESS, 200, "ok")
    assert "reported after the run had been settled as LOST" in late.error_message
    assert next_run(harness, endpoint_id) == after_reap


def test_an_extended_lease_is_not_reaped(harness: Harness) -> None:
    endpoint(harness, timeout_ms=1_000)
    leases = Leases(harness)
    harness.clock.advance(60)
    (item,) = leases.claim().items
    assert list(leases.extend([item.run_id, "run_unknown"], extend_ms=120_000).extended_run_ids) == [item.run_id]
    harness.clock.advance(seconds=(1_000 + LEASE_GRACE_MS) / 1000 + 1)
    assert harness.pipeline.reap_expired(harness.clock.now(), 100) == []


def test_a_tightening_hint_is_claimable_at_once(harness: Harness) -> None:
    endpoint_id = endpoint(harness)
    leases = Leases(harness)
    harness.clock.advance(60)
    leases.report(result(leases.claim().items[0]))
    harness.clock.advance(10)
    assert list(leases.claim().items) == []
    harness.a.ApplyIntervalHint(pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=5_000))
    (item,) = leases.claim().items
    assert item.endpoint_id == endpoint_id
    assert dt(item.scheduled_for) == harness.clock.now()


@pytest.mark.parametrize(
    ("horizon_ms", "limit", "field"),
    [(-1, 10, "horizon_ms"), (60_001, 10, "horizon_ms"), (0, -1, "limit"), (0, 5_001, "limit")],
)
def test_bad_claims_are_refused_with_the_field(harness: Harness, horizon_ms: int, limit: int, field: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        Leases(harness).claim(horizon_ms=horizon_ms, limit=limit)
    assert status_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(refused.value)


def test_a_result_with_a_non_final_status_is_refused(harness: Harness) -> None:
    endpoint(harness)
    leases = Leases(harness)
    harness.clock.advance(60)
    (item,) = leases.claim().items
    with pytest.raises(grpc.RpcError) as refused:
        leases.report(result(item, status=pb.RUN_STATUS_RUNNING))
    assert "results[0].status" in violations(refused.value)


def test_concurrent_claimers_never_get_the_same_run(harness: Harness) -> None:
    for _ in range(40):
        endpoint(harness)
    harness.clock.advance(60)
    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(pool.map(lambda _: [i.run_id for i in Leases(harness).claim(limit=15).items], range(4)))
    claimed = [run_id for batch in batches for run_id in batch]
    assert len(claimed) == 40
    assert len(set(claimed)) == 40


def test_a_claim_is_capped_so_it_fits_one_message(harness: Harness) -> None:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="bulky")).job_id
    for n in range(20):
        harness.a.AddEndpointToJob(
            pb.AddEndpointToJobRequest(
                job_id=job,
                name=f"bulky-{n}",
                url="https://api.example.com/ingest",
                method="POST",
                body="x" * 250_000,
                baseline=pb.Baseline(interval_ms=60_000),
            )
        )
    harness.clock.advance(60)
    leases = Leases(harness)
    batches = [list(leases.claim(limit=100).items) for _ in range(4)]
    assert 0 < len(batches[0]) < 20
    assert all(sum(len(item.body) for item in batch) <= 3 * 1024 * 1024 for batch in batches)
    assert len({item.run_id for batch in batches for item in batch}) == 20


def test_endpoints_can_be_created_while_runs_are_claimed_and_reported(harness: Harness) -> None:
    """Creating endpoints locks the tenant and job rows; claims insert runs that reference them. Neither may
    deadlock the other (PostgreSQL reports a deadlock as an error, which would surface here)."""
    job = harness.a.CreateJob(pb.CreateJobRequest(name="busy")).job_id
    harness.clock.advance(3600)
    leases = Leases(harness)

    def create(n: int) -> str:
        request = pb.AddEndpointToJobRequest(
            job_id=job, name=f"ep-{n}", url="https://api.example.com/", baseline=pb.Baseline(interval_ms=1000)
        )
        return str(harness.a.AddEndpointToJob(request).endpoint_id)

    def churn(_: int) -> int:
        done = 0
        for _ in range(15):
            items = leases.claim(horizon_ms=60_000, limit=50).items
            if items:
                leases.report(*(result(item) for item in items))
            done += len(items)
        return done

    with ThreadPoolExecutor(max_workers=4) as pool:
        created = pool.map(create, range(60))
        churned = pool.map(churn, range(2))
        assert len(set(created)) == 60
        assert sum(churned) > 0
