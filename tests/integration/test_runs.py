"""Execution visibility: ListRuns, GetRunDetails and SummarizeEndpointHealth over runs fired through the harness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from pacer_control import catalog
from tests.support.harness import dt

FAILED_STATUSES = ["FAILURE", "TIMEOUT", "LOST", "BLOCKED"]


def new_job(client, name: str = "Data Pipeline") -> str:
    return client.CreateJob(pb.CreateJobRequest(name=name)).job_id


def new_endpoint(client, job_id: str, interval_ms: int = 60_000, name: str = "fetch_stripe") -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name=name, url="https://etl.example.com/fetch", baseline=pb.Baseline(interval_ms=interval_ms)
    )
    return client.AddEndpointToJob(request).endpoint_id


def list_runs(client, **filters) -> pb.ListRunsResponse:
    return client.ListRuns(pb.ListRunsRequest(**filters))


def details(client, run_id: str) -> pb.Run:
    return client.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run


def health(client, endpoint_id: str, window_hours: int = 0) -> pb.SummarizeEndpointHealthResponse:
    return client.SummarizeEndpointHealth(
        pb.SummarizeEndpointHealthRequest(endpoint_id=endpoint_id, window_hours=window_hours)
    )


@pytest.fixture
def endpoint(harness) -> tuple[str, str]:
    """(job_id, endpoint_id) of a 60 s interval endpoint created at 10:00:00."""
    job_id = new_job(harness.a)
    return job_id, new_endpoint(harness.a, job_id)


# ListRuns


def test_list_runs_lists_newest_scheduled_first_with_the_total(harness, endpoint):
    job_id, endpoint_id = endpoint
    fired = [
        harness.fire(endpoint_id, duration_ms=120),  # 10:01
        harness.fire(endpoint_id, status="FAILURE", http_status=500, duration_ms=80),  # 10:02, then backoff
        harness.fire(endpoint_id, duration_ms=45),  # 10:04
    ]

    response = list_runs(harness.a)

    assert response.total == 3
    assert [r.run_id for r in response.runs] == list(reversed(fired))
    newest = response.runs[0]
    assert newest.endpoint_id == endpoint_id
    assert newest.job_id == job_id
    assert dt(newest.scheduled_for) == datetime(2026, 1, 5, 10, 4, tzinfo=UTC)
    assert dt(newest.started_at) == datetime(2026, 1, 5, 10, 4, tzinfo=UTC)
    assert newest.status == pb.RUN_STATUS_SUCCESS
    assert newest.duration_ms == 45
    assert newest.source == pb.RUN_SOURCE_BASELINE_INTERVAL
    assert [r.status for r in response.runs] == [pb.RUN_STATUS_SUCCESS, pb.RUN_STATUS_FAILURE, pb.RUN_STATUS_SUCCESS]
    assert [r.duration_ms for r in response.runs] == [45, 80, 120]
    assert [dt(r.scheduled_for).minute for r in response.runs] == [4, 2, 1]


def test_list_runs_filters_by_job_and_by_endpoint(harness):
    job_one, job_two = new_job(harness.a, "one"), new_job(harness.a, "two")
    every_minute = new_endpoint(harness.a, job_one, interval_ms=60_000)
    every_90s = new_endpoint(harness.a, job_two, interval_ms=90_000)
    one_a = harness.fire(every_minute)  # 10:01:00
    two_a = harness.fire(every_90s)  # 10:01:30
    one_b = harness.fire(every_minute)  # 10:02:00

    by_job_one = list_runs(harness.a, job_id=job_one)
    by_job_two = list_runs(harness.a, job_id=job_two)
    by_endpoint = list_runs(harness.a, endpoint_id=every_90s)
    everything = list_runs(harness.a)

    assert ([r.run_id for r in by_job_one.runs], by_job_one.total) == ([one_b, one_a], 2)
    assert ([r.run_id for r in by_job_two.runs], by_job_two.total) == ([two_a], 1)
    assert ([r.run_id for r in by_endpoint.runs], by_endpoint.total) == ([two_a], 1)
    assert ([r.run_id for r in everything.runs], everything.total) == ([one_b, two_a, one_a], 3)


@pytest.mark.parametrize(
    ("status_filter", "expected"),
    [
        pytest.param(pb.RUN_STATUS_FILTER_UNSPECIFIED, ["SUCCESS", *FAILED_STATUSES, "SUCCESS"], id="all"),
        pytest.param(pb.RUN_STATUS_FILTER_SUCCESS, ["SUCCESS", "SUCCESS"], id="success"),
        pytest.param(pb.RUN_STATUS_FILTER_FAILURE, FAILED_STATUSES, id="failure-covers-every-non-success"),
        pytest.param(pb.RUN_STATUS_FILTER_RUNNING, [], id="running"),
    ],
)
def test_list_runs_filters_by_outcome(harness, endpoint, status_filter, expected):
    _, endpoint_id = endpoint
    outcomes = ["SUCCESS", *FAILED_STATUSES, "SUCCESS"]
    run_status = {harness.fire(endpoint_id, status=s, http_status=200 if s == "SUCCESS" else 0): s for s in outcomes}

    response = list_runs(harness.a, endpoint_id=endpoint_id, status=status_filter)

    assert response.total == len(expected)
    assert sorted(run_status[r.run_id] for r in response.runs) == sorted(expected)
    assert all(r.status == getattr(pb, f"RUN_STATUS_{run_status[r.run_id]}") for r in response.runs)


@pytest.mark.parametrize(
    ("limit", "offset", "expected_positions"),
    [
        pytest.param(2, 0, [0, 1], id="first-two"),
        pytest.param(2, 1, [1, 2], id="skip-one"),
        pytest.param(3, 3, [3, 4], id="last-page-short"),
        pytest.param(2, 5, [], id="past-the-end"),
        pytest.param(0, 0, [0, 1, 2, 3, 4], id="zero-means-default"),
    ],
)
def test_list_runs_pages_with_limit_and_offset(harness, endpoint, limit, offset, expected_positions):
    _, endpoint_id = endpoint
    newest_first = list(reversed([harness.fire(endpoint_id) for _ in range(5)]))

    response = list_runs(harness.a, limit=limit, offset=offset)

    assert [r.run_id for r in response.runs] == [newest_first[i] for i in expected_positions]
    assert response.total == 5


# GetRunDetails


def test_get_run_details_returns_every_field(harness, endpoint):
    job_id, endpoint_id = endpoint
    run_id = harness.fire(
        endpoint_id,
        status="FAILURE",
        duration_ms=1_234,
        http_status=503,
        error_message="upstream unavailable",
        response_body='{"error": "maintenance"}',
        response_truncated=True,
    )

    run = details(harness.a, run_id)

    scheduled = datetime(2026, 1, 5, 10, 1, tzinfo=UTC)
    assert run.run_id == run_id
    assert run.endpoint_id == endpoint_id
    assert run.job_id == job_id
    assert run.status == pb.RUN_STATUS_FAILURE
    assert run.source == pb.RUN_SOURCE_BASELINE_INTERVAL
    assert run.attempt == 1
    assert dt(run.scheduled_for) == scheduled
    assert dt(run.started_at) == scheduled
    assert dt(run.finished_at) == scheduled + timedelta(milliseconds=1_234)
    assert run.duration_ms == 1_234
    assert run.http_status == 503
    assert run.error_message == "upstream unavailable"
    assert run.response_body == '{"error": "maintenance"}'
    assert run.response_truncated is True


def test_get_run_details_of_a_success(harness, endpoint):
    _, endpoint_id = endpoint
    run_id = harness.fire(endpoint_id, duration_ms=75, http_status=204, response_body="")

    run = details(harness.a, run_id)

    assert run.status == pb.RUN_STATUS_SUCCESS
    assert run.http_status == 204
    assert run.error_message == ""
    assert run.response_truncated is False
    assert run.duration_ms == 75


def test_attempt_counts_the_failures_before_the_run(harness, endpoint):
    _, endpoint_id = endpoint
    statuses = ["FAILURE", "TIMEOUT", "FAILURE", "SUCCESS", "SUCCESS"]
    run_ids = [harness.fire(endpoint_id, status=s, http_status=200 if s == "SUCCESS" else 500) for s in statuses]

    assert [details(harness.a, run_id).attempt for run_id in run_ids] == [1, 2, 3, 4, 1]


# SummarizeEndpointHealth


def test_health_summary_counts_durations_and_the_failure_streak(harness, endpoint):
    _, endpoint_id = endpoint
    outcomes = [("SUCCESS", 100)] * 8 + [("FAILURE", 100)] + [("SUCCESS", 100)] * 9 + [("TIMEOUT", 1_000)] * 2
    last = None
    for status, duration_ms in outcomes:
        http_status = 200 if status == "SUCCESS" else 0
        last = harness.fire(endpoint_id, status=status, duration_ms=duration_ms, http_status=http_status)

    summary = health(harness.a, endpoint_id)

    assert summary.success_count == 17
    assert summary.failure_count == 3
    assert summary.avg_duration_ms == 190  # (18 x 100 + 2 x 1000) / 20
    assert summary.p95_duration_ms == 1_000
    assert summary.failure_streak == 2
    assert summary.last_run.status == pb.RUN_STATUS_TIMEOUT
    assert dt(summary.last_run.at) == dt(details(harness.a, last).finished_at)


def test_health_summary_window_leaves_older_runs_out(harness):
    job_id = new_job(harness.a)
    every_two_hours = new_endpoint(harness.a, job_id, interval_ms=7_200_000)
    harness.fire(every_two_hours, duration_ms=300)  # 12:00
    harness.fire(every_two_hours, duration_ms=200)  # 14:00
    last = harness.fire(every_two_hours, status="FAILURE", http_status=500, duration_ms=100)  # 16:00

    last_hour = health(harness.a, every_two_hours, window_hours=1)
    last_three_hours = health(harness.a, every_two_hours, window_hours=3)
    default_day = health(harness.a, every_two_hours)

    assert (last_hour.success_count, last_hour.failure_count, last_hour.avg_duration_ms) == (0, 1, 100)
    assert (last_three_hours.success_count, last_three_hours.failure_count) == (1, 1)
    assert last_three_hours.avg_duration_ms == 150
    assert (default_day.success_count, default_day.failure_count, default_day.avg_duration_ms) == (2, 1, 200)
    assert last_hour.last_run.status == pb.RUN_STATUS_FAILURE
    assert dt(last_hour.last_run.at) == dt(details(harness.a, last).finished_at)
    assert default_day.failure_streak == 1


def test_health_summary_of_an_endpoint_that_never_ran(harness, endpoint):
    _, endpoint_id = endpoint

    summary = health(harness.a, endpoint_id)

    assert (summary.success_count, summary.failure_count, summary.failure_streak) == (0, 0, 0)
    assert (summary.avg_duration_ms, summary.p95_duration_ms) == (0, 0)
    assert not summary.HasField("last_run")


def test_health_summary_streak_counts_every_non_success_since_the_last_success(harness, endpoint):
    _, endpoint_id = endpoint
    for status in ["FAILURE", "SUCCESS", "TIMEOUT", "LOST", "BLOCKED"]:
        harness.fire(endpoint_id, status=status, http_status=200 if status == "SUCCESS" else 0)

    summary = health(harness.a, endpoint_id)

    assert summary.failure_streak == 3
    assert (summary.success_count, summary.failure_count) == (1, 4)
    assert summary.last_run.status == pb.RUN_STATUS_BLOCKED


@pytest.mark.parametrize(
    ("limit", "offset", "expected_total"),
    [
        pytest.param(2, 0, 5, id="counted-up-to-lookahead-past-the-page"),
        pytest.param(2, 4, 9, id="deeper-pages-count-further"),
        pytest.param(2, 6, 10, id="exact-once-within-reach"),
        pytest.param(5, 20, 10, id="past-the-end-exact"),
    ],
)
def test_list_runs_counts_the_total_only_a_bounded_way_past_the_page(
    harness, endpoint, monkeypatch, limit, offset, expected_total
):
    """A history of millions of runs is never counted in full: the total is exact near the page, else "at least"."""
    monkeypatch.setattr(catalog, "TOTAL_LOOKAHEAD", 3)
    _, endpoint_id = endpoint
    for _ in range(10):
        harness.fire(endpoint_id)

    response = list_runs(harness.a, limit=limit, offset=offset)

    assert response.total == expected_total
    assert len(response.runs) == max(0, min(limit, 10 - offset))


def test_list_runs_pages_one_endpoints_failures_newest_first_for_its_tenant_only(harness, endpoint):
    _, endpoint_id = endpoint
    statuses = ["FAILURE", "SUCCESS", "TIMEOUT", "SUCCESS", "FAILURE", "BLOCKED"]
    fired = [harness.fire(endpoint_id, status=s, http_status=200 if s == "SUCCESS" else 0) for s in statuses]
    failures_newest_first = [run for run, s in reversed(list(zip(fired, statuses, strict=True))) if s != "SUCCESS"]

    page = list_runs(harness.a, endpoint_id=endpoint_id, status=pb.RUN_STATUS_FILTER_FAILURE, limit=2, offset=1)
    foreign = list_runs(harness.b, endpoint_id=endpoint_id, status=pb.RUN_STATUS_FILTER_FAILURE)

    assert [r.run_id for r in page.runs] == failures_newest_first[1:3]
    assert page.total == 4
    assert (list(foreign.runs), foreign.total) == ([], 0)
