"""Run retention: finished runs older than their tenant's retention are deleted in bounded batches; RUNNING runs and
recent ones stay, and a tenant's own `run_retention_days` wins over the service default."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.runs import RunStatus
from pacer_control.admin import run as admin
from pacer_control.metrics import ControlMetrics
from pacer_control.models import PolicyFiring, Run
from pacer_control.quotas import Quota, QuotaGuard
from pacer_control.retention import RetentionPolicy, RunHistory, Sweep, retention_policy, sweep
from pacer_control.settings import ControlSettings
from tests.support.harness import LEASE_GRACE_MS, Harness
from tests.support.polling import wait_for


def _endpoint(harness: Harness, client: object, name: str = "probe") -> str:
    job_id = client.CreateJob(pb.CreateJobRequest(name=name)).job_id  # type: ignore[attr-defined]
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name=name, url="https://status.example.com/", baseline=pb.Baseline(interval_ms=60_000)
    )
    return str(client.AddEndpointToJob(request).endpoint_id)  # type: ignore[attr-defined]


def _fire(harness: Harness, endpoint_id: str, count: int) -> list[str]:
    return [harness.fire(endpoint_id) for _ in range(count)]


def _stored(harness: Harness) -> set[str]:
    with harness.engine.connect() as connection:
        return set(connection.scalars(select(Run.id)))


def _stored_by(harness: Harness, tenant: str) -> set[str]:
    with harness.engine.connect() as connection:
        return set(connection.scalars(select(Run.id).where(Run.tenant_id == harness.tenants[tenant])))


def _sweep(harness: Harness, policy: RetentionPolicy) -> tuple[Sweep, float]:
    """One sweep at the harness's clock; (what it did, pacer_runs_pruned_total afterwards)."""
    registry = CollectorRegistry()
    metrics = ControlMetrics(registry)
    history = RunHistory(harness.engine, harness.catalog.keyring)

    async def once() -> Sweep:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return await sweep(history, harness.clock, pool, policy, metrics)

    swept = asyncio.run(once())
    return swept, registry.get_sample_value("pacer_runs_pruned_total") or 0.0


POLICY = RetentionPolicy(default_days=30, batch=1000, pause_s=0)


def test_old_finished_runs_go_and_running_and_recent_runs_stay(harness: Harness) -> None:
    old = _fire(harness, _endpoint(harness, harness.a), 3)
    _endpoint(harness, harness.a, "busy")
    harness.clock.advance(minutes=2)
    running = [c.run_id for c in harness.pipeline.claim_due(harness.clock.now(), 0, 1000, LEASE_GRACE_MS)]
    assert running  # claimed and never reported: these runs stay RUNNING
    harness.clock.advance(hours=31 * 24)
    recent = _fire(harness, _endpoint(harness, harness.a, "fresh"), 2)

    swept, counted = _sweep(harness, POLICY)

    assert _stored(harness) == set(running) | set(recent)
    assert not set(old) & _stored(harness)
    assert (swept.pruned, swept.tenants, counted) == (3, 1, 3.0)
    with harness.engine.connect() as connection:
        statuses = set(connection.scalars(select(Run.status).where(Run.id.in_(running))))
    assert statuses == {RunStatus.RUNNING}
    assert harness.a.ListRuns(pb.ListRunsRequest()).total == len(running) + 2


def test_runs_just_inside_the_retention_are_kept(harness: Harness) -> None:
    kept = _fire(harness, _endpoint(harness, harness.a), 2)
    harness.clock.advance(hours=29 * 24)

    swept, _ = _sweep(harness, POLICY)

    assert (swept.pruned, _stored(harness)) == (0, set(kept))


def test_a_tenants_own_retention_wins_over_the_default(harness: Harness) -> None:
    _fire(harness, _endpoint(harness, harness.a), 2)
    _fire(harness, _endpoint(harness, harness.b), 2)  # fires acme's endpoint too, when it is due with globex's
    acme, globex = _stored_by(harness, "acme"), _stored_by(harness, "globex")
    now = harness.clock.now()
    harness.catalog.set_tenant_quota(harness.tenants["acme"], {"run_retention_days": 1}, now)
    harness.catalog.set_tenant_quota(harness.tenants["globex"], {"run_retention_days": 90}, now)
    harness.clock.advance(hours=2 * 24)

    swept, _ = _sweep(harness, POLICY)  # the default (30 days) would keep both tenants' runs
    assert (swept.pruned, _stored(harness)) == (len(acme), globex)

    harness.clock.advance(hours=60 * 24)
    assert _sweep(harness, POLICY)[0].pruned == 0  # 62 days: within globex's 90
    harness.clock.advance(hours=30 * 24)
    assert _sweep(harness, POLICY)[0].pruned == len(globex)
    assert _stored(harness) == set()


def test_zero_days_keeps_runs_for_ever(harness: Harness) -> None:
    kept = _fire(harness, _endpoint(harness, harness.a), 2)
    harness.catalog.set_tenant_quota(harness.tenants["acme"], {"run_retention_days": 0}, harness.clock.now())
    harness.clock.advance(hours=400 * 24)

    assert _sweep(harness, POLICY)[0].pruned == 0
    assert _sweep(harness, RetentionPolicy(default_days=0, batch=10, pause_s=0))[0].pruned == 0
    assert _stored(harness) == set(kept)


def test_each_transaction_deletes_at_most_one_batch(harness: Harness) -> None:
    _fire(harness, _endpoint(harness, harness.a), 7)
    harness.clock.advance(hours=31 * 24)
    history = RunHistory(harness.engine, harness.catalog.keyring)
    before = harness.clock.now() - timedelta(days=30)

    assert history.prune_batch(harness.tenants["acme"], before, 3) == 3
    assert len(_stored(harness)) == 4

    swept, counted = _sweep(harness, RetentionPolicy(default_days=30, batch=3, pause_s=0))
    # acme: 3, then 1 (a short batch ends the tenant); globex: one empty batch.
    assert (swept.pruned, swept.batches, counted) == (4, 3, 4.0)
    assert _stored(harness) == set()


def test_pruning_deletes_oldest_first(harness: Harness) -> None:
    fired = _fire(harness, _endpoint(harness, harness.a), 4)
    harness.clock.advance(hours=31 * 24)
    history = RunHistory(harness.engine, harness.catalog.keyring)

    history.prune_batch(harness.tenants["acme"], harness.clock.now() - timedelta(days=30), 2)

    assert _stored(harness) == set(fired[2:])


def test_the_settings_make_the_policy_and_the_default_quota() -> None:
    settings = ControlSettings(
        run_retention_days=7, run_retention_batch=500, run_retention_pause_ms=20, run_retention_sweep_s=30
    )
    assert retention_policy(settings) == RetentionPolicy(default_days=7, batch=500, pause_s=0.02, sweep_s=30)
    assert ControlSettings().run_retention_days == 30


def test_quota_guard_shows_the_tenants_retention(harness: Harness) -> None:
    guard = QuotaGuard(harness.catalog, Quota(run_retention_days=30), harness.clock)
    harness.catalog.set_tenant_quota(harness.tenants["acme"], {"run_retention_days": 7}, harness.clock.now())

    assert guard.quota(harness.tenants["acme"]).run_retention_days == 7
    assert guard.quota(harness.tenants["globex"]).run_retention_days == 30


def test_admin_sets_shows_and_resets_a_tenants_retention(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = ControlSettings(var_dir=str(tmp_path / "var"), database_url=database_url)
    assert admin(["create-tenant", "acme"], settings) == 0

    assert admin(["set-quota", "acme", "--run-retention-days", "90"], settings) == 0
    assert "run_retention_days 90" in capsys.readouterr().out
    assert admin(["set-quota", "acme", "--run-retention-days", "default"], settings) == 0
    assert "run_retention_days default" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        admin(["set-quota", "acme", "--run-retention-days", "-1"], settings)


def test_pruning_many_runs_counts_them_all(harness: Harness) -> None:
    fired = _fire(harness, _endpoint(harness, harness.a), 25)
    harness.clock.advance(hours=31 * 24)

    swept, counted = _sweep(harness, RetentionPolicy(default_days=30, batch=10, pause_s=0))

    assert (swept.pruned, swept.batches, counted) == (len(fired), 3 + 1, 25.0)  # 10, 10, 5; globex's empty one
    with harness.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Run)) == 0


def test_pruned_runs_take_their_rules_outcomes_with_them(harness: Harness) -> None:
    job_id = harness.a.CreateJob(pb.CreateJobRequest(name="ruled")).job_id
    always = pb.Policy(name="always", when="true", then=[pb.PolicyAction(clear_hints=pb.PolicyClearHints())])
    request = pb.AddEndpointToJobRequest(
        job_id=job_id,
        name="ruled",
        url="https://status.example.com/",
        baseline=pb.Baseline(interval_ms=60_000),
        policies=[always],
    )
    endpoint_id = harness.a.AddEndpointToJob(request).endpoint_id
    old = harness.fire(endpoint_id)
    wait_for(lambda: _firings(harness) == {old}, 10, "the old run's firing")
    harness.clock.advance(hours=31 * 24)
    overdue = harness.fire(endpoint_id)  # the slot planned 31 days ago
    # Its rule acts (and re-plans the endpoint) off the result path: let it land before the next claim.
    wait_for(lambda: _firings(harness) == {old, overdue}, 10, "the overdue run's firing")
    recent = harness.fire(endpoint_id)
    wait_for(lambda: _firings(harness) == {old, overdue, recent}, 10, "the later runs' firings")

    _sweep(harness, RetentionPolicy(default_days=30, pause_s=0))

    assert _stored(harness) == {recent}
    assert _firings(harness) == {recent}
    health = harness.a.SummarizeEndpointHealth(pb.SummarizeEndpointHealthRequest(endpoint_id=endpoint_id))
    assert list(health.policy_counts) == [pb.PolicyCount(rule="always", fired=1)]


def _firings(harness: Harness) -> set[str]:
    with harness.engine.connect() as connection:
        return set(connection.scalars(select(PolicyFiring.run_id)))
