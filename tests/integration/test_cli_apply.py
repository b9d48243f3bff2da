"""`pacerctl apply` against the real control plane (SQLite and PostgreSQL): each use-case example applies cleanly and
a second apply changes nothing (no new audit records); --dry-run and --json; an edited file changes exactly the
edited fields (and the cadence only when the baseline changed); pause state belongs to whoever steers; endpoints
missing from the file are left alone; invalid files, name conflicts and refused calls."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.flash_sale_policies import policies as flash_sale_policies
from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli.main import run
from tests.support.harness import Harness, dt

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "use-cases"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
FLASH_SALE = EXAMPLES / "flash-sale.yaml"
FLASH_JOB = "Black Friday Flash Sale"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


class Apply:
    """Runs `pacerctl apply` in-process against the harness, as tenant a unless another key is given."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def __call__(
        self, path: Path, *options: str, key: str | None = None, command: str = "apply", **environ: str
    ) -> Result:
        key = key or str(self.harness.a.key)
        argv = ["--addr", self.harness.address, "--api-key", key, command, "-f", str(path)]
        out, err = io.StringIO(), io.StringIO()
        text = path.read_text() if path.exists() else ""
        secrets = {name: f"{name}-0123456789abcdef0123456789" for name in re.findall(r"\$\{(\w+)\}", text)}
        code = run([*argv, *options], out, err, environ=secrets | environ, now=self.harness.clock.now)
        return Result(code, out.getvalue(), err.getvalue())

    def ok(self, path: Path, *options: str) -> Result:
        result = self(path, *options)
        assert result.code == 0, result.err
        assert result.err == ""
        return result


@pytest.fixture
def apply(harness: Harness) -> Apply:
    return Apply(harness)


def document(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def write(path: Path, content: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(content), sort_keys=False))
    return path


def edited_copy(tmp_path: Path, source: Path, job: int, endpoint: str, **changes: Any) -> Path:
    """A copy of `source` (same file name) with one endpoint's keys changed; a value of None removes the key."""
    content = document(source)
    for item in content["jobs"][job]["endpoints"]:
        if item["name"] == endpoint:
            item.update({k: v for k, v in changes.items() if v is not None})
            for key in [k for k, v in changes.items() if v is None]:
                item.pop(key, None)
    return write(tmp_path / source.name, content)


def active_jobs(harness: Harness, key: str | None = None) -> dict[str, str]:
    client = harness.client(key) if key else harness.a
    response = client.ListJobs(pb.ListJobsRequest(status=pb.JOB_STATUS_ACTIVE, page_size=100))
    return {job.name: job.job_id for job in response.jobs}


def endpoints(harness: Harness, job_name: str = FLASH_JOB) -> dict[str, pb.EndpointSummary]:
    job_id = active_jobs(harness)[job_name]
    return {e.name: e for e in harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints}


def endpoint_count(path: Path) -> int:
    return sum(len(job["endpoints"]) for job in document(path)["jobs"])


# --- the six use cases -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.stem for p in EXAMPLE_FILES])
def test_each_example_applies_cleanly_and_a_second_apply_changes_nothing(
    harness: Harness, apply: Apply, path: Path
) -> None:
    content, count = document(path), endpoint_count(path)
    first = apply.ok(path)
    creates = len(content["jobs"]) + count
    assert sum(line.startswith("+ job ") for line in first.lines) == len(content["jobs"])
    assert sum(line.startswith("+ endpoint ") for line in first.lines) == count
    assert first.lines[-1] == f"applied {creates} changes"
    for job in content["jobs"]:
        live = endpoints(harness, job["name"])
        assert sorted(live) == sorted(e["name"] for e in job["endpoints"])
        for spec in job["endpoints"]:
            assert live[spec["name"]].url == spec["url"]
            assert live[spec["name"]].method == spec.get("method", "GET")
            assert live[spec["name"]].paused == spec.get("paused", False), spec["name"]
            assert live[spec["name"]].signed == ("signing_secret" in spec), spec["name"]
            rules = [rule["name"] for rule in spec.get("policies", [])]
            assert [rule.name for rule in live[spec["name"]].policies] == rules, spec["name"]
    trail = harness.audit()
    assert {r["reason"] for r in trail if r["action"] != "CreateJob"} == {f"pacerctl apply {path.name}"}

    second = apply.ok(path)
    assert second.lines == [f"= {count} endpoints unchanged", "no changes"]
    assert harness.audit() == trail


def test_the_plan_names_each_job_and_endpoint_with_its_schedule(apply: Apply) -> None:
    lines = apply.ok(FLASH_SALE).lines
    assert lines[0] == f'+ job "{FLASH_JOB}"'
    assert lines[1] == (
        f'+ endpoint "{FLASH_JOB}"/"traffic-monitor" every 60s, policies [surge, calm, pages-slow, pages-ok, db-slow, '
        "db-ok, orders-falling, orders-collapsed, pages-critical, pages-not-critical]"
    )
    assert f'+ endpoint "{FLASH_JOB}"/"slow-page-analyzer" every 50s, paused' in lines
    cron = apply.ok(EXAMPLES / "content-publishing.yaml").lines
    assert '+ endpoint "Spring Launch Campaign"/"publish_blog_post" cron "0 9 * * MON" America/New_York' in cron


# --- dry run and JSON ------------------------------------------------------------------------------------------------


def test_dry_run_lists_every_job_and_endpoint_and_changes_nothing(harness: Harness, apply: Apply) -> None:
    path = EXAMPLES / "content-publishing.yaml"  # two jobs
    expected = [
        prefix
        for job in document(path)["jobs"]
        for prefix in (
            f'+ job "{job["name"]}"',
            *(f'+ endpoint "{job["name"]}"/"{e["name"]}" ' for e in job["endpoints"]),
        )
    ]

    result = apply.ok(path, "--dry-run")

    assert len(result.lines) == len(expected) + 1
    assert all(line.startswith(prefix) for line, prefix in zip(result.lines, expected, strict=False)), result.out
    assert result.lines[-1] == f"dry run: {len(expected)} changes, none applied"
    assert active_jobs(harness) == {}
    assert harness.audit() == []


def test_dry_run_of_an_edited_file_shows_the_update_and_makes_it_not(
    harness: Harness, apply: Apply, tmp_path: Path
) -> None:
    apply.ok(FLASH_SALE)
    trail = harness.audit()
    path = edited_copy(tmp_path, FLASH_SALE, 0, "ops-chat", url="https://chat.example.com/hooks/war-room")
    assert apply.ok(path, "--dry-run").lines == [
        f'~ endpoint "{FLASH_JOB}"/"ops-chat": '
        "url https://chat.example.com/hooks/ops -> https://chat.example.com/hooks/war-room",
        "= 9 endpoints unchanged",
        "dry run: 1 change, none applied",
    ]
    assert endpoints(harness)["ops-chat"].url == "https://chat.example.com/hooks/ops"
    assert harness.audit() == trail


def test_json_lists_the_changes_with_their_ids_and_an_empty_list_when_in_sync(harness: Harness, apply: Apply) -> None:
    planned = json.loads(apply.ok(FLASH_SALE, "--json", "--dry-run").out)
    assert [(c["op"], c["kind"]) for c in planned[:2]] == [("create", "job"), ("create", "endpoint")]
    assert planned[1] == {
        "op": "create",
        "kind": "endpoint",
        "job": FLASH_JOB,
        "endpoint": "traffic-monitor",
        "path": "jobs[0].endpoints[0]",
        "schedule": "every 60s",
        "paused": False,
        "jitter_ms": 0,
        "retry": {"max_attempts": 1, "backoff_ms": 1000},
        "signed": False,
        "policies": [rule.name for rule in flash_sale_policies()],
        "endpoint_id": None,
    }
    made = json.loads(apply.ok(FLASH_SALE, "--json").out)
    live = endpoints(harness)
    assert made[0]["job_id"] == active_jobs(harness)[FLASH_JOB]
    assert {c["endpoint"]: c["endpoint_id"] for c in made[1:]} == {name: e.endpoint_id for name, e in live.items()}
    assert json.loads(apply.ok(FLASH_SALE, "--json").out) == []


# --- changes ---------------------------------------------------------------------------------------------------------


def test_an_edited_url_and_clamp_change_exactly_those_fields(harness: Harness, apply: Apply, tmp_path: Path) -> None:
    apply.ok(FLASH_SALE)
    before, trail = endpoints(harness), harness.audit()
    harness.clock.advance(30)  # a re-sent baseline would restart the cadence from here
    path = edited_copy(tmp_path, FLASH_SALE, 0, "order-health", url="https://shop.example.com/v2/orders")
    path = edited_copy(tmp_path, path, 0, "traffic-monitor", clamp={"min": "30s", "max": "5m"})

    result = apply.ok(path)

    assert result.lines == [
        f'~ endpoint "{FLASH_JOB}"/"traffic-monitor": clamp min 20s, max 5m -> min 30s, max 5m',
        f'~ endpoint "{FLASH_JOB}"/"order-health": '
        "url https://shop.example.com/metrics/orders -> https://shop.example.com/v2/orders",
        "= 8 endpoints unchanged",
        "applied 2 changes",
    ]
    after = endpoints(harness)
    assert after["order-health"].url == "https://shop.example.com/v2/orders"
    assert (after["traffic-monitor"].clamp.min_interval_ms, after["traffic-monitor"].clamp.max_interval_ms) == (
        30_000,
        300_000,
    )
    for name, endpoint in before.items():
        same = ("method", "baseline", "timeout_ms", "config_digest", "next_run_at", "paused")
        assert [getattr(after[name], f) for f in same] == [getattr(endpoint, f) for f in same], name
    new = harness.audit()[len(trail) :]
    assert [(r["action"], r["target_id"]) for r in new] == [
        ("UpdateEndpointConfig", before["traffic-monitor"].endpoint_id),
        ("UpdateEndpointConfig", before["order-health"].endpoint_id),
    ]
    assert apply.ok(path).lines[-1] == "no changes"


def test_every_compared_field_is_updated_from_the_file(harness: Harness, apply: Apply, tmp_path: Path) -> None:
    apply.ok(FLASH_SALE)
    content = document(FLASH_SALE)
    content["jobs"][0]["description"] = "Flash sale, EU region"
    write(tmp_path / "sale.yaml", content)
    path = edited_copy(
        tmp_path,
        tmp_path / "sale.yaml",
        0,
        "cache-warm-up",
        method="PUT",
        every="30m",
        timeout="10s",
        clamp=None,
        headers={"Authorization": "Bearer t0ken"},
        body='{"pages": "top"}',
    )

    result = apply.ok(path)

    old_description = document(FLASH_SALE)["jobs"][0]["description"]
    assert result.lines[0] == f'~ job "{FLASH_JOB}": description "{old_description}" -> "Flash sale, EU region"'
    assert re.fullmatch(
        f'~ endpoint "{FLASH_JOB}"/"cache-warm-up": method POST -> PUT; baseline every 1h -> every 30m; '
        r"clamp min 10m -> none; timeout 30s -> 10s; headers/body sha256:[0-9a-f]{8} -> sha256:[0-9a-f]{8}",
        result.lines[1],
    )
    assert result.lines[2:] == ["= 9 endpoints unchanged", "applied 2 changes"]
    assert "t0ken" not in result.out
    warm = endpoints(harness)["cache-warm-up"]
    assert (warm.method, warm.baseline.interval_ms, warm.timeout_ms) == ("PUT", 1_800_000, 10_000)
    assert (warm.clamp.min_interval_ms, warm.clamp.max_interval_ms) == (0, 0)
    assert warm.paused  # an update never touches pause state
    job = harness.a.GetJob(pb.GetJobRequest(job_id=active_jobs(harness)[FLASH_JOB])).job
    assert job.description == "Flash sale, EU region"
    assert apply.ok(path).lines[-1] == "no changes"


def test_a_changed_baseline_restarts_the_cadence_and_an_unchanged_one_does_not(
    harness: Harness, apply: Apply, tmp_path: Path
) -> None:
    apply.ok(FLASH_SALE)
    start = harness.clock.now()
    harness.clock.advance(30)
    path = edited_copy(tmp_path, FLASH_SALE, 0, "order-health", every="1m")
    path = edited_copy(tmp_path, path, 0, "inventory-check", timeout="5s")
    apply.ok(path)
    live = endpoints(harness)
    assert dt(live["order-health"].next_run_at) == harness.clock.now() + timedelta(minutes=1)
    assert dt(live["inventory-check"].next_run_at) == start + timedelta(minutes=3)


# --- what apply leaves alone -----------------------------------------------------------------------------------------


def test_pause_state_is_only_set_at_creation(harness: Harness, apply: Apply) -> None:
    apply.ok(FLASH_SALE)
    live = endpoints(harness)
    assert live["slow-page-analyzer"].paused
    assert not live["slow-page-analyzer"].HasField("paused_until")  # indefinitely, "until needed"
    agent = "agent: queries are slow"
    harness.a.PauseOrResumeEndpoint(
        pb.PauseOrResumeEndpointRequest(endpoint_id=live["query-tracer"].endpoint_id, resume=True, reason=agent)
    )
    harness.a.PauseOrResumeEndpoint(
        pb.PauseOrResumeEndpointRequest(endpoint_id=live["order-health"].endpoint_id, reason=agent)
    )
    trail = harness.audit()

    assert apply.ok(FLASH_SALE).lines[-1] == "no changes"

    after = endpoints(harness)
    assert not after["query-tracer"].paused
    assert after["order-health"].paused
    assert after["slow-page-analyzer"].paused
    assert harness.audit() == trail


def test_endpoints_missing_from_the_file_are_reported_and_left_alone(harness: Harness, apply: Apply) -> None:
    apply.ok(FLASH_SALE)
    job_id = active_jobs(harness)[FLASH_JOB]
    extra = harness.a.AddEndpointToJob(
        pb.AddEndpointToJobRequest(
            job_id=job_id,
            name="manual-probe",
            url="https://shop.example.com/probe",
            baseline=pb.Baseline(interval_ms=60_000),
        )
    ).endpoint_id

    result = apply.ok(FLASH_SALE)

    assert result.lines == [
        f'? endpoint "{FLASH_JOB}"/"manual-probe" not in file, left alone',
        "= 10 endpoints unchanged",
        "no changes",
    ]
    assert endpoints(harness)["manual-probe"].endpoint_id == extra


def test_prune_deletes_the_endpoints_a_file_no_longer_names_and_diff_shows_it_first(
    harness: Harness, apply: Apply
) -> None:
    apply.ok(FLASH_SALE)
    job_id = active_jobs(harness)[FLASH_JOB]
    other_job = harness.a.CreateJob(pb.CreateJobRequest(name="not in the file")).job_id
    probe = pb.AddEndpointToJobRequest(
        name="manual-probe", url="https://shop.example.com/probe", baseline=pb.Baseline(interval_ms=60_000)
    )
    extra = harness.a.AddEndpointToJob(pb.AddEndpointToJobRequest(job_id=job_id, **_fields(probe))).endpoint_id
    harness.a.AddEndpointToJob(pb.AddEndpointToJobRequest(job_id=other_job, **_fields(probe)))

    preview = apply(FLASH_SALE, "--prune", command="diff")
    result = apply.ok(FLASH_SALE, "--prune")
    again = apply(FLASH_SALE, "--prune", command="diff")

    deleted = f'- endpoint "{FLASH_JOB}"/"manual-probe" not in file, deleted (--prune)'
    assert preview.code == 1
    assert deleted in preview.lines
    assert result.lines == [deleted, "= 10 endpoints unchanged", "applied 1 change"]
    assert "manual-probe" not in endpoints(harness)
    assert again.code == 0
    trail = harness.a.ListAuditRecords(pb.ListAuditRecordsRequest(endpoint_id=extra)).records
    assert trail[0].action == "DeleteEndpoint"
    listing = harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=other_job)).endpoints
    assert [e.name for e in listing] == ["manual-probe"]  # a job the file does not name is never touched


def _fields(request: pb.AddEndpointToJobRequest) -> dict[str, Any]:
    return {"name": request.name, "url": request.url, "baseline": request.baseline}


def test_jobs_are_matched_within_the_tenant_and_among_active_jobs_only(harness: Harness, apply: Apply) -> None:
    apply.ok(FLASH_SALE)
    other = apply(FLASH_SALE, key=harness.b.key)
    assert other.code == 0
    assert other.lines[-1] == "applied 11 changes"
    harness.a.ArchiveJob(pb.ArchiveJobRequest(job_id=active_jobs(harness)[FLASH_JOB]))
    again = apply.ok(FLASH_SALE)
    assert again.lines[0] == f'+ job "{FLASH_JOB}"'


def test_two_active_jobs_with_the_files_name_stop_apply_before_any_change(harness: Harness, apply: Apply) -> None:
    for _ in range(2):
        harness.a.CreateJob(pb.CreateJobRequest(name=FLASH_JOB))
    trail = harness.audit()
    result = apply(FLASH_SALE)
    assert result.code == 4
    assert result.out == ""
    assert f"2 active jobs are named '{FLASH_JOB}'" in result.err
    assert harness.audit() == trail


# --- refused input ---------------------------------------------------------------------------------------------------


def test_an_invalid_file_exits_2_naming_the_file_and_path_and_changes_nothing(
    harness: Harness, apply: Apply, tmp_path: Path
) -> None:
    path = edited_copy(tmp_path, FLASH_SALE, 0, "slow-page-analyzer", every="50 seconds")
    path = edited_copy(tmp_path, path, 0, "query-tracer", cron="*/5 * * * *")

    result = apply(path)

    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == [
        f"pacerctl apply: error: {path} is not valid; nothing was changed",
        "  jobs[0].endpoints[3].every: invalid duration '50 seconds': use a duration such as 500ms, 20s, 5m, 2h, 1d"
        " or 1h30m",
        "  jobs[0].endpoints[4]: set exactly one of `every` or `cron`",
    ]
    assert active_jobs(harness) == {}
    assert harness.audit() == []


def test_a_missing_file_exits_2(apply: Apply, tmp_path: Path) -> None:
    result = apply(tmp_path / "nope.yaml")
    assert result.code == 2
    assert f"{tmp_path / 'nope.yaml'} is not valid" in result.err
    assert "cannot read the file" in result.err


def test_a_refused_call_stops_apply_and_a_fixed_file_carries_on(harness: Harness, apply: Apply, tmp_path: Path) -> None:
    # Below the server's 1 s floor: only the server can tell, so the file is valid and the call is refused.
    path = edited_copy(tmp_path, FLASH_SALE, 0, "inventory-check", every="500ms")

    refused = apply(path)

    assert refused.code == 2
    assert "pacerctl apply: stopped at" in refused.err
    assert '"inventory-check" every 500ms` (jobs[0].endpoints[2]); 3 of 11 changes were made' in refused.err
    assert "error: INVALID_ARGUMENT" in refused.err
    assert sorted(endpoints(harness)) == ["order-health", "traffic-monitor"]

    # The traffic monitor was made without its rules (they name endpoints the stopped apply never made): the next
    # apply gives them to it.
    assert list(endpoints(harness)["traffic-monitor"].policies) == []
    resumed = apply.ok(FLASH_SALE)
    assert resumed.lines[0].startswith(f'~ endpoint "{FLASH_JOB}"/"traffic-monitor": policies none -> [surge (new), ')
    assert resumed.lines[-2:] == ["= 1 endpoint unchanged", "applied 9 changes"]
    assert len(endpoints(harness)) == 10
    assert len(endpoints(harness)["traffic-monitor"].policies) == 10


# --- policies, jitter and signing ------------------------------------------------------------------------------------

SURGE = {
    "name": "surge",
    "when": "has(body.traffic_per_min) && body.traffic_per_min >= 5000",
    "then": [{"interval_hint": {"every": "20s", "ttl": "1h"}}, {"endpoint": "query-tracer", "resume": None}],
    "cooldown": "10m",
}
SECRET = "flash-sale-signing-secret-0123456789"


def test_rules_jitter_and_a_secret_round_trip_and_a_second_apply_changes_nothing(
    harness: Harness, apply: Apply, tmp_path: Path
) -> None:
    path = edited_copy(
        tmp_path, FLASH_SALE, 0, "order-health", policies=[SURGE], jitter="5s", signing_secret="${PACER_SECRET_ORDERS}"
    )
    first = apply(path, PACER_SECRET_ORDERS=SECRET)
    assert first.code == 0, first.err
    held = endpoints(harness)["order-health"]
    assert (held.jitter_ms, held.signed) == (5000, True)
    [rule] = held.policies
    assert (rule.name, rule.when, rule.cooldown_ms) == ("surge", SURGE["when"], 600_000)
    assert [action.WhichOneof("action") for action in rule.then] == ["interval_hint", "resume"]
    assert rule.then[0].interval_hint.interval_ms == 20_000
    assert SECRET not in first.out + first.err
    trail = harness.audit()

    again = apply(path, PACER_SECRET_ORDERS=SECRET)
    assert again.lines[-1] == "no changes"
    diff = apply(path, command="diff", PACER_SECRET_ORDERS=SECRET)
    assert (diff.code, diff.lines[-1]) == (0, "= 10 endpoints unchanged")
    assert harness.audit() == trail


def test_diff_shows_a_changed_rule_and_exits_1_and_apply_makes_exactly_that_change(
    harness: Harness, apply: Apply, tmp_path: Path
) -> None:
    path = edited_copy(tmp_path, FLASH_SALE, 0, "order-health", policies=[SURGE])
    apply.ok(path)
    before = endpoints(harness)["order-health"]
    calmer = {**SURGE, "cooldown": "30m"}
    path = edited_copy(tmp_path, path, 0, "order-health", policies=[calmer], jitter="2s")
    diff = apply(path, command="diff")
    assert diff.code == 1
    assert diff.lines[0] == (
        f'~ endpoint "{FLASH_JOB}"/"order-health": jitter none -> 2s; policies [surge] -> [surge (changed)]'
    )
    assert endpoints(harness)["order-health"] == before  # diff changes nothing
    apply.ok(path)
    after = endpoints(harness)["order-health"]
    assert (after.policies[0].cooldown_ms, after.jitter_ms) == (1_800_000, 2000)
    assert after.next_run_at == before.next_run_at  # neither rules nor jitter restart the cadence


def test_a_secret_comes_from_the_environment_only_and_is_sent_again_on_rotate(
    harness: Harness, apply: Apply, tmp_path: Path
) -> None:
    literal = edited_copy(tmp_path, FLASH_SALE, 0, "order-health", signing_secret=SECRET)
    refused = apply(literal)
    assert refused.code == 2
    assert "jobs[0].endpoints[1].signing_secret: must be `${VARIABLE}`" in refused.err
    assert SECRET not in refused.err

    path = edited_copy(tmp_path, FLASH_SALE, 0, "order-health", signing_secret="${PACER_SECRET_ORDERS}")
    unset = apply(path, PACER_SECRET_ORDERS="")
    assert unset.code == 2
    assert "the environment variable PACER_SECRET_ORDERS is not set" in unset.err

    assert apply(path, PACER_SECRET_ORDERS=SECRET).code == 0
    assert apply(path, PACER_SECRET_ORDERS="another-secret-" + SECRET).lines[-1] == "no changes"
    rotated = apply(path, "--rotate-secrets", PACER_SECRET_ORDERS="another-secret-" + SECRET)
    assert rotated.lines[0] == (
        f'~ endpoint "{FLASH_JOB}"/"order-health": signing signed -> new secret from $PACER_SECRET_ORDERS'
    )
    held = endpoints(harness)["order-health"]
    assert held.signed
    assert held.HasField("previous_secret_expires_at")  # the old secret still signs for the overlap


def test_rules_naming_endpoints_created_later_in_the_file_apply_on_a_fresh_tenant(
    harness: Harness, apply: Apply, tmp_path: Path
) -> None:
    first_named = {**SURGE, "then": [{"endpoint": "on-call-page", "one_shot": {"delay": "5m"}}]}
    path = edited_copy(tmp_path, FLASH_SALE, 0, "traffic-monitor", policies=[first_named])
    apply.ok(path)
    held = endpoints(harness)["traffic-monitor"]
    assert [rule.then[0].endpoint for rule in held.policies] == ["on-call-page"]
    assert apply.ok(path).lines[-1] == "no changes"
