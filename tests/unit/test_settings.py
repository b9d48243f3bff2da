"""Settings: field `foo` from PACER_FOO, shared groups (TLS, operations) read under their own prefix."""

from __future__ import annotations

import pytest

from pacer_common.settings import ClientTls, Operations, ServerTls, SettingsError, load
from pacer_control.settings import ControlSettings
from pacer_executor.settings import ExecutorSettings
from pacer_gateway.settings import GatewaySettings
from pacer_mcp.settings import McpSettings
from pacer_scheduler.settings import SchedulerSettings


def test_a_group_variable_overrides_only_its_field_of_the_services_own_default() -> None:
    settings = load(SchedulerSettings, {"PACER_LOG_LEVEL": "DEBUG", "PACER_TLS_CERT_FILE": "c.pem"})

    assert settings.operations == Operations("DEBUG", metrics_addr="127.0.0.1:9465", health_addr="")
    assert settings.tls == ServerTls(cert_file="c.pem")
    assert settings.control_tls == ClientTls()


def test_the_client_and_server_tls_of_one_service_read_their_own_variables() -> None:
    env = {"PACER_TLS_CA_FILE": "ca.pem", "PACER_TLS_CLIENT_CERT_FILE": "me.pem", "PACER_TLS_CLIENT_KEY_FILE": "k"}
    settings = load(SchedulerSettings, {**env, "PACER_TLS_CLIENT_CA_FILE": "clients.pem"})

    assert settings.control_tls == ClientTls("ca.pem", "me.pem", "k")
    assert settings.tls == ServerTls(client_ca_file="clients.pem")


def test_without_variables_every_default_holds() -> None:
    assert load(ControlSettings, {}) == ControlSettings()
    assert ControlSettings().operations.metrics_addr == "127.0.0.1:9464"


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(SettingsError, match="PACER_BOOTSTRAP_DEV='maybe' is not a boolean"):
        load(ControlSettings, {"PACER_BOOTSTRAP_DEV": "maybe"})


EVERY_SERVICE = [ControlSettings, SchedulerSettings, ExecutorSettings, GatewaySettings, McpSettings]


@pytest.mark.parametrize("service", EVERY_SERVICE, ids=lambda cls: cls.__name__)
def test_every_service_runs_on_uvloop_unless_told_to_use_the_standard_loop(service: type) -> None:
    assert load(service, {}).event_loop == "uvloop"
    assert load(service, {"PACER_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(SettingsError, match="PACER_EVENT_LOOP=trio must be one of uvloop, asyncio"):
        load(service, {"PACER_EVENT_LOOP": "trio"})


def test_the_scheduler_names_the_jobs_it_measures_and_refuses_too_many() -> None:
    settings = load(SchedulerSettings, {"PACER_METRICS_JOBS": " job_a, job_b ,,", "PACER_LATE_THRESHOLD_MS": "5000"})
    assert settings.measured_jobs == frozenset({"job_a", "job_b"})
    assert settings.late_threshold_ms == 5000
    too_many = ",".join(f"job_{n}" for n in range(51))
    with pytest.raises(SettingsError, match="PACER_METRICS_JOBS names 51 jobs; at most 50"):
        load(SchedulerSettings, {"PACER_METRICS_JOBS": too_many})
