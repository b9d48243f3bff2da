"""`pacerctl apply` without a server: reading and validating the file (every problem with its path), the diff between
the file and what Pacer holds, the requests it turns into, and how the plan is shown."""

from __future__ import annotations

import io
import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from examples.flash_sale_policies import MONITOR
from examples.flash_sale_policies import policies as flash_sale_policies
from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli.apply import IN_FLIGHT, execute, reason_for, waves
from pacer_cli.commands import Session
from pacer_cli.manifest import (
    DEFAULT_TIMEOUT_MS,
    ActionSpec,
    ClearHints,
    Cron,
    EndpointSpec,
    Every,
    IntervalHint,
    JobSpec,
    Manifest,
    ManifestError,
    OneShot,
    Pause,
    PolicySpec,
    Problem,
    ResetFailures,
    Resume,
    load,
    parse,
)
from pacer_cli.reconcile import (
    Conflict,
    CreateEndpoint,
    CreateJob,
    FieldChange,
    ObservedJob,
    Plan,
    Untracked,
    UpdateEndpoint,
    UpdateJob,
    add_request,
    endpoint_fields,
    outcome_line,
    plan,
    plan_json,
    plan_lines,
    policy_message,
    update_request,
)
from pacer_common.client import ApiError
from pacer_common.digest import config_digest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "use-cases"
REASON = "pacerctl apply test.yaml"


def problems(document: object) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        parse(yaml.safe_dump(document), "test.yaml")
    assert caught.value.source == "test.yaml"
    return list(caught.value.problems)


def one_endpoint(**keys: Any) -> dict[str, Any]:
    """A document with one job and one endpoint; `keys` replace the endpoint's (None removes one)."""
    endpoint = {"name": "probe", "url": "https://api.example.com/health", "every": "1m"} | keys
    return {"jobs": [{"name": "Job", "endpoints": [{k: v for k, v in endpoint.items() if v is not None}]}]}


def only_endpoint(manifest: Manifest) -> EndpointSpec:
    return manifest.jobs[0].endpoints[0]


# --- reading the file ------------------------------------------------------------------------------------------------


def secrets_for(path: Path) -> dict[str, str]:
    """A value for every `${VARIABLE}` the file names, as the person applying it would export."""
    return {name: f"{name}-0123456789abcdef0123456789" for name in re.findall(r"\$\{(\w+)\}", path.read_text())}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_is_a_valid_file(path: Path) -> None:
    manifest = load(str(path), secrets_for(path))
    raw = yaml.safe_load(path.read_text())
    assert [job.name for job in manifest.jobs] == [job["name"] for job in raw["jobs"]]
    assert [len(job.endpoints) for job in manifest.jobs] == [len(job["endpoints"]) for job in raw["jobs"]]


def test_an_endpoint_gets_every_default_and_the_file_wording_of_its_interval() -> None:
    endpoint = only_endpoint(parse(yaml.safe_dump(one_endpoint(every="60s")), "f"))
    assert endpoint == EndpointSpec(
        path="jobs[0].endpoints[0]",
        name="probe",
        url="https://api.example.com/health",
        schedule=Every(60_000, "60s"),
        method="GET",
        headers={},
        body="",
        min_interval_ms=0,
        max_interval_ms=0,
        timeout_ms=DEFAULT_TIMEOUT_MS,
        paused=False,
    )


def test_the_flash_sale_example_reads_as_written() -> None:
    jobs = load(str(EXAMPLES / "flash-sale.yaml"), {}).jobs
    endpoints = {e.name: e for e in jobs[0].endpoints}
    assert jobs[0].name == "Black Friday Flash Sale"
    assert jobs[0].description.startswith("Multi-tier monitoring")
    traffic = endpoints["traffic-monitor"]
    assert (traffic.schedule, traffic.min_interval_ms, traffic.max_interval_ms) == (
        Every(60_000, "60s"),
        20_000,
        300_000,
    )
    assert not traffic.paused
    cache = endpoints["cache-warm-up"]
    assert (cache.method, cache.min_interval_ms, cache.max_interval_ms, cache.paused) == ("POST", 600_000, 0, True)


def test_the_flash_sale_examples_rules_are_the_ones_the_demo_and_the_scenario_play() -> None:
    traffic = next(e for e in load(str(EXAMPLES / "flash-sale.yaml"), {}).jobs[0].endpoints if e.name == MONITOR)
    assert [policy_message(rule) for rule in traffic.policies] == flash_sale_policies()


def test_every_key_is_read() -> None:
    document = one_endpoint(
        every=None,
        cron="0 9 * * MON",
        timezone="America/New_York",
        method="post",
        headers={"Authorization": "Bearer x", "X-Team": "sre"},
        body='{"a": 1}',
        clamp={"min": "10m", "max": "1h30m"},
        timeout="2m",
        paused=True,
    )
    document["jobs"][0]["description"] = "about"
    manifest = parse(yaml.safe_dump(document), "f")
    assert manifest.jobs[0].description == "about"
    endpoint = only_endpoint(manifest)
    assert endpoint.schedule == Cron("0 9 * * MON", "America/New_York")
    assert endpoint.method == "POST"
    assert endpoint.headers == {"Authorization": "Bearer x", "X-Team": "sre"}
    assert endpoint.body == '{"a": 1}'
    assert (endpoint.min_interval_ms, endpoint.max_interval_ms) == (600_000, 5_400_000)
    assert endpoint.timeout_ms == 120_000
    assert endpoint.paused


def test_names_are_compared_without_surrounding_spaces() -> None:
    document = {"jobs": [{"name": " Job "}, {"name": "Job"}]}
    assert problems(document) == [Problem("jobs[1].name", "job name 'Job' is used twice (also jobs[0].name)")]


@pytest.mark.parametrize(
    ("keys", "path", "message"),
    [
        ({"colour": "red"}, "jobs[0].endpoints[0].colour", "unknown key; expected one of name, url, method"),
        ({"every": "5x"}, "jobs[0].endpoints[0].every", "invalid duration '5x': use a duration such as 500ms"),
        ({"every": 90}, "jobs[0].endpoints[0].every", "invalid duration '90'"),
        ({"every": "0"}, "jobs[0].endpoints[0].every", "must be longer than 0"),
        ({"every": True}, "jobs[0].endpoints[0].every", "must be a duration such as 500ms"),
        ({"every": None}, "jobs[0].endpoints[0]", "set exactly one of `every` or `cron`"),
        ({"cron": "* * * * *"}, "jobs[0].endpoints[0]", "set exactly one of `every` or `cron`"),
        ({"timezone": "UTC"}, "jobs[0].endpoints[0].timezone", "applies to `cron` only"),
        ({"url": "ftp://files"}, "jobs[0].endpoints[0].url", "must be an absolute http:// or https:// URL"),
        ({"url": "https://[::1"}, "jobs[0].endpoints[0].url", "is not a valid URL"),
        ({"url": None}, "jobs[0].endpoints[0].url", "required"),
        ({"name": None}, "jobs[0].endpoints[0].name", "required"),
        ({"name": "  "}, "jobs[0].endpoints[0].name", "must be 1 to 200 characters"),
        ({"name": 7}, "jobs[0].endpoints[0].name", "must be a string (quote it)"),
        ({"method": "FETCH"}, "jobs[0].endpoints[0].method", "must be one of GET, POST"),
        ({"headers": ["X-A: 1"]}, "jobs[0].endpoints[0].headers", "must be a mapping of header name to value"),
        ({"headers": {"X-Retry": 3}}, "jobs[0].endpoints[0].headers.X-Retry", "must be strings (quote them)"),
        ({"headers": {"X Team": "sre"}}, "jobs[0].endpoints[0].headers.X Team", "is not a valid header name"),
        (
            {"headers": {"X-Team": "a\r\nX-Evil: 1"}},
            "jobs[0].endpoints[0].headers.X-Team",
            "must not contain line breaks",
        ),
        ({"body": {"a": 1}}, "jobs[0].endpoints[0].body", "must be a string"),
        ({"clamp": {"min": "1h", "max": "1m"}}, "jobs[0].endpoints[0].clamp", "min must not exceed max"),
        ({"clamp": {"avg": "1m"}}, "jobs[0].endpoints[0].clamp.avg", "unknown key; expected one of min, max"),
        ({"clamp": {"min": "soon"}}, "jobs[0].endpoints[0].clamp.min", "invalid duration 'soon'"),
        ({"clamp": "10m"}, "jobs[0].endpoints[0].clamp", "must be a mapping with the keys min, max"),
        ({"timeout": "10m"}, "jobs[0].endpoints[0].timeout", "must be between 100ms and 5m"),
        ({"timeout": "0"}, "jobs[0].endpoints[0].timeout", "must be between 100ms and 5m"),
        ({"paused": "yes"}, "jobs[0].endpoints[0].paused", "must be true or false"),
    ],
)
def test_each_endpoint_problem_is_reported_at_its_path(keys: dict[str, Any], path: str, message: str) -> None:
    found = problems(one_endpoint(**keys))
    assert len(found) == 1, found
    assert found[0].path == path
    assert message in found[0].message


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        (None, "", "the file is empty"),
        (["a"], "", "must be a mapping with the keys jobs"),
        ({}, "jobs", "required"),
        ({"jobs": {"name": "x"}}, "jobs", "must be a list"),
        ({"jobs": [], "version": 2}, "version", "unknown key; expected one of jobs"),
        ({"jobs": ["x"]}, "jobs[0]", "must be a mapping with the keys name, description, endpoints"),
        ({"jobs": [{"name": "J", "endpoints": "none"}]}, "jobs[0].endpoints", "must be a list"),
        ({"jobs": [{"name": "J", "description": "d" * 2001}]}, "jobs[0].description", "at most 2000 characters"),
        ({"jobs": [{"name": "J" * 201}]}, "jobs[0].name", "must be 1 to 200 characters"),
    ],
)
def test_each_file_and_job_problem_is_reported_at_its_path(document: object, path: str, message: str) -> None:
    found = problems(document)
    assert len(found) == 1, found
    assert (found[0].path, message in found[0].message) == (path, True), found[0]


def test_a_duplicate_endpoint_name_is_reported_at_the_second_use() -> None:
    document = one_endpoint()
    document["jobs"][0]["endpoints"].append({"name": "probe", "url": "https://b.example.com", "every": "2m"})
    assert problems(document) == [
        Problem("jobs[0].endpoints[1].name", "endpoint name 'probe' is used twice (also jobs[0].endpoints[0].name)")
    ]


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    document = one_endpoint(every="5x", url="ftp://x", paused=1)
    assert [p.path for p in problems(document)] == [
        "jobs[0].endpoints[0].url",
        "jobs[0].endpoints[0].every",
        "jobs[0].endpoints[0].paused",
    ]


def test_the_same_name_in_two_jobs_is_fine_and_clamp_bounds_of_0_mean_none() -> None:
    document = one_endpoint(clamp={"min": 0, "max": "0"})
    document["jobs"].append({"name": "Other", "endpoints": document["jobs"][0]["endpoints"]})
    manifest = parse(yaml.safe_dump(document), "f")
    assert [(e.min_interval_ms, e.max_interval_ms) for job in manifest.jobs for e in job.endpoints] == [(0, 0)] * 2


def test_a_key_given_twice_is_an_error_with_its_line() -> None:
    text = "jobs:\n  - name: A\n    description: x\n    name: B\n"
    with pytest.raises(ManifestError) as caught:
        parse(text, "twice.yaml")
    assert caught.value.problems == (Problem("", "line 4, column 5: key 'name' given twice"),)


def test_yaml_anchors_and_merge_keys_still_work() -> None:
    merged = """
jobs:
  - name: J
    endpoints:
      - &probe {name: a, url: "https://a.example.com", every: 1m}
      - {<<: *probe, name: b}
"""
    names = [e.name for e in parse(merged, "f").jobs[0].endpoints]
    assert names == ["a", "b"]  # overriding a merged key is not giving it twice


def test_a_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ManifestError) as caught:
        parse("jobs:\n  - name: A\n   endpoints: [\n", "broken.yaml")
    (problem,) = caught.value.problems
    assert problem.path == ""
    assert problem.message.startswith("line 3, column 4: ")
    assert str(caught.value).startswith("broken.yaml: line 3")


def test_a_file_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read the file"):
        load(str(tmp_path / "missing.yaml"), {})
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00jobs")
    with pytest.raises(ManifestError, match="not UTF-8"):
        load(str(binary), {})


def test_the_audit_reason_names_the_file_without_its_folder() -> None:
    assert reason_for("examples/use-cases/flash-sale.yaml") == "pacerctl apply flash-sale.yaml"


# --- the diff --------------------------------------------------------------------------------------------------------


def spec(name: str = "probe", **fields: Any) -> EndpointSpec:
    values: dict[str, Any] = {"url": "https://api.example.com/health", "schedule": Every(60_000, "1m")} | fields
    return EndpointSpec(path="jobs[0].endpoints[0]", name=name, **values)


def job(*endpoints: EndpointSpec, name: str = "Job", description: str = "") -> JobSpec:
    return JobSpec("jobs[0]", name, description, endpoints)


def summary(endpoint: EndpointSpec, endpoint_id: str = "ep_1", **overrides: Any) -> pb.EndpointSummary:
    """What ListJobEndpoints returns for an endpoint created from `endpoint`, with `overrides` applied."""
    message = pb.EndpointSummary(
        endpoint_id=endpoint_id,
        name=endpoint.name,
        url=endpoint.url,
        method=endpoint.method,
        clamp=pb.Clamp(min_interval_ms=endpoint.min_interval_ms, max_interval_ms=endpoint.max_interval_ms),
        timeout_ms=endpoint.timeout_ms,
        config_digest=config_digest(endpoint.headers, endpoint.body),
        jitter_ms=endpoint.jitter_ms,
        signed=bool(endpoint.signing_secret),
    )
    add = add_request("job_1", endpoint, REASON)
    message.baseline.CopyFrom(add.baseline)
    message.policies.extend(add.policies)
    for field, value in overrides.items():
        if field == "policies":
            del message.policies[:]
            message.policies.extend(value)
        elif isinstance(value, pb.Baseline | pb.Clamp):
            getattr(message, field).CopyFrom(value)
        else:
            setattr(message, field, value)
    return message


def observed(
    spec_job: JobSpec, *endpoints: pb.EndpointSummary, description: str | None = None
) -> dict[str, ObservedJob]:
    held = spec_job.description if description is None else description
    return {spec_job.name: ObservedJob("job_1", spec_job.name, held, endpoints)}


def test_a_fresh_tenant_gets_each_job_then_its_endpoints_in_file_order() -> None:
    first, second = job(spec("a"), spec("b"), name="One"), job(spec("c"), name="Two")
    result = plan(Manifest("f", (first, second)), {})
    assert result.changes == (
        CreateJob(first),
        CreateEndpoint(first, None, first.endpoints[0]),
        CreateEndpoint(first, None, first.endpoints[1]),
        CreateJob(second),
        CreateEndpoint(second, None, second.endpoints[0]),
    )
    assert (result.unchanged, result.untracked) == (0, ())


def test_what_pacer_already_holds_is_unchanged_whatever_its_pause_state_and_wording() -> None:
    endpoint = spec(schedule=Every(60_000, "60s"), paused=True)
    the_job = job(endpoint)
    held = summary(endpoint, paused=False, failure_count=3)  # an agent resumed it; it failed since
    result = plan(Manifest("f", (the_job,)), observed(the_job, held))
    assert (result.changes, result.unchanged) == ((), 1)


def test_a_missing_endpoint_is_added_to_the_existing_job_and_an_extra_one_left_alone() -> None:
    kept, new = spec("kept"), spec("new")
    the_job = job(kept, new)
    extra = summary(spec("extra"), "ep_9")
    result = plan(Manifest("f", (the_job,)), observed(the_job, summary(kept), extra))
    assert result.changes == (CreateEndpoint(the_job, "job_1", new),)
    assert result.unchanged == 1
    assert result.untracked == (Untracked("Job", "extra", "ep_9"),)


def test_a_changed_description_updates_the_job() -> None:
    the_job = job(description="new words")
    result = plan(Manifest("f", (the_job,)), observed(the_job, description="old words"))
    assert result.changes == (UpdateJob(the_job, "job_1", FieldChange("description", "old words", "new words")),)


@pytest.mark.parametrize(
    ("override", "field", "before", "after"),
    [
        ({"url": "https://old.example.com"}, "url", "https://old.example.com", "https://api.example.com/health"),
        ({"method": "POST"}, "method", "POST", "GET"),
        ({"baseline": pb.Baseline(interval_ms=120_000)}, "baseline", "every 2m", "every 1m"),
        (
            {"baseline": pb.Baseline(cron=pb.CronSchedule(expression="0 * * * *", timezone="UTC"))},
            "baseline",
            'cron "0 * * * *" UTC',
            "every 1m",
        ),
        ({"clamp": pb.Clamp(min_interval_ms=20_000)}, "clamp", "min 20s", "none"),
        ({"timeout_ms": 5000}, "timeout", "5s", "30s"),
    ],
)
def test_each_differing_field_is_one_field_change(
    override: dict[str, Any], field: Any, before: str, after: str
) -> None:
    endpoint = spec()
    assert endpoint_fields(endpoint, summary(endpoint, **override)) == (FieldChange(field, before, after),)


def test_headers_and_body_are_compared_by_digest_and_never_shown() -> None:
    endpoint = spec(headers={"Authorization": "Bearer s3cret"}, body="payload")
    held = summary(endpoint, config_digest=config_digest({"Authorization": "Bearer old"}, "payload"))
    (change,) = endpoint_fields(endpoint, held)
    assert change.field == "headers/body"
    assert change.before.startswith("sha256:")
    assert change.after == "sha256:" + config_digest(endpoint.headers, endpoint.body)[:8]
    assert "s3cret" not in repr(change)


def test_a_cron_baseline_differs_by_expression_or_timezone() -> None:
    endpoint = spec(schedule=Cron("0 9 * * MON", "Europe/London"))
    same = summary(endpoint)
    other_zone = summary(endpoint, baseline=pb.Baseline(cron=pb.CronSchedule(expression="0 9 * * MON")))
    assert endpoint_fields(endpoint, same) == ()
    assert endpoint_fields(endpoint, other_zone) == (
        FieldChange("baseline", 'cron "0 9 * * MON"', 'cron "0 9 * * MON" Europe/London'),
    )


def test_two_live_endpoints_with_a_name_of_the_file_are_a_conflict() -> None:
    endpoint = spec()
    the_job = job(endpoint)
    with pytest.raises(Conflict, match=r"2 endpoints named 'probe' \(ep_1, ep_2\)"):
        plan(Manifest("f", (the_job,)), observed(the_job, summary(endpoint, "ep_1"), summary(endpoint, "ep_2")))


def test_two_live_endpoints_sharing_a_name_the_file_does_not_use_are_just_untracked() -> None:
    the_job = job()
    twins = (summary(spec("twin"), "ep_1"), summary(spec("twin"), "ep_2"))
    assert len(plan(Manifest("f", (the_job,)), observed(the_job, *twins)).untracked) == 2


# --- requests --------------------------------------------------------------------------------------------------------


def test_an_added_endpoint_carries_every_field_of_the_file() -> None:
    endpoint = spec(
        method="POST",
        headers={"X-Team": "sre"},
        body="{}",
        schedule=Cron("*/5 * * * *", "Europe/Berlin"),
        min_interval_ms=60_000,
        timeout_ms=5000,
        paused=True,
        retry_attempts=3,
        retry_backoff_ms=2000,
    )
    request = add_request("job_1", endpoint, REASON)
    assert request == pb.AddEndpointToJobRequest(
        job_id="job_1",
        name="probe",
        url="https://api.example.com/health",
        method="POST",
        headers={"X-Team": "sre"},
        body="{}",
        baseline=pb.Baseline(cron=pb.CronSchedule(expression="*/5 * * * *", timezone="Europe/Berlin")),
        clamp=pb.Clamp(min_interval_ms=60_000),
        timeout_ms=5000,
        retry=pb.RetryPolicy(max_attempts=3, backoff_ms=2000),
        reason=REASON,
    )


def sent(request: pb.UpdateEndpointConfigRequest) -> set[str]:
    return {field.name for field, _ in request.ListFields()}


def test_a_manifests_retry_is_read_compared_and_sent_only_when_it_differs() -> None:
    text = (
        "jobs:\n- name: J\n  endpoints:\n  - name: probe\n    url: https://api.example.com/health\n"
        "    every: 1m\n    retry: {attempts: 3, backoff: 2s}\n"
    )
    (endpoint,) = parse(text, "test.yaml").jobs[0].endpoints
    assert (endpoint.retry_attempts, endpoint.retry_backoff_ms) == (3, 2000)
    listed = pb.EndpointSummary(
        url=endpoint.url, method="GET", baseline=pb.Baseline(interval_ms=60_000), timeout_ms=30_000
    )
    listed.config_digest = config_digest({}, "", None)
    listed.retry.max_attempts, listed.retry.backoff_ms = 1, 1000
    (change,) = endpoint_fields(endpoint, listed)
    assert (change.field, change.before, change.after) == ("retry", "1 attempt", "3 attempts, backoff 2s")
    request = update_request(UpdateEndpoint(job(endpoint), endpoint, "ep_1", (change,)), REASON)
    assert sent(request) == {"endpoint_id", "reason", "retry"}
    assert (request.retry.max_attempts, request.retry.backoff_ms) == (3, 2000)
    listed.retry.max_attempts, listed.retry.backoff_ms = 3, 2000
    assert endpoint_fields(endpoint, listed) == ()


def test_an_update_sends_only_the_differing_fields() -> None:
    endpoint = spec(url="https://new.example.com")
    change = UpdateEndpoint(job(endpoint), endpoint, "ep_1", (FieldChange("url", "https://old", "https://new"),))
    request = update_request(change, REASON)
    assert sent(request) == {"endpoint_id", "reason", "url"}
    assert request.url == "https://new.example.com"
    assert request.reason == REASON


def test_clearing_the_clamp_and_the_headers_still_sends_them() -> None:
    endpoint = spec()  # no clamp, no headers, empty body
    fields = (FieldChange("clamp", "min 1m", "none"), FieldChange("headers/body", "sha256:1", "sha256:2"))
    request = update_request(UpdateEndpoint(job(endpoint), endpoint, "ep_1", fields), REASON)
    assert sent(request) == {"endpoint_id", "reason", "clamp", "headers", "body"}
    assert dict(request.headers.entries) == {}
    assert request.body == ""


SURGE = PolicySpec(
    "surge",
    "has(body.ratio) && body.ratio > 5.0",
    (ActionSpec(IntervalHint(30_000, 3_600_000)), ActionSpec(Resume(), "inventory-check")),
    600_000,
)
CALM = PolicySpec("calm", "has(body.ratio) && body.ratio < 2.0", (ActionSpec(ClearHints()),))
RULES = (
    SURGE,
    CALM,
    PolicySpec("calm", "body.ratio < 1.5", (ActionSpec(ClearHints()),)),  # the same name, another rule
    PolicySpec("down", "run.status != 'SUCCESS'", (ActionSpec(OneShot(5000), "alert"), ActionSpec(Pause(0)))),
    PolicySpec("fixed", "run.status == 'SUCCESS' && streak >= 3", (ActionSpec(ResetFailures()),), 3_600_000),
)


ENDPOINTS = st.builds(
    EndpointSpec,
    path=st.just("jobs[0].endpoints[0]"),
    name=st.just("probe"),
    url=st.sampled_from(["https://a.example.com", "https://b.example.com/x"]),
    schedule=st.one_of(
        st.builds(Every, st.integers(1000, 10**9), st.just("")),
        st.builds(Cron, st.sampled_from(["* * * * *", "0 9 * * MON"]), st.sampled_from(["", "UTC", "Asia/Tokyo"])),
    ),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    headers=st.dictionaries(st.sampled_from(["X-A", "X-B"]), st.text(max_size=3), max_size=2),
    body=st.text(max_size=5),
    min_interval_ms=st.sampled_from([0, 1000, 60_000]),
    max_interval_ms=st.sampled_from([0, 3_600_000]),
    timeout_ms=st.sampled_from([100, 30_000]),
    paused=st.booleans(),
    jitter_ms=st.sampled_from([0, 500, 5000]),
    signing_secret=st.sampled_from(["", "s" * 32]),
    signing_secret_from=st.just("PACER_SECRET_PROBE"),
    policies=st.lists(st.sampled_from(RULES), max_size=3, unique_by=lambda rule: rule.name).map(tuple),
)


def updated(held: pb.EndpointSummary, request: pb.UpdateEndpointConfigRequest) -> pb.EndpointSummary:
    """What the control plane holds after `request`: each field sent replaces its value, the rest are kept."""
    result = pb.EndpointSummary()
    result.CopyFrom(held)
    sent_fields = sent(request)
    for field in ("url", "method", "timeout_ms", "jitter_ms"):
        if field in sent_fields:
            setattr(result, field, getattr(request, field))
    if "signing_secret" in sent_fields:
        result.signed = bool(request.signing_secret)
    if request.HasField("policies"):
        del result.policies[:]
        result.policies.extend(request.policies.rules)
    for field in ("baseline", "clamp"):
        if field in sent_fields:
            getattr(result, field).CopyFrom(getattr(request, field))
    if request.HasField("headers"):
        result.config_digest = config_digest(dict(request.headers.entries), request.body)
    return result


@given(desired=ENDPOINTS, before=ENDPOINTS)
def test_one_update_makes_any_endpoint_match_the_file(desired: EndpointSpec, before: EndpointSpec) -> None:
    held = summary(before)
    fields = endpoint_fields(desired, held)
    if not fields:
        return
    request = update_request(UpdateEndpoint(job(desired), desired, "ep_1", fields), REASON)
    assert ("baseline" in sent(request)) == any(f.field == "baseline" for f in fields)
    assert endpoint_fields(desired, updated(held, request)) == ()


@given(endpoint=ENDPOINTS)
def test_an_endpoint_created_from_the_file_needs_no_change(endpoint: EndpointSpec) -> None:
    the_job = job(endpoint)
    assert plan(Manifest("f", (the_job,)), observed(the_job, summary(endpoint))).changes == ()


# --- how the plan is shown -------------------------------------------------------------------------------------------


def test_the_plan_reads_one_line_per_change() -> None:
    traffic = spec("traffic-monitor", schedule=Every(60_000, "60s"))
    paused = spec("on-call-page", schedule=Cron("0 9 * * MON", "America/New_York"), paused=True)
    sale = job(traffic, paused, name="Black Friday Flash Sale")
    changed = UpdateEndpoint(sale, traffic, "ep_1", (FieldChange("url", "https://a", "https://b"),))
    other = FieldChange("clamp", "min 20s, max 5m", "min 30s, max 5m")
    both = UpdateEndpoint(sale, traffic, "ep_1", (FieldChange("url", "a", "b"), other))
    creates = plan(Manifest("f", (sale,)), {}).changes
    legacy = Untracked("Black Friday Flash Sale", "legacy", "ep_9")
    shown = plan_lines(Plan((*creates, changed, both), 10, (legacy,)))
    assert shown == [
        '+ job "Black Friday Flash Sale"',
        '+ endpoint "Black Friday Flash Sale"/"traffic-monitor" every 60s',
        '+ endpoint "Black Friday Flash Sale"/"on-call-page" cron "0 9 * * MON" America/New_York, paused',
        '~ endpoint "Black Friday Flash Sale"/"traffic-monitor": url https://a -> https://b',
        '~ endpoint "Black Friday Flash Sale"/"traffic-monitor": url a -> b; clamp min 20s, max 5m -> min 30s, max 5m',
        '? endpoint "Black Friday Flash Sale"/"legacy" not in file, left alone',
        "= 10 endpoints unchanged",
    ]


def test_the_last_line_says_what_happened() -> None:
    the_job = job(spec())
    nothing, two = plan(Manifest("f", ()), {}), plan(Manifest("f", (the_job,)), {})
    assert outcome_line(nothing, dry_run=False) == outcome_line(nothing, dry_run=True) == "no changes"
    assert outcome_line(two, dry_run=False) == "applied 2 changes"
    assert outcome_line(two, dry_run=True) == "dry run: 2 changes, none applied"


def test_the_json_plan_is_a_list_of_changes_with_ids_once_known() -> None:
    endpoint = spec(paused=True)
    the_job = job(endpoint, name='Quote "this"')
    created = json.loads(plan_json(plan(Manifest("f", (the_job,)), {}), ["job_1", "ep_1"]))
    assert created == [
        {"op": "create", "kind": "job", "job": 'Quote "this"', "path": "jobs[0]", "description": "", "job_id": "job_1"},
        {
            "op": "create",
            "kind": "endpoint",
            "job": 'Quote "this"',
            "endpoint": "probe",
            "path": "jobs[0].endpoints[0]",
            "schedule": "every 1m",
            "paused": True,
            "jitter_ms": 0,
            "retry": {"max_attempts": 1, "backoff_ms": 1000},
            "signed": False,
            "policies": [],
            "endpoint_id": "ep_1",
        },
    ]
    change = UpdateEndpoint(the_job, endpoint, "ep_7", (FieldChange("timeout", "5s", "30s"),))
    updated_json = json.loads(plan_json(Plan((change,), 0, ())))
    assert updated_json[0]["fields"] == {"timeout": {"from": "5s", "to": "30s"}}
    assert updated_json[0]["endpoint_id"] == "ep_7"
    assert json.loads(plan_json(plan(Manifest("f", ()), {}))) == []


# --- making the changes ----------------------------------------------------------------------------------------------


class FakeApi:
    """Answers apply's calls like the server, refusing AddEndpointToJob for the endpoint names in `refuse`; the call
    for an endpoint named in `awaits` is answered only once the call for the endpoint it names has arrived."""

    def __init__(self, refuse: frozenset[str] = frozenset(), awaits: dict[str, str] | None = None) -> None:
        self.refuse = refuse
        self.awaits = awaits or {}
        self.made: list[str] = []
        self._arrived: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def _event(self, name: str) -> threading.Event:
        with self._lock:
            return self._arrived.setdefault(name, threading.Event())

    def call(self, rpc: str, request: Any) -> Any:
        if rpc == "CreateJob":
            return pb.CreateJobResponse(job_id=f"job_{request.name}")
        if rpc == "AddEndpointToJob":
            self._event(request.name).set()
            if request.name in self.awaits:
                assert self._event(self.awaits[request.name]).wait(10), "the calls were not sent together"
            if request.name in self.refuse:
                raise ApiError("INVALID_ARGUMENT", f"{request.name} refused")
            with self._lock:
                self.made.append(request.name)
            return pb.AddEndpointToJobResponse(endpoint_id=f"ep_{request.name}")
        return None


def session_of(api: FakeApi) -> tuple[Session, io.StringIO]:
    err = io.StringIO()
    return Session(api.call, lambda: datetime.now(UTC), io.StringIO(), err, False), err


def fresh_plan(*jobs: JobSpec) -> Plan:
    return plan(Manifest("f", jobs), {})


def test_a_job_goes_alone_and_its_endpoints_in_waves_of_1_2_4_8_then_16() -> None:
    big = job(*(spec(f"e{n}") for n in range(40)), name="Big")
    small = job(spec("x"), spec("y"), name="Small")
    sizes = [len(wave) for wave in waves(fresh_plan(big, small).changes)]
    assert sizes == [1, 1, 2, 4, 8, 16, 9, 1, 1, 1]
    assert IN_FLIGHT == 16


def test_execute_makes_every_change_together_and_returns_the_ids_in_plan_order() -> None:
    api = FakeApi(awaits={"e1": "e2", "e3": "e6", "e90": "e85"})
    the_plan = fresh_plan(job(*(spec(f"e{n}") for n in range(100)), name="Big"))
    session, err = session_of(api)
    ids = execute(session, the_plan, REASON)
    assert ids == ["job_Big", *(f"ep_e{n}" for n in range(100))]
    assert sorted(api.made) == sorted(f"e{n}" for n in range(100))
    assert err.getvalue() == ""


def test_a_refused_change_stops_the_apply_after_its_wave_and_says_what_was_made() -> None:
    api = FakeApi(refuse=frozenset({"e5"}))
    the_plan = fresh_plan(job(*(spec(f"e{n}") for n in range(40)), name="Big"))
    session, err = session_of(api)
    with pytest.raises(ApiError):
        execute(session, the_plan, REASON)
    # Waves: the job, e0, e1-e2, e3-e6: e5 is refused, e6 went with it, nothing after that wave is sent.
    assert sorted(api.made) == ["e0", "e1", "e2", "e3", "e4", "e6"]
    assert 'stopped at `+ endpoint "Big"/"e5" every 1m`' in err.getvalue()
    assert "6 of 41 changes were made before it (and 1 after it, sent together with it)." in err.getvalue()


# --- policies, jitter and signing ------------------------------------------------------------------------------------

SECRET = "k" * 40
RULED = """
jobs:
  - name: Shop
    endpoints:
      - name: traffic-monitor
        url: https://shop.example.com/traffic
        every: 60s
        jitter: 5s
        signing_secret: ${PACER_SECRET_TRAFFIC}
        policies:
          - name: surge
            when: has(body.ratio) && body.ratio > 5.0
            cooldown: 10m
            then:
              - interval_hint: {every: 30s, ttl: 1h}
              - {endpoint: inventory-check, resume: }
          - name: calm
            when: has(body.ratio) && body.ratio < 2.0
            then:
              - clear_hints: {}
              - {endpoint: inventory-check, pause: {}}
              - {endpoint: alert, one_shot: {delay: 5s}}
              - reset_failures:
              - {pause: {for: 10m}}
      - {name: inventory-check, url: "https://shop.example.com/inventory", every: 3m, paused: true}
      - {name: alert, url: "https://chat.example.com/hook", method: POST, every: 1d, paused: true}
"""


def ruled(environ: dict[str, str] | None = None) -> Manifest:
    return parse(RULED, "shop.yaml", {"PACER_SECRET_TRAFFIC": SECRET} if environ is None else environ)


def test_policies_jitter_and_a_secret_from_the_environment_are_read() -> None:
    traffic = ruled().jobs[0].endpoints[0]
    assert traffic.jitter_ms == 5000
    assert (traffic.signing_secret, traffic.signing_secret_from) == (SECRET, "PACER_SECRET_TRAFFIC")
    assert SECRET not in repr(traffic)  # a secret never reaches a log or a traceback through repr
    assert traffic.policies == (
        SURGE,
        PolicySpec(
            "calm",
            "has(body.ratio) && body.ratio < 2.0",
            (
                ActionSpec(ClearHints()),
                ActionSpec(Pause(0), "inventory-check"),
                ActionSpec(OneShot(5000), "alert"),
                ActionSpec(ResetFailures()),
                ActionSpec(Pause(600_000)),
            ),
        ),
    )


def test_an_added_endpoint_carries_its_rules_jitter_and_secret() -> None:
    traffic = ruled().jobs[0].endpoints[0]
    request = add_request("job_1", traffic, REASON)
    assert (request.jitter_ms, request.signing_secret) == (5000, SECRET)
    surge = request.policies[0]
    assert (surge.name, surge.when, surge.cooldown_ms) == ("surge", SURGE.when, 600_000)
    assert surge.then[0].interval_hint == pb.PolicyIntervalHint(interval_ms=30_000, ttl_ms=3_600_000)
    assert surge.then[0].endpoint == ""
    assert (surge.then[1].endpoint, surge.then[1].WhichOneof("action")) == ("inventory-check", "resume")
    kinds = [action.WhichOneof("action") for action in request.policies[1].then]
    assert kinds == ["clear_hints", "pause", "one_shot", "reset_failures", "pause"]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "the environment variable PACER_SECRET_TRAFFIC is not set (or empty)"),
        ({"PACER_SECRET_TRAFFIC": ""}, "the environment variable PACER_SECRET_TRAFFIC is not set (or empty)"),
        ({"PACER_SECRET_TRAFFIC": "short"}, "the environment variable PACER_SECRET_TRAFFIC must hold 32 to 256"),
    ],
)
def test_a_secret_variable_that_is_unset_or_too_short_is_a_problem(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        ruled(environ)
    assert [problem.path for problem in caught.value.problems] == ["jobs[0].endpoints[0].signing_secret"]
    assert caught.value.problems[0].message.startswith(message)
    assert "short" not in str(caught.value)  # the value is never echoed


POLICY = {"name": "surge", "when": "body.ratio > 5.0", "then": [{"clear_hints": {}}]}


@pytest.mark.parametrize(
    ("keys", "path", "message"),
    [
        ({"signing_secret": SECRET}, "signing_secret", "must be `${VARIABLE}`: a secret is read from the environment"),
        ({"signing_secret": "$PACER_X"}, "signing_secret", "must be `${VARIABLE}`"),
        ({"jitter": "2h"}, "jitter", "must be at most 1h"),
        ({"jitter": "1m"}, "jitter", "must be shorter than the interval (`every`)"),
        ({"jitter": "soon"}, "jitter", "invalid duration"),
        ({"policies": "surge"}, "policies", "must be a list"),
        ({"policies": [POLICY] * 11}, "policies", "must have at most 10 rules"),
        ({"policies": [POLICY | {"name": "Surge!"}]}, "policies[0].name", "must be 1 to 64 of a-z, 0-9, - and _"),
        ({"policies": [POLICY | {"when": " "}]}, "policies[0].when", "must not be empty"),
        ({"policies": [POLICY | {"when": "x" * 1001}]}, "policies[0].when", "must be at most 1000 characters"),
        ({"policies": [POLICY | {"then": []}]}, "policies[0].then", "must have 1 to 5 actions"),
        ({"policies": [POLICY | {"cooldown": "8d"}]}, "policies[0].cooldown", "must be between"),
        ({"policies": [POLICY | {"if": "x"}]}, "policies[0].if", "unknown key"),
        ({"policies": [{"name": "a", "when": "true"}]}, "policies[0].then", "required"),
        ({"policies": [POLICY | {"then": [{"resume": {}, "pause": {}}]}]}, "policies[0].then[0]", "set exactly one"),
        ({"policies": [POLICY | {"then": [{"endpoint": "x"}]}]}, "policies[0].then[0]", "set exactly one"),
        ({"policies": [POLICY | {"then": [{"resume": {"now": True}}]}]}, "policies[0].then[0].resume", "takes no"),
        ({"policies": [POLICY | {"then": [{"interval_hint": {}}]}]}, "policies[0].then[0].interval_hint.every", ""),
        (
            {"policies": [POLICY | {"then": [{"interval_hint": {"every": "30s", "ttl": "30s"}}]}]},
            "policies[0].then[0].interval_hint.ttl",
            "must be between 1m and 7d",
        ),
        (
            {"policies": [POLICY | {"then": [{"one_shot": {"delay": "2d"}}]}]},
            "policies[0].then[0].one_shot.delay",
            "must be between",
        ),
        (
            {"policies": [POLICY | {"then": [{"pause": {"for": "100ms"}}]}]},
            "policies[0].then[0].pause.for",
            "must be between 1s and 30d",
        ),
        (
            {"policies": [POLICY | {"then": [{"pause": {"until": "1h"}}]}]},
            "policies[0].then[0].pause.until",
            "unknown key",
        ),
    ],
)
def test_each_rule_jitter_and_secret_problem_is_reported_at_its_path(
    keys: dict[str, Any], path: str, message: str
) -> None:
    found = problems(one_endpoint(**keys))
    assert [problem.path for problem in found][:1] == [f"jobs[0].endpoints[0].{path}"]
    assert found[0].message.startswith(message)


def test_a_rule_name_used_twice_on_an_endpoint_is_reported_at_the_second_use() -> None:
    found = problems(one_endpoint(policies=[POLICY, POLICY]))
    assert found == [
        Problem(
            "jobs[0].endpoints[0].policies[1].name",
            "rule name 'surge' is used twice (also jobs[0].endpoints[0].policies[0].name)",
        )
    ]


def held_ruled() -> tuple[JobSpec, tuple[pb.EndpointSummary, ...]]:
    the_job = ruled().jobs[0]
    return the_job, tuple(summary(e, f"ep_{e.name}") for e in the_job.endpoints)


def test_an_endpoint_created_with_its_rules_needs_no_change_however_the_api_spells_defaults() -> None:
    the_job, held = held_ruled()
    spelled = pb.Policy()
    spelled.CopyFrom(held[0].policies[0])
    spelled.then[0].interval_hint.ttl_ms = 0  # the API's "one hour"
    spelled.then[0].endpoint = "traffic-monitor"  # its own endpoint, by name
    traffic = summary(the_job.endpoints[0], "ep_t", policies=[spelled, held[0].policies[1]])
    result = plan(Manifest("f", (the_job,)), observed(the_job, traffic, *held[1:]))
    assert (result.changes, result.unchanged) == ((), 3)


def test_policy_jitter_and_signing_changes_are_shown_and_sent_alone() -> None:
    the_job, held = held_ruled()
    changed_surge = pb.Policy()
    changed_surge.CopyFrom(held[0].policies[0])
    changed_surge.cooldown_ms = 60_000
    old = pb.Policy(name="old", when="true", then=[pb.PolicyAction(resume=pb.PolicyResume())])
    traffic = summary(the_job.endpoints[0], "ep_t", jitter_ms=0, signed=False, policies=[changed_surge, old])
    result = plan(Manifest("f", (the_job,)), observed(the_job, traffic, *held[1:]))
    assert plan_lines(result) == [
        '~ endpoint "Shop"/"traffic-monitor": jitter none -> 5s; signing unsigned -> signed (secret from '
        "$PACER_SECRET_TRAFFIC); policies [surge, old] -> [surge (changed), calm (new)]",
        "= 2 endpoints unchanged",
    ]
    (change,) = result.changes
    assert isinstance(change, UpdateEndpoint)
    request = update_request(change, REASON)
    assert sent(request) == {"endpoint_id", "reason", "jitter_ms", "signing_secret", "policies"}
    assert [rule.name for rule in request.policies.rules] == ["surge", "calm"]
    assert request.signing_secret == SECRET


def test_removing_every_rule_and_the_secret_still_sends_them() -> None:
    endpoint = spec()
    held = summary(endpoint, signed=True, policies=[pb.Policy(name="old", when="true")])
    fields = endpoint_fields(endpoint, held)
    assert [f.field for f in fields] == ["signing", "policies"]
    request = update_request(UpdateEndpoint(job(endpoint), endpoint, "ep_1", fields), REASON)
    assert request.HasField("signing_secret")
    assert request.signing_secret == ""
    assert request.HasField("policies")
    assert len(request.policies.rules) == 0


def test_a_secret_is_only_sent_again_when_asked_to_rotate() -> None:
    the_job, held = held_ruled()
    assert plan(Manifest("f", (the_job,)), observed(the_job, *held)).changes == ()
    rotated = plan(Manifest("f", (the_job,)), observed(the_job, *held), rotate_secrets=True)
    assert plan_lines(rotated)[0] == (
        '~ endpoint "Shop"/"traffic-monitor": signing signed -> new secret from $PACER_SECRET_TRAFFIC'
    )
    (change,) = rotated.changes
    assert isinstance(change, UpdateEndpoint)
    assert sent(update_request(change, REASON)) == {"endpoint_id", "reason", "signing_secret"}


def test_a_new_endpoint_shows_its_jitter_signing_and_rules() -> None:
    the_job = ruled().jobs[0]
    lines = plan_lines(plan(Manifest("f", (the_job,)), {}))
    assert lines[1] == ('+ endpoint "Shop"/"traffic-monitor" every 60s, jitter 5s, signed, policies [surge, calm]')


def test_rules_acting_on_other_endpoints_are_set_once_the_whole_plan_exists() -> None:
    calls: list[tuple[str, Any]] = []

    def call(rpc: str, request: Any) -> Any:
        calls.append((rpc, request))
        if rpc == "CreateJob":
            return pb.CreateJobResponse(job_id="job_1")
        if rpc == "AddEndpointToJob":
            return pb.AddEndpointToJobResponse(endpoint_id=f"ep_{request.name}")
        return None

    session = Session(call, lambda: datetime.now(UTC), io.StringIO(), io.StringIO(), False)
    execute(session, fresh_plan(ruled().jobs[0]), REASON)
    adds = {request.name: request for rpc, request in calls if rpc == "AddEndpointToJob"}
    assert list(adds["traffic-monitor"].policies) == []  # it names inventory-check and alert, not yet made
    assert adds["traffic-monitor"].signing_secret == SECRET
    rpc, last = calls[-1]
    assert rpc == "UpdateEndpointConfig"
    assert last.endpoint_id == "ep_traffic-monitor"
    assert [rule.name for rule in last.policies.rules] == ["surge", "calm"]


def test_header_values_come_from_the_environment_or_a_file_so_the_manifest_holds_no_credentials(
    tmp_path: Path,
) -> None:
    (tmp_path / "token.txt").write_text("Bearer from-a-file\n")
    manifest = tmp_path / "shop.yaml"
    headers = {
        "Authorization": {"valueFrom": {"file": "token.txt"}},
        "X-Api-Key": "${SHOP_KEY}",
        "X-Tenant": {"valueFrom": {"env": "SHOP_TENANT"}},
        "X-Team": "web",
    }
    manifest.write_text(yaml.safe_dump(one_endpoint(every="60s", headers=headers)))

    endpoint = only_endpoint(load(str(manifest), {"SHOP_KEY": "k-123", "SHOP_TENANT": "acme"}))

    assert dict(endpoint.headers) == {
        "Authorization": "Bearer from-a-file",
        "X-Api-Key": "k-123",
        "X-Tenant": "acme",
        "X-Team": "web",
    }
    with pytest.raises(ManifestError) as missing:
        load(str(manifest), {"SHOP_KEY": "k-123"})
    problems = [(p.path, p.message) for p in missing.value.problems]
    assert problems == [
        ("jobs[0].endpoints[0].headers.X-Tenant", "the environment variable SHOP_TENANT is not set (or empty)")
    ]
