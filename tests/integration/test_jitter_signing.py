"""Jitter and signing secrets through the public API and the claim path, on both backends: stored, checked (the
field at fault named), never read back, rotated with an overlap, and handed to the scheduler with each claimed run."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from sqlalchemy import select

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common import jitter
from pacer_control.models import Endpoint
from tests.integration.test_leases import Leases, next_run
from tests.support.harness import Harness, dt, status_of, violations

SECRET = "s3cret-number-one-0123456789abcdef"
ROTATED = "s3cret-number-two-0123456789abcdef"
MINUTE_MS = 60_000


def add(harness: Harness, **fields: object) -> str:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="signed")).job_id
    request = pb.AddEndpointToJobRequest(
        job_id=job,
        name="hook",
        url="https://hooks.example.com/in",
        method="POST",
        body='{"ping":true}',
        baseline=pb.Baseline(interval_ms=MINUTE_MS),
        **fields,  # type: ignore[arg-type]
    )
    return str(harness.a.AddEndpointToJob(request).endpoint_id)


def update(harness: Harness, endpoint_id: str, **fields: object) -> None:
    harness.a.UpdateEndpointConfig(pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, **fields))  # type: ignore[arg-type]


def refused(call: object) -> dict[str, str]:
    with pytest.raises(grpc.RpcError) as error:
        call()  # type: ignore[operator]
    assert status_of(error.value) == grpc.StatusCode.INVALID_ARGUMENT
    return violations(error.value)


def test_jitter_is_stored_and_listed_and_the_claim_starts_the_run_within_it(harness: Harness) -> None:
    endpoint_id = add(harness, jitter_ms=20_000, timeout_ms=5_000)
    summary = next_run(harness, endpoint_id)
    assert (summary.jitter_ms, summary.signed) == (20_000, False)
    leases = Leases(harness)
    harness.clock.advance(60)
    (item,) = leases.claim().items
    slot, start = dt(item.scheduled_for), dt(item.start_at)
    assert slot is not None
    assert start is not None
    assert slot <= start <= slot + timedelta(seconds=20)
    assert start == slot + timedelta(milliseconds=jitter.offset_ms(endpoint_id, slot, 20_000))
    # The lease covers the wait until the start, then the call's timeout and the grace.
    assert dt(item.lease_expires_at) == max(start, harness.clock.now()) + timedelta(milliseconds=5_000 + 30_000)
    assert list(item.signing_secrets) == []


def test_a_claim_sent_again_and_a_released_run_claimed_anew_start_at_the_same_time(harness: Harness) -> None:
    endpoint_id = add(harness, jitter_ms=50_000)
    leases = Leases(harness)
    harness.clock.advance(60)
    (first,) = leases.claim(claim_id="c1").items
    (again,) = leases.claim(claim_id="c1").items  # the answer was lost: the same run, the same start
    assert (again.run_id, again.start_at) == (first.run_id, first.start_at)
    leases.report(released=[first.run_id])  # never began: back to due at the same slot
    (anew,) = Leases(harness, session_id="ss_other").claim().items
    assert anew.run_id != first.run_id
    assert anew.endpoint_id == endpoint_id
    assert (anew.scheduled_for, anew.start_at) == (first.scheduled_for, first.start_at)


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"jitter_ms": MINUTE_MS}, "jitter_ms", "less than the baseline interval"),
        ({"jitter_ms": 3_600_001}, "jitter_ms", "between 0 and 3600000"),
        ({"jitter_ms": -5}, "jitter_ms", "between 0 and 3600000"),
        ({"signing_secret": "too-short"}, "signing_secret", "between 32 and 256 characters"),
        ({"signing_secret": "x" * 257}, "signing_secret", "between 32 and 256 characters"),
        ({"headers": {"X-Pacer-Signature": "t=1,v1=00"}}, "headers.X-Pacer-Signature", "set by Pacer itself"),
    ],
    ids=["jitter-not-under-interval", "jitter-too-large", "jitter-negative", "short", "long", "forged-header"],
)
def test_bad_jitter_or_secret_is_refused_naming_the_field(
    harness: Harness, fields: dict[str, object], field: str, says: str
) -> None:
    found = refused(lambda: add(harness, **fields))
    assert says in found[field]


def test_updates_are_checked_against_the_baseline_in_force(harness: Harness) -> None:
    endpoint_id = add(harness, jitter_ms=30_000)
    found = refused(lambda: update(harness, endpoint_id, jitter_ms=MINUTE_MS))
    assert "less than the baseline interval" in found["jitter_ms"]
    # A shorter baseline the jitter no longer fits in is refused too, on the jitter it conflicts with.
    found = refused(lambda: update(harness, endpoint_id, baseline=pb.Baseline(interval_ms=20_000)))
    assert "less than the baseline interval (20000 ms)" in found["jitter_ms"]
    found = refused(lambda: update(harness, endpoint_id, signing_secret="short", signing_overlap_ms=-1))
    assert set(found) == {"signing_secret", "signing_overlap_ms"}
    assert next_run(harness, endpoint_id).jitter_ms == 30_000
    update(harness, endpoint_id, baseline=pb.Baseline(interval_ms=20_000), jitter_ms=5_000)
    assert next_run(harness, endpoint_id).jitter_ms == 5_000


def test_the_secret_is_sealed_never_returned_and_signs_each_claimed_run(harness: Harness) -> None:
    endpoint_id = add(harness, signing_secret=SECRET, headers={"Authorization": "Bearer t"})
    summary = next_run(harness, endpoint_id)
    assert summary.signed
    assert not summary.HasField("previous_secret_expires_at")
    # Never on the wire of a read, nor in the clear in the database.
    listed = harness.a.ListJobEndpoints(
        pb.ListJobEndpointsRequest(job_id=harness.a.ListJobs(pb.ListJobsRequest()).jobs[0].job_id)
    )
    assert SECRET.encode() not in listed.SerializeToString()
    with harness.engine.connect() as connection:
        row = connection.execute(select(Endpoint).where(Endpoint.id == endpoint_id)).one()
    assert SECRET not in " ".join(str(value) for value in row)
    assert row.signed is True
    harness.clock.advance(60)
    (item,) = Leases(harness).claim().items
    assert list(item.signing_secrets) == [SECRET]
    assert item.headers["Authorization"] == "Bearer t"  # the headers still open beside it


def test_a_rotation_signs_with_both_secrets_for_the_overlap_then_the_new_one_alone(harness: Harness) -> None:
    endpoint_id = add(harness, signing_secret=SECRET)
    rotated_at = harness.clock.now()
    update(harness, endpoint_id, signing_secret=ROTATED, signing_overlap_ms=90_000)
    summary = next_run(harness, endpoint_id)
    assert summary.signed
    assert dt(summary.previous_secret_expires_at) == rotated_at + timedelta(seconds=90)
    leases = Leases(harness)
    harness.clock.advance(60)
    (item,) = leases.claim().items
    assert list(item.signing_secrets) == [ROTATED, SECRET]  # newest first
    leases.report(released=[item.run_id])
    harness.clock.advance(31)  # the overlap is over
    (item,) = leases.claim().items
    assert list(item.signing_secrets) == [ROTATED]
    assert not next_run(harness, endpoint_id).HasField("previous_secret_expires_at")


def test_the_default_overlap_is_a_day_and_an_empty_secret_stops_signing(harness: Harness) -> None:
    endpoint_id = add(harness, signing_secret=SECRET)
    update(harness, endpoint_id, signing_secret=ROTATED)
    assert dt(next_run(harness, endpoint_id).previous_secret_expires_at) == harness.clock.now() + timedelta(days=1)
    update(harness, endpoint_id, signing_overlap_ms=0)  # end the overlap now
    summary = next_run(harness, endpoint_id)
    assert summary.signed
    assert not summary.HasField("previous_secret_expires_at")
    update(harness, endpoint_id, signing_secret="")
    summary = next_run(harness, endpoint_id)
    assert not summary.signed
    assert not summary.HasField("previous_secret_expires_at")
    harness.clock.advance(60)
    (item,) = Leases(harness).claim().items
    assert list(item.signing_secrets) == []


def test_changing_headers_or_url_keeps_the_signing_secret(harness: Harness) -> None:
    endpoint_id = add(harness, signing_secret=SECRET)
    update(harness, endpoint_id, headers=pb.Headers(entries={"X-Key": "k"}), url="https://u:pw@hooks.example.com/x")
    harness.clock.advance(60)
    (item,) = Leases(harness).claim().items
    assert list(item.signing_secrets) == [SECRET]
    assert (item.url, dict(item.headers)) == ("https://u:pw@hooks.example.com/x", {"X-Key": "k"})


def test_another_tenant_cannot_set_or_see_a_secret(harness: Harness) -> None:
    endpoint_id = add(harness, signing_secret=SECRET)
    with pytest.raises(grpc.RpcError) as error:
        harness.b.UpdateEndpointConfig(pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, signing_secret=ROTATED))
    assert status_of(error.value) == grpc.StatusCode.NOT_FOUND
    harness.clock.advance(60)
    (item,) = Leases(harness).claim().items
    assert list(item.signing_secrets) == [SECRET]
