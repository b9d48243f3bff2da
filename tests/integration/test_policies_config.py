"""Endpoint policies as configuration: set on AddEndpointToJob, replaced by UpdateEndpointConfig, shown by
ListJobEndpoints exactly as sent; bad rules are INVALID_ARGUMENT naming the field at fault."""

from __future__ import annotations

import grpc
import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import status_of, violations

URL = "https://shop.example.com/stock"
EVERY_MINUTE = pb.Baseline(interval_ms=60_000)


def rule(name: str = "surge", when: str = "has(body.ratio) && body.ratio > 5.0", **fields) -> pb.Policy:
    then = fields.pop(
        "then",
        [
            pb.PolicyAction(
                endpoint="inventory", interval_hint=pb.PolicyIntervalHint(interval_ms=30_000, ttl_ms=3_600_000)
            )
        ],
    )
    return pb.Policy(name=name, when=when, then=then, **fields)


def add(client, job_id: str, name: str, policies=()) -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name=name, url=URL, baseline=EVERY_MINUTE, policies=list(policies)
    )
    return client.AddEndpointToJob(request).endpoint_id


def listed(client, job_id: str, endpoint_id: str) -> pb.EndpointSummary:
    endpoints = client.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints
    return next(e for e in endpoints if e.endpoint_id == endpoint_id)


@pytest.fixture
def job_id(harness) -> str:
    return harness.a.CreateJob(pb.CreateJobRequest(name="Flash sale")).job_id


def refused(call, request) -> dict[str, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    assert status_of(caught.value) == grpc.StatusCode.INVALID_ARGUMENT
    return violations(caught.value)


def test_rules_round_trip_through_list_job_endpoints(harness, job_id):
    every_kind = [
        pb.PolicyAction(interval_hint=pb.PolicyIntervalHint(interval_ms=5_000)),
        pb.PolicyAction(endpoint="inventory", one_shot=pb.PolicyOneShot(delay_ms=2_000)),
        pb.PolicyAction(endpoint="inventory", pause=pb.PolicyPause(for_ms=600_000)),
        pb.PolicyAction(endpoint="inventory", resume=pb.PolicyResume()),
        pb.PolicyAction(clear_hints=pb.PolicyClearHints()),
    ]
    sent = [
        rule(cooldown_ms=300_000),
        rule("failing", "run.status != 'SUCCESS' && streak >= 3", then=every_kind),
        rule("recovered", "run.status == 'SUCCESS'", then=[pb.PolicyAction(reset_failures=pb.PolicyResetFailures())]),
    ]
    endpoint_id = add(harness.a, job_id, "stock", sent)

    assert list(listed(harness.a, job_id, endpoint_id).policies) == sent


def test_update_replaces_every_rule_and_an_empty_set_removes_them(harness, job_id):
    endpoint_id = add(harness.a, job_id, "stock", [rule("one"), rule("two")])

    harness.a.UpdateEndpointConfig(
        pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, policies=pb.Policies(rules=[rule("three")]))
    )
    assert [p.name for p in listed(harness.a, job_id, endpoint_id).policies] == ["three"]

    harness.a.UpdateEndpointConfig(pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, name="stock-2"))
    assert [p.name for p in listed(harness.a, job_id, endpoint_id).policies] == ["three"]  # unset: kept

    harness.a.UpdateEndpointConfig(pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, policies=pb.Policies()))
    assert list(listed(harness.a, job_id, endpoint_id).policies) == []


def test_a_syntax_error_names_the_condition_with_the_compilers_message(harness, job_id):
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name="stock", url=URL, baseline=EVERY_MINUTE, policies=[rule(), rule("bad", "body.ratio >")]
    )

    found = refused(harness.a.AddEndpointToJob, request)

    assert list(found) == ["policies[1].when"]
    assert "Syntax error" in found["policies[1].when"]


def test_update_names_the_rule_inside_the_policies_wrapper(harness, job_id):
    endpoint_id = add(harness.a, job_id, "stock")
    request = pb.UpdateEndpointConfigRequest(
        endpoint_id=endpoint_id, policies=pb.Policies(rules=[rule("bad", "run.status ==")])
    )

    assert list(refused(harness.a.UpdateEndpointConfig, request)) == ["policies.rules[0].when"]


@pytest.mark.parametrize(
    ("when", "says"),
    [
        ("secrets.key == 'x'", "may read only"),
        ("run.duration_ms + 1", "must yield a bool"),
        ("'text'", "must yield a bool"),
    ],
)
def test_conditions_that_read_unknown_names_or_yield_no_bool_are_refused(harness, job_id, when, says):
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name="stock", url=URL, baseline=EVERY_MINUTE, policies=[rule(when=when)]
    )

    assert says in refused(harness.a.AddEndpointToJob, request)["policies[0].when"]


def test_a_comprehension_variable_is_not_an_unknown_name(harness, job_id):
    endpoint_id = add(harness.a, job_id, "stock", [rule(when="has(body.items) && body.items.exists(i, i.stock < 3)")])

    assert listed(harness.a, job_id, endpoint_id).policies[0].when.startswith("has(body.items)")


def test_limits_names_and_actions_are_checked_each_at_its_field(harness, job_id):
    policies = [
        rule("Bad Name"),
        rule("dup"),
        rule("dup", cooldown_ms=-1),
        rule("long", "true || " * 200 + "true"),
        rule("empty", then=[]),
        rule("unset", then=[pb.PolicyAction(endpoint="x")]),
    ]
    request = pb.AddEndpointToJobRequest(job_id=job_id, name="stock", url=URL, baseline=EVERY_MINUTE, policies=policies)
    request.policies[5].then[0].Clear()
    request.policies[5].then[0].pause.for_ms = 10  # below the 1 s floor of a timed pause

    found = refused(harness.a.AddEndpointToJob, request)

    assert set(found) == {
        "policies[0].name",
        "policies[2].name",
        "policies[2].cooldown_ms",
        "policies[3].when",
        "policies[4].then",
        "policies[5].then[0].pause.for_ms",
    }


def test_an_action_without_a_kind_is_refused(harness, job_id):
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name="stock", url=URL, baseline=EVERY_MINUTE, policies=[rule(then=[pb.PolicyAction()])]
    )

    assert list(refused(harness.a.AddEndpointToJob, request)) == ["policies[0].then[0]"]


def test_at_most_ten_rules_and_five_actions(harness, job_id):
    six = [pb.PolicyAction(clear_hints=pb.PolicyClearHints())] * 6
    too_many = [rule(f"r{i}") for i in range(11)]
    for policies, field in ((too_many, "policies"), ([rule(then=six)], "policies[0].then")):
        request = pb.AddEndpointToJobRequest(
            job_id=job_id, name="stock", url=URL, baseline=EVERY_MINUTE, policies=policies
        )
        assert list(refused(harness.a.AddEndpointToJob, request)) == [field]
    ten = add(harness.a, job_id, "ten", [rule(f"r{i}", then=six[:5]) for i in range(10)])
    assert len(listed(harness.a, job_id, ten).policies) == 10


def test_interval_hints_respect_the_service_floor_and_ttl_range(harness, job_id):
    then = [
        pb.PolicyAction(interval_hint=pb.PolicyIntervalHint(interval_ms=10)),
        pb.PolicyAction(interval_hint=pb.PolicyIntervalHint(interval_ms=5_000, ttl_ms=1_000)),
        pb.PolicyAction(one_shot=pb.PolicyOneShot(delay_ms=86_400_001)),
    ]
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name="stock", url=URL, baseline=EVERY_MINUTE, policies=[rule(then=then)]
    )

    assert set(refused(harness.a.AddEndpointToJob, request)) == {
        "policies[0].then[0].interval_hint.interval_ms",
        "policies[0].then[1].interval_hint.ttl_ms",
        "policies[0].then[2].one_shot.delay_ms",
    }
