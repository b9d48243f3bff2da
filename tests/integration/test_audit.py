"""Audit trail: every mutating action leaves a record with its action name, target, reason and time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import ts


@dataclass(frozen=True)
class Ctx:
    job_id: str
    endpoint_id: str


def new_job(client, name: str = "Audited") -> str:
    return client.CreateJob(pb.CreateJobRequest(name=name)).job_id


def add_request(job_id: str, reason: str = "") -> pb.AddEndpointToJobRequest:
    return pb.AddEndpointToJobRequest(
        job_id=job_id,
        name="health",
        url="https://example.com/health",
        baseline=pb.Baseline(interval_ms=60_000),
        reason=reason,
    )


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@pytest.fixture
def ctx(harness) -> Ctx:
    job_id = new_job(harness.a)
    return Ctx(job_id, harness.a.AddEndpointToJob(add_request(job_id)).endpoint_id)


def _update_job(h, c: Ctx, reason: str) -> set[str]:
    h.a.UpdateJob(pb.UpdateJobRequest(job_id=c.job_id, name="renamed", reason=reason))
    return {c.job_id}


def _archive_job(h, c: Ctx, reason: str) -> set[str]:
    h.a.ArchiveJob(pb.ArchiveJobRequest(job_id=c.job_id, reason=reason))
    return {c.job_id}


def _add_endpoint(h, c: Ctx, reason: str) -> set[str]:
    endpoint_id = h.a.AddEndpointToJob(add_request(c.job_id, reason)).endpoint_id
    return {endpoint_id, c.job_id}  # the record may name the new endpoint or the job it joined


def _update_endpoint(h, c: Ctx, reason: str) -> set[str]:
    h.a.UpdateEndpointConfig(pb.UpdateEndpointConfigRequest(endpoint_id=c.endpoint_id, timeout_ms=5_000, reason=reason))
    return {c.endpoint_id}


def _delete_endpoint(h, c: Ctx, reason: str) -> set[str]:
    h.a.DeleteEndpoint(pb.DeleteEndpointRequest(endpoint_id=c.endpoint_id, reason=reason))
    return {c.endpoint_id}


def _hint(h, c: Ctx, reason: str) -> set[str]:
    h.a.ApplyIntervalHint(pb.ApplyIntervalHintRequest(endpoint_id=c.endpoint_id, interval_ms=10_000, reason=reason))
    return {c.endpoint_id}


def _one_shot(h, c: Ctx, reason: str) -> set[str]:
    request = pb.ScheduleOneShotRunRequest(endpoint_id=c.endpoint_id, run_at=ts(h.clock.now()), reason=reason)
    h.a.ScheduleOneShotRun(request)
    return {c.endpoint_id}


def _pause(h, c: Ctx, reason: str) -> set[str]:
    h.a.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=c.endpoint_id, reason=reason))
    return {c.endpoint_id}


def _resume(h, c: Ctx, reason: str) -> set[str]:
    h.a.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=c.endpoint_id))
    h.clock.advance(minutes=1)
    h.a.PauseOrResumeEndpoint(pb.PauseOrResumeEndpointRequest(endpoint_id=c.endpoint_id, resume=True, reason=reason))
    return {c.endpoint_id}


def _clear(h, c: Ctx, reason: str) -> set[str]:
    h.a.ClearAdaptiveHints(pb.ClearAdaptiveHintsRequest(endpoint_id=c.endpoint_id, reason=reason))
    return {c.endpoint_id}


def _reset(h, c: Ctx, reason: str) -> set[str]:
    h.fire(c.endpoint_id, status="FAILURE", http_status=500)
    h.a.ResetFailureCount(pb.ResetFailureCountRequest(endpoint_id=c.endpoint_id, reason=reason))
    return {c.endpoint_id}


MUTATIONS = [
    pytest.param("UpdateJob", _update_job, id="UpdateJob"),
    pytest.param("ArchiveJob", _archive_job, id="ArchiveJob"),
    pytest.param("AddEndpointToJob", _add_endpoint, id="AddEndpointToJob"),
    pytest.param("UpdateEndpointConfig", _update_endpoint, id="UpdateEndpointConfig"),
    pytest.param("DeleteEndpoint", _delete_endpoint, id="DeleteEndpoint"),
    pytest.param("ApplyIntervalHint", _hint, id="ApplyIntervalHint"),
    pytest.param("ScheduleOneShotRun", _one_shot, id="ScheduleOneShotRun"),
    pytest.param("PauseOrResumeEndpoint", _pause, id="PauseOrResumeEndpoint-pause"),
    pytest.param("PauseOrResumeEndpoint", _resume, id="PauseOrResumeEndpoint-resume"),
    pytest.param("ClearAdaptiveHints", _clear, id="ClearAdaptiveHints"),
    pytest.param("ResetFailureCount", _reset, id="ResetFailureCount"),
]


@pytest.mark.parametrize(("action", "perform"), MUTATIONS)
def test_mutating_action_leaves_an_audit_record_with_its_reason(harness, ctx, action, perform):
    harness.clock.advance(minutes=3)
    reason = f"agent: {action} because checkout p95 > 2s"

    targets = perform(harness, ctx, reason)

    record = harness.audit()[-1]
    assert record["action"] == action
    assert record["reason"] == reason
    assert record["target_id"] in targets
    assert utc(record["at"]) == harness.clock.now()


def test_create_job_leaves_an_audit_record(harness):
    harness.clock.advance(minutes=3)

    job_id = new_job(harness.a, "Black Friday")

    records = harness.audit()
    assert [(r["action"], r["target_id"]) for r in records] == [("CreateJob", job_id)]
    assert utc(records[0]["at"]) == harness.clock.now()


def test_audit_trail_lists_a_session_oldest_first(harness):
    job_id = new_job(harness.a)
    harness.clock.advance(seconds=1)
    endpoint_id = harness.a.AddEndpointToJob(add_request(job_id, "watch checkout")).endpoint_id
    harness.clock.advance(seconds=1)
    harness.a.ApplyIntervalHint(
        pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=20_000, reason="traffic 5x")
    )
    harness.clock.advance(seconds=1)
    harness.a.ClearAdaptiveHints(pb.ClearAdaptiveHintsRequest(endpoint_id=endpoint_id, reason="sale over"))
    harness.clock.advance(seconds=1)
    harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=job_id, reason="campaign ended"))

    records = harness.audit()

    assert [(r["action"], r["reason"]) for r in records[1:]] == [
        ("AddEndpointToJob", "watch checkout"),
        ("ApplyIntervalHint", "traffic 5x"),
        ("ClearAdaptiveHints", "sale over"),
        ("ArchiveJob", "campaign ended"),
    ]
    assert records[0]["action"] == "CreateJob"
    start = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    assert [utc(r["at"]) for r in records] == [start + timedelta(seconds=n) for n in range(5)]


def test_each_tenant_has_its_own_audit_trail(harness):
    acme_job = new_job(harness.a, "acme")
    globex_job = new_job(harness.b, "globex")
    harness.b.UpdateJob(pb.UpdateJobRequest(job_id=globex_job, description="ours", reason="globex edit"))

    assert [(r["action"], r["target_id"]) for r in harness.audit("acme")] == [("CreateJob", acme_job)]
    assert [(r["action"], r["target_id"], r["reason"]) for r in harness.audit("globex")][1:] == [
        ("UpdateJob", globex_job, "globex edit")
    ]


def test_list_audit_records_reads_a_jobs_trail_newest_first_with_the_keys_label(harness):
    job_id = new_job(harness.a)
    endpoint_id = harness.a.AddEndpointToJob(add_request(job_id, "watch checkout")).endpoint_id
    harness.clock.advance(seconds=1)
    harness.a.ApplyIntervalHint(
        pb.ApplyIntervalHintRequest(endpoint_id=endpoint_id, interval_ms=20_000, reason="traffic 5x")
    )

    records = harness.a.ListAuditRecords(pb.ListAuditRecordsRequest(job_id=job_id)).records

    assert [(r.action, r.target_id, r.reason) for r in records] == [
        ("ApplyIntervalHint", endpoint_id, "traffic 5x"),
        ("AddEndpointToJob", endpoint_id, "watch checkout"),
        ("CreateJob", job_id, ""),
    ]
    assert {r.job_id for r in records} == {job_id}
    assert {r.actor for r in records} == {"key:tests"}
    assert utc(records[0].at.ToDatetime()) == harness.clock.now()
    only_endpoint = harness.a.ListAuditRecords(pb.ListAuditRecordsRequest(endpoint_id=endpoint_id)).records
    assert [r.action for r in only_endpoint] == ["ApplyIntervalHint", "AddEndpointToJob"]


def test_list_audit_records_pages_through_a_long_trail(harness):
    job_id = new_job(harness.a)
    for n in range(5):
        harness.a.UpdateJob(pb.UpdateJobRequest(job_id=job_id, description=str(n), reason=f"edit {n}"))

    reasons, token = [], ""
    while True:
        page = harness.a.ListAuditRecords(pb.ListAuditRecordsRequest(job_id=job_id, page_size=2, page_token=token))
        reasons += [r.reason for r in page.records]
        token = page.next_page_token
        if not token:
            break

    assert reasons == ["edit 4", "edit 3", "edit 2", "edit 1", "edit 0", ""]


def test_list_audit_records_refuses_another_tenants_job_and_bad_input(harness):
    job_id = new_job(harness.a)

    with pytest.raises(grpc.RpcError) as foreign:
        harness.b.ListAuditRecords(pb.ListAuditRecordsRequest(job_id=job_id))
    with pytest.raises(grpc.RpcError) as neither:
        harness.a.ListAuditRecords(pb.ListAuditRecordsRequest())
    with pytest.raises(grpc.RpcError) as token:
        harness.a.ListAuditRecords(pb.ListAuditRecordsRequest(job_id=job_id, page_token="bm90IGEgdG9rZW4"))

    assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
    assert neither.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert token.value.code() == grpc.StatusCode.INVALID_ARGUMENT
