"""The control plane as a real process: health, reflection, the dev key, the admin CLI and the flash-sale example."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.settings import process_environment
from tests.support.harness import Client, status_of
from tests.support.processes import BIN, start_control

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = {
    "CreateJob", "GetJob", "ListJobs", "UpdateJob", "ArchiveJob",
    "AddEndpointToJob", "UpdateEndpointConfig", "DeleteEndpoint", "ListJobEndpoints",
    "ApplyIntervalHint", "ScheduleOneShotRun", "PauseOrResumeEndpoint", "ClearAdaptiveHints", "ResetFailureCount",
    "ListRuns", "GetRunDetails", "SummarizeEndpointHealth",
}  # fmt: skip
ADDITIONS = {"ListAuditRecords"}  # beside the 17 actions: the audit trail's read path


def run_example(script: str, *args: str, addr: str, key: str) -> str:
    env = process_environment({"PACER_CONTROL_ADDR": addr, "PACER_API_KEY": key})
    done = subprocess.run(
        [sys.executable, "-m", f"examples.{script.removesuffix('.py')}", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def admin(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pacer-admin"), "--database-url", database_url, *args], capture_output=True, text=True, timeout=60
    )


def test_reflection_lists_the_seventeen_actions_and_the_additions(tmp_path: Path, database_url: str) -> None:
    control, addr = start_control(tmp_path, database_url)
    try:
        with grpc.insecure_channel(addr) as channel:
            reflected = ProtoReflectionDescriptorDatabase(channel)
            assert "pacer.control.v1.ControlService" in reflected.get_services()
            service = reflected.FindFileContainingSymbol("pacer.control.v1.ControlService").service[0]
            assert {method.name for method in service.method} == ACTIONS | ADDITIONS
    finally:
        assert control.stop() == 0


def test_dev_key_is_private_and_survives_restarts(tmp_path: Path, database_url: str) -> None:
    control, _ = start_control(tmp_path, database_url)
    control.stop()
    key_file = tmp_path / "var" / "dev-api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first_key = key_file.read_text()
    control, addr = start_control(tmp_path, database_url, name="control-again")
    try:
        assert key_file.read_text() == first_key
        with grpc.insecure_channel(addr) as channel:
            assert Client(channel, first_key.strip()).ListJobs(pb.ListJobsRequest()).jobs == []
    finally:
        control.stop()
    assert first_key.strip() not in control.logs()


def test_flash_sale_job_is_set_up_and_steered_with_the_dev_key(tmp_path: Path, database_url: str) -> None:
    control, addr = start_control(tmp_path, database_url)
    key = (tmp_path / "var" / "dev-api-key").read_text().strip()
    try:
        output = run_example("flash_sale.py", "setup", addr=addr, key=key)
        job_id = output.strip().splitlines()[-1].removeprefix("job ")
        steering = run_example("flash_sale.py", "steer", job_id, addr=addr, key=key)
        with grpc.insecure_channel(addr) as channel:
            endpoints = Client(channel, key).ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id)).endpoints
    finally:
        control.stop()
    assert len(endpoints) == 10
    paused = {e.name for e in endpoints if e.paused}
    assert paused == {"query-tracer", "cache-warm-up", "scale-workers", "ops-chat", "support-chat", "on-call-page"}
    assert "tighten traffic-monitor to 20 s" in steering
    assert "cache-warm-up one-shot at" in steering


def test_admin_cli_creates_tenants_and_keys_and_revokes_them(tmp_path: Path, database_url: str) -> None:
    assert admin(database_url, "create-tenant", "acme").returncode == 0
    assert admin(database_url, "create-tenant", "acme").returncode == 1
    created = admin(database_url, "create-key", "acme", "--label", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    control, addr = start_control(tmp_path, database_url)
    try:
        with grpc.insecure_channel(addr) as channel:
            client = Client(channel, key)
            assert client.CreateJob(pb.CreateJobRequest(name="billing")).job_id
            prefix = key.split("_")[1]
            assert key not in admin(database_url, "list-keys", "acme").stdout
            assert admin(database_url, "set-quota", "acme", "--max-jobs", "1").returncode == 0
            assert "max_jobs         1" in admin(database_url, "show-quota", "acme").stdout
            assert admin(database_url, "revoke-key", prefix).returncode == 0
            with pytest.raises(grpc.RpcError) as refused:
                client.ListJobs(pb.ListJobsRequest())
            assert status_of(refused.value) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        control.stop()
