"""Endpoint policies end to end: a real target's JSON body changes, the rule watching it fires when its run is
recorded, and the sibling it names starts within about a second; the cooldown keeps it from firing again."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import dt
from tests.support.polling import wait_for
from tests.support.stack import Stack
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e

SURGE = "has(body.ratio) && body.ratio > 5.0"


def add(stack: Stack, job_id: str, target: HttpTarget, name: str, interval_ms: int, policies=()) -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id,
        name=name,
        url=target.url(f"/{name}"),
        baseline=pb.Baseline(interval_ms=interval_ms),
        policies=list(policies),
    )
    return str(stack.client.AddEndpointToJob(request).endpoint_id)


def details(stack: Stack, endpoint_id: str) -> list[pb.Run]:
    """The endpoint's finished runs, oldest first, with their rules' outcomes."""
    summaries = [r for r in stack.runs(endpoint_id) if r.status != pb.RUN_STATUS_RUNNING]
    found = [stack.client.GetRunDetails(pb.GetRunDetailsRequest(run_id=r.run_id)).run for r in summaries]
    return sorted(found, key=lambda run: dt(run.scheduled_for))


def test_a_body_change_starts_the_sibling_within_a_second_and_the_cooldown_holds(
    stack: Stack, target: HttpTarget
) -> None:
    job_id = stack.job("flash-sale")
    target.respond("/traffic", json_body=json.dumps({"ratio": 1.0}))
    wake = pb.PolicyAction(endpoint="inventory", one_shot=pb.PolicyOneShot())
    rule = pb.Policy(name="surge", when=SURGE, then=[wake], cooldown_ms=60_000)
    add(stack, job_id, target, "inventory", interval_ms=3_600_000)
    traffic = add(stack, job_id, target, "traffic", interval_ms=1000, policies=[rule])
    wait_for(lambda: len(details(stack, traffic)) >= 2, 15, "two calm runs")
    assert target.hits_on("/inventory") == []

    target.respond("/traffic", json_body=json.dumps({"ratio": 7.5}))
    wait_for(lambda: target.hits_on("/inventory"), 15, "the sibling's run")

    fired = [r for r in details(stack, traffic) if [f.outcome for f in r.policy_firings] == [pb.POLICY_OUTCOME_FIRED]]
    assert len(fired) == 1
    started = target.hits_on("/inventory")[0].received_at
    assert started - dt(fired[0].finished_at) < timedelta(milliseconds=1500)
    assert list(fired[0].policy_firings[0].effects) == ["one-shot run now on inventory"]

    surging = len(details(stack, traffic))
    wait_for(lambda: len(details(stack, traffic)) >= surging + 3, 15, "three more surging runs")
    later = [r for r in details(stack, traffic) if r.policy_firings][1:]
    assert later
    assert all([f.outcome for f in r.policy_firings] == [pb.POLICY_OUTCOME_SKIPPED_COOLDOWN] for r in later)
    assert len(target.hits_on("/inventory")) == 1
