"""Job lifecycle through the public API: CreateJob, GetJob, ListJobs, UpdateJob and ArchiveJob."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import dt

ACTIVE = pb.JOB_STATUS_ACTIVE
ARCHIVED = pb.JOB_STATUS_ARCHIVED


def new_job(client, name: str = "Black Friday", description: str = "") -> str:
    return client.CreateJob(pb.CreateJobRequest(name=name, description=description)).job_id


def new_endpoint(client, job_id: str, interval_ms: int = 60_000, name: str = "health") -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name=name, url="https://shop.example.com/health", baseline=pb.Baseline(interval_ms=interval_ms)
    )
    return client.AddEndpointToJob(request).endpoint_id


def get_job(client, job_id: str) -> pb.Job:
    return client.GetJob(pb.GetJobRequest(job_id=job_id)).job


def list_jobs(client, status: int = pb.JOB_STATUS_UNSPECIFIED, page_size: int = 0, page_token: str = ""):
    return client.ListJobs(pb.ListJobsRequest(status=status, page_size=page_size, page_token=page_token))


def jobs_in_order(harness, names: list[str]) -> list[str]:
    """Create jobs one minute apart so that their creation order is unambiguous; return their ids."""
    ids = []
    for name in names:
        ids.append(new_job(harness.a, name))
        harness.clock.advance(minutes=1)
    return ids


# CreateJob


def test_create_job_returns_a_fresh_id_and_the_creation_time(harness):
    first = harness.a.CreateJob(pb.CreateJobRequest(name="Black Friday", description="flash sale monitors"))
    second = harness.a.CreateJob(pb.CreateJobRequest(name="Black Friday"))

    assert first.job_id
    assert second.job_id
    assert second.job_id != first.job_id
    assert dt(first.created_at) == harness.clock.now()


# GetJob


def test_get_job_returns_what_was_created(harness):
    created = harness.a.CreateJob(pb.CreateJobRequest(name="Production Health", description="pods, queues, DB"))

    job = get_job(harness.a, created.job_id)

    assert job.job_id == created.job_id
    assert job.name == "Production Health"
    assert job.description == "pods, queues, DB"
    assert job.status == ACTIVE
    assert dt(job.created_at) == dt(created.created_at) == harness.clock.now()
    assert dt(job.updated_at) == harness.clock.now()
    assert job.endpoint_count == 0
    assert job.failure_count == 0
    assert dt(job.archived_at) is None


def test_get_job_counts_live_endpoints_and_sums_their_failures(harness):
    job_id = new_job(harness.a)
    every_minute = new_endpoint(harness.a, job_id, interval_ms=60_000, name="every minute")
    every_90s = new_endpoint(harness.a, job_id, interval_ms=90_000, name="every 90 s")
    new_endpoint(harness.a, job_id, interval_ms=3_600_000, name="hourly")

    harness.fire(every_minute, status="FAILURE", http_status=500)  # 10:01:00, next 10:03:00
    harness.fire(every_90s, status="TIMEOUT", http_status=0)  # 10:01:30, next 10:04:30
    harness.fire(every_minute, status="FAILURE", http_status=502)  # 10:03:00

    job = get_job(harness.a, job_id)
    assert job.endpoint_count == 3
    assert job.failure_count == 3

    harness.a.DeleteEndpoint(pb.DeleteEndpointRequest(endpoint_id=every_minute, reason="retired"))
    job = get_job(harness.a, job_id)
    assert job.endpoint_count == 2
    assert job.failure_count == 1


# ListJobs


def test_list_jobs_lists_newest_first_with_endpoint_counts(harness):
    oldest, middle, newest = jobs_in_order(harness, ["oldest", "middle", "newest"])
    new_endpoint(harness.a, middle, name="one")
    new_endpoint(harness.a, middle, name="two")

    page = list_jobs(harness.a)

    assert [j.job_id for j in page.jobs] == [newest, middle, oldest]
    assert [j.name for j in page.jobs] == ["newest", "middle", "oldest"]
    assert [j.endpoint_count for j in page.jobs] == [0, 2, 0]
    assert all(j.status == ACTIVE for j in page.jobs)
    assert all(dt(j.last_run_at) is None for j in page.jobs)
    assert page.next_page_token == ""


def test_list_jobs_shows_when_an_endpoint_of_the_job_last_ran(harness):
    ran, idle = jobs_in_order(harness, ["ran", "idle"])
    endpoint_id = new_endpoint(harness.a, ran)
    run_id = harness.fire(endpoint_id, duration_ms=0)
    run = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run

    rows = {j.job_id: j for j in list_jobs(harness.a).jobs}

    assert dt(rows[ran].last_run_at) == dt(run.started_at)
    assert dt(rows[idle].last_run_at) is None


def test_list_jobs_pages_through_every_job_once(harness):
    created = jobs_in_order(harness, [f"job {n}" for n in range(5)])

    seen, token, pages = [], "", 0
    while True:
        page = list_jobs(harness.a, page_size=2, page_token=token)
        assert len(page.jobs) <= 2
        seen += [j.job_id for j in page.jobs]
        pages += 1
        token = page.next_page_token
        if not token:
            break

    assert seen == list(reversed(created))
    assert pages == 3


def test_list_jobs_default_page_holds_fifty(harness):
    for n in range(51):
        new_job(harness.a, f"job {n}")

    first = list_jobs(harness.a)
    second = list_jobs(harness.a, page_token=first.next_page_token)

    assert len(first.jobs) == 50
    assert first.next_page_token
    assert len(second.jobs) == 1
    assert second.next_page_token == ""


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(pb.JOB_STATUS_UNSPECIFIED, ["live", "archived"], id="all"),
        pytest.param(ACTIVE, ["live"], id="active"),
        pytest.param(ARCHIVED, ["archived"], id="archived"),
    ],
)
def test_list_jobs_filters_by_status(harness, status, expected):
    archived, live = jobs_in_order(harness, ["archived", "live"])
    harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=archived, reason="campaign over"))
    ids = {"archived": archived, "live": live}

    page = list_jobs(harness.a, status=status)

    assert [j.job_id for j in page.jobs] == [ids[name] for name in expected]
    assert {j.job_id: j.status for j in page.jobs} == {
        ids[name]: (ARCHIVED if name == "archived" else ACTIVE) for name in expected
    }


def test_list_jobs_of_a_tenant_without_jobs_is_empty(harness):
    page = list_jobs(harness.b)

    assert list(page.jobs) == []
    assert page.next_page_token == ""


# UpdateJob


def test_update_job_renames_and_keeps_the_description(harness):
    job_id = new_job(harness.a, "Black Friday", "flash sale monitors")
    created_at = harness.clock.now()
    harness.clock.advance(minutes=5)

    response = harness.a.UpdateJob(pb.UpdateJobRequest(job_id=job_id, name="Cyber Monday", reason="renamed"))

    assert dt(response.updated_at) == harness.clock.now()
    job = get_job(harness.a, job_id)
    assert job.name == "Cyber Monday"
    assert job.description == "flash sale monitors"
    assert dt(job.updated_at) == harness.clock.now()
    assert dt(job.created_at) == created_at


def test_update_job_changes_the_description_and_keeps_the_name(harness):
    job_id = new_job(harness.a, "Black Friday", "old text")
    harness.clock.advance(seconds=30)

    response = harness.a.UpdateJob(pb.UpdateJobRequest(job_id=job_id, description="new text"))

    assert dt(response.updated_at) == harness.clock.now()
    job = get_job(harness.a, job_id)
    assert (job.name, job.description) == ("Black Friday", "new text")


def test_update_job_can_clear_the_description(harness):
    job_id = new_job(harness.a, "Black Friday", "to be removed")

    harness.a.UpdateJob(pb.UpdateJobRequest(job_id=job_id, description=""))

    assert get_job(harness.a, job_id).description == ""


def test_renamed_job_shows_its_new_name_in_the_list(harness):
    job_id = new_job(harness.a, "Black Friday")

    harness.a.UpdateJob(pb.UpdateJobRequest(job_id=job_id, name="Holiday Season"))

    assert [j.name for j in list_jobs(harness.a).jobs] == ["Holiday Season"]


# ArchiveJob


def test_archive_job_marks_it_archived_and_keeps_it_readable(harness):
    job_id = new_job(harness.a, "Spring Campaign", "over")
    new_endpoint(harness.a, job_id)
    harness.clock.advance(hours=2)

    response = harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=job_id, reason="campaign ended"))

    assert dt(response.archived_at) == harness.clock.now()
    job = get_job(harness.a, job_id)
    assert job.status == ARCHIVED
    assert dt(job.archived_at) == harness.clock.now()
    assert (job.name, job.description) == ("Spring Campaign", "over")


def test_archive_job_twice_returns_the_original_archive_time(harness):
    job_id = new_job(harness.a)
    first = harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=job_id, reason="done"))
    harness.clock.advance(hours=1)

    second = harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=job_id, reason="done again"))

    assert dt(second.archived_at) == dt(first.archived_at) == harness.clock.now() - timedelta(hours=1)
    assert dt(get_job(harness.a, job_id).archived_at) == dt(first.archived_at)


def test_endpoints_of_an_archived_job_stop_firing(harness):
    archived_job = new_job(harness.a, "archived")
    live_job = new_job(harness.a, "live")
    silenced = new_endpoint(harness.a, archived_job, interval_ms=60_000)
    live = new_endpoint(harness.a, live_job, interval_ms=60_000)
    harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=archived_job, reason="campaign ended"))

    harness.fire(live)  # 10:01:00, when the archived job's endpoint would also have been due
    harness.fire(live)

    runs = harness.a.ListRuns(pb.ListRunsRequest(job_id=archived_job))
    assert runs.total == 0
    rows = harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=archived_job)).endpoints
    assert [r.endpoint_id for r in rows] == [silenced]
    assert dt(rows[0].next_run_at) is None
