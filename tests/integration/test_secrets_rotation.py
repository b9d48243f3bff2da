"""Rotating the key that seals endpoint secrets: `pacer-admin rotate-secrets-key` puts a new key first and seals
every endpoint again under it; a control plane already running opens the new values without a restart, and the
migration from plaintext rows seals what older releases stored in the clear."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from pacer_common.clock import FakeClock
from pacer_control.actions import ControlActions, EndpointSpec
from pacer_control.admin import run
from pacer_control.auth import Principal
from pacer_control.catalog import Catalog
from pacer_control.database import make_engine, migrate
from pacer_control.models import Endpoint, Job, Run
from pacer_control.pipeline import Pipeline
from pacer_control.quotas import Quota, QuotaGuard
from pacer_control.sealing import EndpointSecrets, key_parts, read_key_file, settings_keyring
from pacer_control.settings import ControlSettings
from pacer_control.tenancy import create_tenant
from pacer_control.validation import BaselineInput


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> ControlSettings:
    return ControlSettings(var_dir=str(tmp_path / "var"), database_url=database_url)


def _endpoints(catalog: Catalog, count: int) -> list[str]:
    clock = FakeClock()
    tenant = create_tenant(catalog, "acme", clock.now())
    actions = ControlActions(catalog, clock, 1000, QuotaGuard(catalog, Quota(), clock))
    who = Principal(tenant, "test")
    job = actions.create_job(who, "rotation", "")
    spec = EndpointSpec(
        name="probe",
        url="https://robot:pw@shop.example.com/",
        headers={"Authorization": "Bearer t"},
        baseline=BaselineInput(interval_ms=60_000),
    )
    return [actions.add_endpoint(who, job.id, spec, "").id for _ in range(count)]


def _key_ids(catalog: Catalog) -> set[str]:
    with catalog.engine.connect() as connection:
        return {key_parts(sealed)[1] for sealed in connection.scalars(select(Endpoint.secrets))}


def test_rotation_seals_everything_under_a_new_key_that_running_planes_can_open(
    settings: ControlSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    running = settings_keyring(settings)  # the embedded profile makes var/secrets-keys
    catalog = Catalog(make_engine(settings.database_url), running)
    made = _endpoints(catalog, 3)
    old_key = running.primary_id
    assert _key_ids(catalog) == {old_key}

    assert run(["rotate-secrets-key"], settings) == 0
    assert "sealed 3 endpoints again" in capsys.readouterr().out
    keys = [key.key_id for key in read_key_file(Path(settings.var_dir) / "secrets-keys")]
    assert keys[1:] == [old_key]
    assert _key_ids(catalog) == {keys[0]}

    # The plane that started before the rotation meets an unknown key id, reads the file again and opens it.
    claims = Pipeline(catalog.engine, running).claim_due(FakeClock().now().replace(year=2030), 0, 100, 1000)
    assert sorted(c.endpoint_id for c in claims) == sorted(made)
    assert {(c.url, c.headers["Authorization"]) for c in claims} == {("https://robot:pw@shop.example.com/", "Bearer t")}

    assert run(["rotate-secrets-key", "--reseal-only"], settings) == 0
    assert "sealed 0 endpoints again" in capsys.readouterr().out
    catalog.engine.dispose()


def test_rotation_refuses_keys_it_cannot_write(settings: ControlSettings) -> None:
    fixed = dataclasses.replace(settings, secrets_keys="kfixed:" + "A" * 43)
    assert run(["rotate-secrets-key"], fixed) == 1
    assert run(["rotate-secrets-key", "--reseal-only"], fixed) == 0


def test_the_migration_seals_what_older_releases_stored_in_the_clear(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, "0002")
    keyring = settings_keyring(ControlSettings(var_dir=str(tmp_path / "var")))
    tenant = create_tenant(Catalog(engine, keyring), "acme", FakeClock().now())
    now = FakeClock().now()
    with engine.begin() as connection:
        connection.execute(
            insert(Job.__table__).values(
                id="job_old",
                tenant_id=tenant,
                name="old",
                description="",
                status="active",
                created_at=now,
                updated_at=now,
            )
        )
        connection.exec_driver_sql(
            "INSERT INTO endpoints (id, tenant_id, job_id, name, url, method, headers, body, cron_timezone,"
            " interval_ms, min_interval_ms, max_interval_ms, timeout_ms, created_at, updated_at, anchor_at,"
            " failure_count, paused,"
            " next_run_source) VALUES ('ep_old', ?, 'job_old', 'old', 'https://u:hunter2@old.example.com/x', 'GET',"
            " '{\"X-Api-Key\": \"plain-secret\"}', '', '', 60000, 0, 0, 30000, ?, ?, ?, 0, 0, 'baseline-interval')",
            (tenant, now.replace(tzinfo=None), now.replace(tzinfo=None), now.replace(tzinfo=None)),
        )
    migrate(engine, keyring=keyring)
    with engine.connect() as connection:
        url, sealed = connection.execute(select(Endpoint.url, Endpoint.secrets)).one()
    assert url == "https://u:***@old.example.com/x"
    assert "plain-secret" not in sealed
    assert EndpointSecrets.open(keyring, "ep_old", sealed) == EndpointSecrets({"X-Api-Key": "plain-secret"}, "hunter2")
    engine.dispose()


def test_an_endpoint_whose_key_is_lost_fails_its_run_without_stopping_the_others(settings: ControlSettings) -> None:
    keyring = settings_keyring(settings)
    catalog = Catalog(make_engine(settings.database_url), keyring)
    lost, kept = _endpoints(catalog, 2)
    with catalog.engine.begin() as connection:
        connection.execute(Endpoint.__table__.update().where(Endpoint.id == lost).values(secrets="v1.kgone.AAAA"))
    now = FakeClock().now().replace(year=2030)
    claims = Pipeline(catalog.engine, keyring).claim_due(now, 0, 100, 1000)
    assert [claim.endpoint_id for claim in claims] == [kept]
    with catalog.engine.connect() as connection:
        status, message = connection.execute(select(Run.status, Run.error_message).where(Run.endpoint_id == lost)).one()
        failures, leased = connection.execute(
            select(Endpoint.failure_count, Endpoint.lease_run_id).where(Endpoint.id == lost)
        ).one()
    assert (status, failures, leased) == ("FAILURE", 1, None)
    assert "secrets do not open" in message
    catalog.engine.dispose()
