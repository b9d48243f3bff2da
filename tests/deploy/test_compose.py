"""compose.yaml, the single-host install with PostgreSQL, checked by structure (there is no Docker engine here):
every service runs the image its Dockerfile builds, with settings it reads, credentials only from the environment,
the hardening the Kubernetes pods get, public ports on loopback, and a start order gated by health checks."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import DOCKER, METRICS_PORTS, PACER_UID, REPO, SERVICES, settings_variables

COMPOSE = REPO / "compose.yaml"
CREDENTIALS = ("POSTGRES_PASSWORD", "PACER_SERVICE_TOKEN", "PACER_SECRETS_KEYS")
# Where each service listens for gRPC health (its API port, or the executor's health port).
HEALTH_PORTS = {"control": 50051, "scheduler": 50052, "executor": 50053}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # anchors and merge keys resolved as compose does
    return loaded


def test_one_postgresql_and_every_pacer_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", *SERVICES}
    assert compose["services"]["postgres"]["image"].startswith("postgres:")
    assert "postgres-data" in compose["volumes"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_the_image_its_dockerfile_builds_hardened_like_the_pods(
    compose: dict[str, Any], service: str
) -> None:
    spec = compose["services"][service]

    assert spec["image"] == f"ghcr.io/pacer/pacer-{service}:${{PACER_VERSION:-0.1.0}}"
    assert (REPO / spec["build"]["context"] / spec["build"]["dockerfile"]) == DOCKER / f"{service}.Dockerfile"
    assert spec["user"] == f"{PACER_UID}:{PACER_UID}"
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    assert any(mount.startswith("/var/lib/pacer:") for mount in spec["tmpfs"])


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_is_one_the_service_reads_and_credentials_come_from_the_environment(
    compose: dict[str, Any], service: str
) -> None:
    environment = compose["services"][service]["environment"]
    shared = set(compose["x-shared-settings"])
    own = set(environment) - shared

    assert own <= settings_variables(service), sorted(own - settings_variables(service))
    for name, value in environment.items():
        for credential in re.findall(r"\$\{(\w+)", str(value)):
            # ${NAME:?message}: compose refuses to start when the credential is not set.
            if credential in CREDENTIALS:
                assert f"${{{credential}:?" in value, name
        assert not re.search(r"password|token|key", str(value).split("${")[0], re.IGNORECASE), name


def test_shared_settings_are_each_read_by_some_service(compose: dict[str, Any]) -> None:
    for name in compose["x-shared-settings"]:
        assert any(name in settings_variables(service) for service in SERVICES), name


def test_the_control_plane_reaches_the_database_compose_runs(compose: dict[str, Any]) -> None:
    database = compose["services"]["postgres"]["environment"]
    url = compose["services"]["control"]["environment"]["PACER_DATABASE_URL"]

    assert url == (
        f"postgresql://{database['POSTGRES_USER']}:{database['POSTGRES_PASSWORD']}@postgres:5432/{database['POSTGRES_DB']}"
    )


def test_services_start_in_order_once_what_they_need_is_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    needs = {name: spec.get("depends_on", {}) for name, spec in services.items()}

    assert needs["control"] == {"postgres": {"condition": "service_healthy"}}
    assert needs["scheduler"] == {"control": {"condition": "service_healthy"}}
    assert needs["executor"] == {"scheduler": {"condition": "service_healthy"}}
    for name, port in HEALTH_PORTS.items():
        check = " ".join(services[name]["healthcheck"]["test"])
        assert f"is_serving('127.0.0.1:{port}')" in check, name
    for name, needed in needs.items():
        for dependency, how in needed.items():
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health check"


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_serves_its_metrics_on_its_port_published_on_loopback(
    compose: dict[str, Any], service: str
) -> None:
    spec = compose["services"][service]
    port = METRICS_PORTS[service]

    assert spec["environment"]["PACER_METRICS_ADDR"] == f"0.0.0.0:{port}"
    assert f"127.0.0.1:{port}:{port}" in spec["ports"]


def test_public_ports_listen_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, spec in compose["services"].items():
        for port in spec.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"
    assert "ports" not in compose["services"]["postgres"]
