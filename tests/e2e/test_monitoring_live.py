"""The alert rules and the dashboard against a live scrape: every metric a rule or a panel names is served by the
service whose job it selects (histograms and counters by their _bucket, _count, _total series), so no alert or
panel stays silent because a name is wrong."""

from __future__ import annotations

import pytest
import yaml

from pacer.control.v1 import control_service_pb2 as pb
from tests.deploy.manifests import ALERTS, JOBS, SYNTHETIC, dashboard_expressions, jobs_named, promql_metrics, rules
from tests.e2e.test_metrics import METADATA_URL, Scrape, add, executor_ready, successes
from tests.support.polling import wait_for
from tests.support.stack import Stack
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e

SERVICE_OF_JOB = {"pacer-control": "control", "pacer-scheduler": "scheduler", "pacer-executor": "executor"}


def expressions() -> list[tuple[str, str]]:
    alerts = [(f"alert {rule['alert']}", rule["expr"]) for rule in rules(yaml.safe_load(ALERTS.read_text()))]
    return alerts + [(f"panel {title}", expr) for title, expr in dashboard_expressions()]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_metric_of_the_rules_and_dashboard_is_in_a_live_scrape_of_its_job(
    stack: Stack, target: HttpTarget
) -> None:
    executor_ready(stack)
    job_id = stack.job("live")
    endpoint_id = add(stack, job_id, "live", target.url("/live"))
    # Labelled series appear once something is counted: a refused run gives the egress refusals their series.
    blocked = add(stack, job_id, "metadata", METADATA_URL)
    wait_for(lambda: successes(stack, endpoint_id) >= 2, 20, "two successful runs")
    wait_for(lambda: any(r.status == pb.RUN_STATUS_BLOCKED for r in stack.runs(blocked)), 10, "a blocked run")
    served = {
        job: {sample.name for sample in Scrape(stack.metrics_addrs[service]).samples}
        for job, service in SERVICE_OF_JOB.items()
    }

    checked = 0
    for where, expression in expressions():
        jobs = jobs_named(expression) or set(JOBS)
        names = promql_metrics(expression) - SYNTHETIC
        # One job selected: that service must serve the names; several (or none): one of them.
        serving = set().union(*(served[job] for job in jobs))
        assert names <= serving, f"{where}: {sorted(names - serving)} not served by {sorted(jobs)}"
        checked += len(names)
    assert checked >= 20
