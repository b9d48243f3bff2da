"""Endpoint orchestration: AddEndpointToJob, UpdateEndpointConfig, DeleteEndpoint and ListJobEndpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import dt

URL = "https://shop.example.com/health"


def new_job(client, name: str = "Black Friday") -> str:
    return client.CreateJob(pb.CreateJobRequest(name=name)).job_id


def add_endpoint(client, job_id: str, name: str = "health", **fields) -> pb.AddEndpointToJobResponse:
    fields.setdefault("url", URL)
    fields.setdefault("baseline", pb.Baseline(interval_ms=60_000))
    return client.AddEndpointToJob(pb.AddEndpointToJobRequest(job_id=job_id, name=name, **fields))


def new_endpoint(client, job_id: str, interval_ms: int = 60_000, name: str = "health") -> str:
    return add_endpoint(client, job_id, name, baseline=pb.Baseline(interval_ms=interval_ms)).endpoint_id


def cron(expression: str, timezone: str = "") -> pb.Baseline:
    return pb.Baseline(cron=pb.CronSchedule(expression=expression, timezone=timezone))


def rows(client, job_id: str) -> list[pb.EndpointSummary]:
    return list(client.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints)


def row(client, job_id: str, endpoint_id: str) -> pb.EndpointSummary:
    return next(r for r in rows(client, job_id) if r.endpoint_id == endpoint_id)


def update(client, endpoint_id: str, **fields) -> pb.UpdateEndpointConfigResponse:
    return client.UpdateEndpointConfig(pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, **fields))


def scheduled_runs(client, endpoint_id: str) -> list[datetime]:
    runs = client.ListRuns(pb.ListRunsRequest(endpoint_id=endpoint_id)).runs
    return sorted(dt(r.scheduled_for) for r in runs)


# AddEndpointToJob


def test_new_interval_endpoint_first_runs_one_interval_from_now(harness):
    job_id = new_job(harness.a)
    now = harness.clock.now()

    response = add_endpoint(harness.a, job_id, "check_error_rate", baseline=pb.Baseline(interval_ms=60_000))

    assert response.endpoint_id
    assert dt(response.next_run_at) == now + timedelta(seconds=60)
    listed = row(harness.a, job_id, response.endpoint_id)
    assert listed.name == "check_error_rate"
    assert dt(listed.next_run_at) == now + timedelta(seconds=60)
    assert listed.next_run_source == pb.RUN_SOURCE_BASELINE_INTERVAL
    assert dt(listed.last_run_at) is None
    assert listed.failure_count == 0
    assert listed.paused is False
    assert dt(listed.paused_until) is None


@pytest.mark.parametrize(
    ("expression", "timezone", "expected"),
    [
        pytest.param("*/15 * * * *", "", datetime(2026, 1, 5, 10, 15, tzinfo=UTC), id="every-15-min"),
        pytest.param("0 10 * * *", "", datetime(2026, 1, 6, 10, 0, tzinfo=UTC), id="slot-at-now-is-skipped"),
        pytest.param("0 9 * * *", "Europe/Berlin", datetime(2026, 1, 6, 8, 0, tzinfo=UTC), id="berlin-9am"),
        pytest.param("0 9 * * MON", "America/New_York", datetime(2026, 1, 5, 14, 0, tzinfo=UTC), id="new-york"),
        pytest.param("0 0 9 * * MON", "", datetime(2026, 1, 12, 9, 0, tzinfo=UTC), id="six-fields-weekly"),
        pytest.param("30 * * * * *", "", datetime(2026, 1, 5, 10, 0, 30, tzinfo=UTC), id="six-fields-seconds"),
    ],
)
def test_new_cron_endpoint_first_runs_at_the_next_slot(harness, expression, timezone, expected):
    assert harness.clock.now() == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    job_id = new_job(harness.a)

    response = add_endpoint(harness.a, job_id, baseline=cron(expression, timezone))

    assert dt(response.next_run_at) == expected
    listed = row(harness.a, job_id, response.endpoint_id)
    assert dt(listed.next_run_at) == expected
    assert listed.next_run_source == pb.RUN_SOURCE_BASELINE_CRON


def test_endpoint_with_full_request_config_is_accepted(harness):
    job_id = new_job(harness.a)

    response = add_endpoint(
        harness.a,
        job_id,
        "warm_cache",
        url="http://cache.internal.example:8080/warm?scope=all",
        method="post",
        headers={"Authorization": "Bearer t0k3n", "X-Request-Source": "pacer"},
        body='{"scope": "all"}',
        baseline=pb.Baseline(interval_ms=300_000),
        clamp=pb.Clamp(min_interval_ms=60_000, max_interval_ms=600_000),
        timeout_ms=5_000,
        reason="cache warm-up",
    )

    assert response.endpoint_id
    assert dt(response.next_run_at) == harness.clock.now() + timedelta(minutes=5)
    assert [r.name for r in rows(harness.a, job_id)] == ["warm_cache"]


def test_max_clamp_pulls_the_first_run_earlier(harness):
    job_id = new_job(harness.a)

    response = add_endpoint(
        harness.a, job_id, baseline=pb.Baseline(interval_ms=3_600_000), clamp=pb.Clamp(max_interval_ms=600_000)
    )

    assert dt(response.next_run_at) == harness.clock.now() + timedelta(minutes=10)
    assert row(harness.a, job_id, response.endpoint_id).next_run_source == pb.RUN_SOURCE_CLAMPED_MAX


# ListJobEndpoints


def test_list_job_endpoints_lists_live_endpoints_oldest_first(harness):
    job_id = new_job(harness.a)
    other_job = new_job(harness.a, "other")
    first = new_endpoint(harness.a, job_id, name="first")
    harness.clock.advance(seconds=1)
    second = new_endpoint(harness.a, job_id, name="second")
    harness.clock.advance(seconds=1)
    third = new_endpoint(harness.a, job_id, name="third")
    new_endpoint(harness.a, other_job, name="elsewhere")
    harness.a.DeleteEndpoint(pb.DeleteEndpointRequest(endpoint_id=second))

    listed = rows(harness.a, job_id)

    assert [(r.endpoint_id, r.name) for r in listed] == [(first, "first"), (third, "third")]


def test_list_job_endpoints_of_an_empty_job_is_empty(harness):
    assert rows(harness.a, new_job(harness.a)) == []


def test_list_job_endpoints_shows_last_run_and_failures(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=60_000)

    run_id = harness.fire(endpoint_id, status="FAILURE", http_status=503, duration_ms=0)

    run = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run
    listed = row(harness.a, job_id, endpoint_id)
    assert dt(listed.last_run_at) == dt(run.started_at) == datetime(2026, 1, 5, 10, 1, tzinfo=UTC)
    assert listed.failure_count == 1
    assert dt(listed.next_run_at) == datetime(2026, 1, 5, 10, 3, tzinfo=UTC)  # 60 s x 2^1 backoff


# UpdateEndpointConfig


def test_update_endpoint_config_renames_and_changes_the_request(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, name="old name")
    harness.clock.advance(seconds=20)

    response = update(
        harness.a,
        endpoint_id,
        name="new name",
        url="https://shop.example.com/v2/health",
        method="PUT",
        headers=pb.Headers(entries={"Authorization": "Bearer rotated"}),
        body="{}",
        timeout_ms=10_000,
        reason="token rotated",
    )

    assert dt(response.updated_at) == harness.clock.now()
    listed = row(harness.a, job_id, endpoint_id)
    assert listed.name == "new name"
    assert dt(response.next_run_at) == dt(listed.next_run_at)


def test_update_endpoint_config_keeps_unset_fields(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=60_000, name="keep me")

    update(harness.a, endpoint_id, url="https://shop.example.com/other")
    harness.fire(endpoint_id)
    harness.fire(endpoint_id)

    listed = row(harness.a, job_id, endpoint_id)
    assert listed.name == "keep me"
    first, second = scheduled_runs(harness.a, endpoint_id)
    assert second - first == timedelta(seconds=60)
    assert dt(listed.next_run_at) == second + timedelta(seconds=60)


def test_new_interval_baseline_restarts_the_cadence_now(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=60_000)
    harness.clock.advance(seconds=30)

    response = update(harness.a, endpoint_id, baseline=pb.Baseline(interval_ms=300_000), reason="relax")

    expected = harness.clock.now() + timedelta(minutes=5)
    assert dt(response.updated_at) == harness.clock.now()
    assert dt(response.next_run_at) == expected
    assert dt(row(harness.a, job_id, endpoint_id).next_run_at) == expected


def test_new_cron_baseline_replaces_the_interval(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=60_000)
    harness.clock.advance(minutes=2)  # 10:02

    response = update(harness.a, endpoint_id, baseline=cron("*/15 * * * *"))

    assert dt(response.next_run_at) == datetime(2026, 1, 5, 10, 15, tzinfo=UTC)
    assert row(harness.a, job_id, endpoint_id).next_run_source == pb.RUN_SOURCE_BASELINE_CRON


def test_new_max_clamp_pulls_the_next_run_earlier(harness):
    job_id = new_job(harness.a)
    endpoint_id = new_endpoint(harness.a, job_id, interval_ms=3_600_000)

    response = update(harness.a, endpoint_id, clamp=pb.Clamp(max_interval_ms=600_000))

    assert dt(response.next_run_at) == harness.clock.now() + timedelta(minutes=10)
    listed = row(harness.a, job_id, endpoint_id)
    assert dt(listed.next_run_at) == harness.clock.now() + timedelta(minutes=10)
    assert listed.next_run_source == pb.RUN_SOURCE_CLAMPED_MAX


# DeleteEndpoint


def test_delete_endpoint_removes_it_from_the_job_and_keeps_its_history(harness):
    job_id = new_job(harness.a)
    doomed = new_endpoint(harness.a, job_id, name="doomed")
    kept = new_endpoint(harness.a, job_id, interval_ms=90_000, name="kept")
    run_id = harness.fire(doomed, status="FAILURE", http_status=500)
    harness.clock.advance(seconds=10)

    response = harness.a.DeleteEndpoint(pb.DeleteEndpointRequest(endpoint_id=doomed, reason="deprecated check"))

    assert dt(response.deleted_at) == harness.clock.now()
    assert [r.endpoint_id for r in rows(harness.a, job_id)] == [kept]
    job = harness.a.GetJob(pb.GetJobRequest(job_id=job_id)).job
    assert (job.endpoint_count, job.failure_count) == (1, 0)
    history = harness.a.ListRuns(pb.ListRunsRequest(endpoint_id=doomed))
    assert [r.run_id for r in history.runs] == [run_id]
    details = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run
    assert (details.endpoint_id, details.status) == (doomed, pb.RUN_STATUS_FAILURE)


def test_delete_endpoint_twice_returns_the_original_time(harness):
    endpoint_id = new_endpoint(harness.a, new_job(harness.a))
    first = harness.a.DeleteEndpoint(pb.DeleteEndpointRequest(endpoint_id=endpoint_id))
    harness.clock.advance(minutes=10)

    second = harness.a.DeleteEndpoint(pb.DeleteEndpointRequest(endpoint_id=endpoint_id))

    assert dt(second.deleted_at) == dt(first.deleted_at) == harness.clock.now() - timedelta(minutes=10)


def test_deleted_endpoint_stops_firing(harness):
    job_id = new_job(harness.a)
    deleted = new_endpoint(harness.a, job_id, interval_ms=60_000, name="deleted")
    live = new_endpoint(harness.a, job_id, interval_ms=60_000, name="live")
    harness.a.DeleteEndpoint(pb.DeleteEndpointRequest(endpoint_id=deleted))

    harness.fire(live)  # 10:01:00, when the deleted endpoint would also have been due
    harness.fire(live)

    assert harness.a.ListRuns(pb.ListRunsRequest(endpoint_id=deleted)).total == 0
    assert harness.a.ListRuns(pb.ListRunsRequest(endpoint_id=live)).total == 2


def test_list_job_endpoints_shows_the_config_but_only_a_digest_of_headers_and_body(harness):
    from pacer_common.digest import config_digest

    job_id = harness.a.CreateJob(pb.CreateJobRequest(name="config")).job_id
    headers = {"Authorization": "Bearer target-secret", "X-Tier": "health"}
    harness.a.AddEndpointToJob(
        pb.AddEndpointToJobRequest(
            job_id=job_id,
            name="orders",
            url="https://shop.example.com/orders",
            method="post",
            headers=headers,
            body='{"probe": true}',
            baseline=pb.Baseline(cron=pb.CronSchedule(expression="*/5 * * * *", timezone="Europe/Berlin")),
            clamp=pb.Clamp(min_interval_ms=60_000, max_interval_ms=600_000),
            timeout_ms=5_000,
        )
    )
    (summary,) = harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints
    assert (summary.url, summary.method, summary.timeout_ms) == ("https://shop.example.com/orders", "POST", 5_000)
    assert (summary.baseline.cron.expression, summary.baseline.cron.timezone) == ("*/5 * * * *", "Europe/Berlin")
    assert (summary.clamp.min_interval_ms, summary.clamp.max_interval_ms) == (60_000, 600_000)
    assert summary.config_digest == config_digest(headers, '{"probe": true}')
    assert "target-secret" not in str(summary)
