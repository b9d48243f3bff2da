"""The control plane process prunes old runs by itself: its sweep deletes an old finished run, keeps a recent one,
counts it in `pacer_runs_pruned_total` and logs `runs.pruned`."""

from __future__ import annotations

import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert, select

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.ids import new_run_id
from pacer_common.runs import RunStatus
from pacer_control.database import make_engine
from pacer_control.models import Endpoint, Run
from tests.support.harness import Client
from tests.support.processes import free_port, start_control

pytestmark = pytest.mark.e2e


def _finished_run(engine: Engine, endpoint_id: str, scheduled_for: datetime) -> str:
    with engine.begin() as connection:
        owners = select(Endpoint.tenant_id, Endpoint.job_id).where(Endpoint.id == endpoint_id)
        endpoint = connection.execute(owners).one()
        run_id = new_run_id()
        connection.execute(
            insert(Run).values(
                id=run_id,
                tenant_id=endpoint.tenant_id,
                job_id=endpoint.job_id,
                endpoint_id=endpoint_id,
                status=RunStatus.SUCCESS,
                source="baseline-interval",
                attempt=1,
                scheduled_for=scheduled_for,
                lease_expires_at=scheduled_for + timedelta(seconds=40),
                started_at=scheduled_for,
                finished_at=scheduled_for + timedelta(milliseconds=50),
                duration_ms=50,
                http_status=200,
            )
        )
    return run_id


def _pruned_total(metrics_addr: str) -> float:
    with urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    return sum(s.value for s in samples if s.name == "pacer_runs_pruned_total")


def test_the_control_plane_prunes_old_runs_by_itself(tmp_path: Path, database_url: str) -> None:
    metrics_addr = f"127.0.0.1:{free_port()}"
    env = {"PACER_RUN_RETENTION_DAYS": "1", "PACER_RUN_RETENTION_SWEEP_S": "1", "PACER_METRICS_ADDR": metrics_addr}
    control, addr = start_control(tmp_path, database_url, env=env)
    engine = make_engine(database_url)
    try:
        with grpc.insecure_channel(addr) as channel:
            client = Client(channel, (tmp_path / "var" / "dev-api-key").read_text().strip())
            job_id = client.CreateJob(pb.CreateJobRequest(name="history")).job_id
            hourly = pb.Baseline(interval_ms=3_600_000)
            request = pb.AddEndpointToJobRequest(
                job_id=job_id, name="probe", url="https://status.example.com/", baseline=hourly
            )
            endpoint_id = client.AddEndpointToJob(request).endpoint_id
        now = datetime.now(UTC)
        _finished_run(engine, endpoint_id, now - timedelta(days=3))
        recent = _finished_run(engine, endpoint_id, now - timedelta(hours=1))

        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as connection:
                stored = set(connection.scalars(select(Run.id)))
            if stored == {recent}:
                break
            assert time.monotonic() < deadline, f"the old run was not pruned: {stored}"
            time.sleep(0.2)

        assert _pruned_total(metrics_addr) == 1
        assert '"event": "runs.pruned"' in control.logs()
    finally:
        engine.dispose()
        assert control.stop() == 0
