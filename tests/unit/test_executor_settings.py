"""Executor settings: read from PACER_* variables, scheduler list parsing, identity and refused values."""

from __future__ import annotations

import os
import socket

import pytest

from pacer_common.settings import SettingsError, load
from pacer_executor.settings import ExecutorSettings


def test_defaults_connect_to_one_local_scheduler() -> None:
    settings = load(ExecutorSettings, {})

    assert settings.scheduler_addresses == ("127.0.0.1:50052",)
    assert settings.capacity == 100
    assert settings.capture_limit_bytes == 65536
    assert settings.drain_timeout_ms == 30_000
    assert settings.egress_allow == ""
    assert settings.tenant_pools == 256
    assert settings.max_unacked_results == 10_000


def test_values_come_from_pacer_variables() -> None:
    settings = load(
        ExecutorSettings,
        {
            "PACER_SCHEDULER_ADDRS": " sched-a:50052, sched-b:50052 ,,sched-a:50052",
            "PACER_CAPACITY": "7",
            "PACER_EXECUTOR_ID": "exec-1",
            "PACER_EGRESS_ALLOW": "loopback",
            "PACER_DRAIN_TIMEOUT_MS": "0",
            "PACER_TENANT_POOLS": "3",
            "PACER_MAX_UNACKED_RESULTS": "50",
        },
    )

    assert settings.scheduler_addresses == ("sched-a:50052", "sched-b:50052")
    assert settings.capacity == 7
    assert settings.identity == "exec-1"
    assert settings.egress_allow == "loopback"
    assert settings.drain_timeout_ms == 0
    assert settings.tenant_pools == 3
    assert settings.max_unacked_results == 50


def test_identity_defaults_to_host_and_process() -> None:
    assert ExecutorSettings().identity == f"{socket.gethostname()}-{os.getpid()}"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PACER_SCHEDULER_ADDRS": " , "}, "PACER_SCHEDULER_ADDRS"),
        ({"PACER_CAPACITY": "0"}, "PACER_CAPACITY"),
        ({"PACER_CAPACITY": "many"}, "PACER_CAPACITY"),
        ({"PACER_CAPTURE_LIMIT_BYTES": "-1"}, "PACER_CAPTURE_LIMIT_BYTES"),
        ({"PACER_DRAIN_TIMEOUT_MS": "-5"}, "PACER_DRAIN_TIMEOUT_MS"),
        ({"PACER_TENANT_POOLS": "0"}, "PACER_TENANT_POOLS"),
        ({"PACER_MAX_UNACKED_RESULTS": "0"}, "PACER_MAX_UNACKED_RESULTS"),
    ],
)
def test_unusable_values_are_refused_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load(ExecutorSettings, environ)
