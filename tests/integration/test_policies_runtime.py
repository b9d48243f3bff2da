"""Endpoint policies at run time: a recorded run's rules are evaluated after its batch commits, and the ones that hold
act through the steering actions (audit actor `policy:<rule>`, reason quoting the condition), visible in
GetRunDetails, SummarizeEndpointHealth and the metrics. A failing or runaway condition is recorded, never a failed
batch; a cooldown holds."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.retries import Attempt
from tests.support.harness import dt
from tests.support.polling import wait_for

URL = "https://shop.example.com/stock"
MINUTE_MS = 60_000
SURGE = "has(body.ratio) && body.ratio > 5.0"
TIGHTEN = pb.PolicyAction(
    endpoint="inventory", interval_hint=pb.PolicyIntervalHint(interval_ms=5_000, ttl_ms=3_600_000)
)


def add(client, job_id: str, name: str, policies=(), interval_ms: int = MINUTE_MS) -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name=name, url=URL, baseline=pb.Baseline(interval_ms=interval_ms), policies=list(policies)
    )
    return client.AddEndpointToJob(request).endpoint_id


def listed(client, job_id: str, endpoint_id: str) -> pb.EndpointSummary:
    endpoints = client.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints
    return next(e for e in endpoints if e.endpoint_id == endpoint_id)


def firings(client, run_id: str, count: int = 1) -> list[pb.PolicyFiring]:
    """The run's firings, once `count` of them are recorded."""
    found: list[pb.PolicyFiring] = []

    def recorded() -> bool:
        found[:] = client.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run.policy_firings
        return len(found) >= count

    wait_for(recorded, 10, f"{count} firing(s) on {run_id}")
    return found


@pytest.fixture
def job_id(harness) -> str:
    return harness.a.CreateJob(pb.CreateJobRequest(name="Flash sale")).job_id


def test_a_rule_that_holds_tightens_a_sibling_at_once_and_audits_it_as_the_rule(harness, job_id):
    inventory = add(harness.a, job_id, "inventory", interval_ms=10 * MINUTE_MS)
    rule = pb.Policy(name="surge", when=SURGE, then=[TIGHTEN])
    traffic = add(harness.a, job_id, "traffic", [rule])
    before = dt(listed(harness.a, job_id, inventory).next_run_at)

    run_id = harness.fire(traffic, response_body=json.dumps({"ratio": 7.5}))

    (firing,) = firings(harness.a, run_id)
    assert firing.rule == "surge"
    assert firing.outcome == pb.POLICY_OUTCOME_FIRED
    assert list(firing.effects) == ["interval hint 5s for 1h on inventory"]
    after = listed(harness.a, job_id, inventory)
    assert dt(after.next_run_at) < before
    assert dt(after.next_run_at) <= harness.clock.now() + timedelta(seconds=5)
    assert after.next_run_source == pb.RUN_SOURCE_AI_INTERVAL
    records = harness.a.ListAuditRecords(pb.ListAuditRecordsRequest(endpoint_id=inventory)).records
    hint = next(r for r in records if r.action == "ApplyIntervalHint")
    assert hint.actor == "policy:surge"
    assert SURGE in hint.reason
    assert harness.registry.get_sample_value("pacer_policy_evaluations_total", {"outcome": "fired"}) == 1


def test_a_condition_that_does_not_hold_does_nothing_and_records_nothing(harness, job_id):
    inventory = add(harness.a, job_id, "inventory", interval_ms=10 * MINUTE_MS)
    watcher = add(harness.a, job_id, "traffic", [pb.Policy(name="surge", when=SURGE, then=[TIGHTEN])])
    marker = add(
        harness.a,
        job_id,
        "marker",
        [pb.Policy(name="always", when="true", then=[pb.PolicyAction(clear_hints=pb.PolicyClearHints())])],
    )
    before = listed(harness.a, job_id, inventory).next_run_at

    quiet = harness.fire(watcher, response_body=json.dumps({"ratio": 1.0}))
    firings(harness.a, harness.fire(marker))  # evaluated in order: once this is recorded, the first one was too

    assert list(harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=quiet)).run.policy_firings) == []
    assert listed(harness.a, job_id, inventory).next_run_at == before


def test_a_failing_condition_is_recorded_and_the_batch_still_settles(harness, job_id):
    endpoint = add(harness.a, job_id, "traffic", [pb.Policy(name="strict", when="body.ratio > 5.0", then=[TIGHTEN])])

    run_id = harness.fire(endpoint, response_body="not json")  # body is null: the condition cannot be evaluated

    run = harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=run_id)).run
    assert run.status == pb.RUN_STATUS_SUCCESS  # settled with its batch, before any rule ran
    (firing,) = firings(harness.a, run_id)
    assert firing.outcome == pb.POLICY_OUTCOME_ERROR
    assert firing.error_message
    assert dt(listed(harness.a, job_id, endpoint).next_run_at) == harness.clock.now() + timedelta(minutes=1)
    assert harness.registry.get_sample_value("pacer_policy_evaluations_total", {"outcome": "error"}) == 1


def test_a_runaway_condition_is_stopped_at_its_deadline_and_recorded(harness, job_id):
    add(harness.a, job_id, "inventory", interval_ms=10 * MINUTE_MS)
    runaway = "has(body.xs) && body.xs.all(a, body.xs.all(b, body.xs.all(c, a + b + c >= 0)))"
    endpoint = add(harness.a, job_id, "traffic", [pb.Policy(name="heavy", when=runaway, then=[TIGHTEN])])
    started = time.monotonic()

    run_id = harness.fire(endpoint, response_body=json.dumps({"xs": list(range(2000))}))

    (firing,) = firings(harness.a, run_id)
    assert firing.outcome == pb.POLICY_OUTCOME_ERROR
    assert firing.error_message == "took longer than 250 ms"
    assert time.monotonic() - started < 8
    # The next run's rules are evaluated by a fresh evaluator.
    (after,) = firings(harness.a, harness.fire(endpoint, response_body=json.dumps({"xs": [1]})))
    assert after.outcome == pb.POLICY_OUTCOME_FIRED


def test_the_cooldown_holds_and_health_counts_each_outcome(harness, job_id):
    add(harness.a, job_id, "inventory", interval_ms=10 * MINUTE_MS)
    rule = pb.Policy(name="surge", when=SURGE, then=[TIGHTEN], cooldown_ms=150_000)
    traffic = add(harness.a, job_id, "traffic", [rule])
    body = json.dumps({"ratio": 9})

    outcomes = [firings(harness.a, harness.fire(traffic, response_body=body))[0].outcome for _ in range(4)]

    # Runs a minute apart: fired at 0, skipped at +1 and +2 min (within 150 s), fired again at +3 min.
    assert outcomes == [
        pb.POLICY_OUTCOME_FIRED,
        pb.POLICY_OUTCOME_SKIPPED_COOLDOWN,
        pb.POLICY_OUTCOME_SKIPPED_COOLDOWN,
        pb.POLICY_OUTCOME_FIRED,
    ]
    health = harness.a.SummarizeEndpointHealth(pb.SummarizeEndpointHealthRequest(endpoint_id=traffic))
    assert list(health.policy_counts) == [pb.PolicyCount(rule="surge", fired=2, skipped_cooldown=2)]
    hints = harness.a.ListAuditRecords(pb.ListAuditRecordsRequest(job_id=job_id)).records
    assert sum(r.action == "ApplyIntervalHint" for r in hints) == 2


def test_a_streak_rule_fires_on_the_third_failure_in_a_row(harness, job_id):
    then = [pb.PolicyAction(pause=pb.PolicyPause(for_ms=3_600_000))]
    rule = pb.Policy(name="give-up", when="run.status != 'SUCCESS' && streak >= 3", then=then)
    endpoint = add(harness.a, job_id, "flaky", [rule])
    harness.fire(endpoint, status="FAILURE", http_status=500)
    marker = harness.fire(endpoint, status="FAILURE", http_status=500)

    run_id = harness.fire(endpoint, status="FAILURE", http_status=500)

    (firing,) = firings(harness.a, run_id)
    assert list(firing.effects) == ["pause for 1h on flaky"]
    assert listed(harness.a, job_id, endpoint).paused
    assert list(harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=marker)).run.policy_firings) == []


def test_a_rule_sees_how_many_attempts_a_retried_run_made(harness, job_id):
    then = [pb.PolicyAction(interval_hint=pb.PolicyIntervalHint(interval_ms=10 * MINUTE_MS, ttl_ms=3_600_000))]
    rule = pb.Policy(name="flaky-upstream", when="run.status == 'SUCCESS' && run.attempts > 1", then=then)
    endpoint = add(harness.a, job_id, "upstream", [rule])
    first = harness.fire(endpoint)
    now = harness.clock.now()
    retried = (Attempt(1, "FAILURE", now, 20, 503, "HTTP 503"), Attempt(2, "SUCCESS", now, 20, 200))

    run_id = harness.fire(endpoint, attempts=retried)

    (firing,) = firings(harness.a, run_id)
    assert list(firing.effects) == ["interval hint 10m for 1h on upstream"]
    assert list(harness.a.GetRunDetails(pb.GetRunDetailsRequest(run_id=first)).run.policy_firings) == []


def test_a_missing_sibling_is_an_error_and_the_actions_before_it_stand(harness, job_id):
    then = [
        pb.PolicyAction(reset_failures=pb.PolicyResetFailures()),
        pb.PolicyAction(endpoint="gone", resume=pb.PolicyResume()),
    ]
    endpoint = add(harness.a, job_id, "traffic", [pb.Policy(name="heal", when="run.status == 'FAILURE'", then=then)])

    run_id = harness.fire(endpoint, status="FAILURE", http_status=503)

    (firing,) = firings(harness.a, run_id)
    assert firing.outcome == pb.POLICY_OUTCOME_ERROR
    assert list(firing.effects) == ["reset failures on traffic"]
    assert "no endpoint named 'gone'" in firing.error_message
    assert listed(harness.a, job_id, endpoint).failure_count == 0


def test_a_sibling_is_looked_for_in_the_rules_own_job_and_tenant_only(harness, job_id):
    other_job = harness.b.CreateJob(pb.CreateJobRequest(name="Other tenant")).job_id
    theirs = add(harness.b, other_job, "inventory", interval_ms=10 * MINUTE_MS)
    before = listed(harness.b, other_job, theirs).next_run_at
    traffic = add(harness.a, job_id, "traffic", [pb.Policy(name="surge", when="true", then=[TIGHTEN])])

    (firing,) = firings(harness.a, harness.fire(traffic))

    assert firing.outcome == pb.POLICY_OUTCOME_ERROR
    assert "no endpoint named 'inventory'" in firing.error_message
    assert listed(harness.b, other_job, theirs).next_run_at == before
