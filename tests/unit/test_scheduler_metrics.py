"""The scheduler's per-tenant and opt-in per-job lateness: bounded series an operator can alert on per tenant."""

from __future__ import annotations

from pacer_scheduler.metrics import SchedulerMetrics


def test_lateness_is_recorded_by_tenant_and_only_named_jobs_get_a_job_label() -> None:
    metrics = SchedulerMetrics(late_threshold_s=1.0, measured_jobs=frozenset({"job_watched"}))

    metrics.dispatched_late(0.004, "ten_a", "job_watched")
    metrics.dispatched_late(2.5, "ten_a", "job_other")
    metrics.dispatched_late(-0.001, "ten_b", "job_other")  # early: counted as on time

    sample = metrics.registry.get_sample_value
    assert sample("pacer_tenant_dispatch_lateness_seconds_count", {"tenant": "ten_a"}) == 2
    assert sample("pacer_tenant_dispatch_lateness_seconds_count", {"tenant": "ten_b"}) == 1
    assert sample("pacer_runs_started_late_total", {"tenant": "ten_a"}) == 1
    # A tenant with runs but none late is exported at 0, so the alert's increase() counts its first late run.
    assert sample("pacer_runs_started_late_total", {"tenant": "ten_b"}) == 0
    assert sample("pacer_runs_started_late_total", {"tenant": "ten_c"}) is None
    job = {"tenant": "ten_a", "job": "job_watched"}
    assert sample("pacer_job_dispatch_lateness_seconds_count", job) == 1
    assert sample("pacer_job_dispatch_lateness_seconds_count", {**job, "job": "job_other"}) is None
    assert sample("pacer_runs_dispatched_total") == 3
