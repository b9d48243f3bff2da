"""The whole pipeline over mutual TLS, configured only through `PACER_TLS_*` variables, as an operator would.

Control and scheduler require client certificates from the test CA; the scheduler and the executor present one.
Readiness is asked on each server's plaintext health port (PACER_HEALTH_ADDR), as kubelet probes would.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.certs import make_pki
from tests.support.harness import Client, status_of
from tests.support.polling import wait_for
from tests.support.processes import free_port, health_status
from tests.support.stack import Stack
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e


def local() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_runs_flow_when_every_hop_is_mutual_tls(tmp_path: Path, database_url: str, target: HttpTarget) -> None:
    pki = make_pki(tmp_path / "pki")
    serving = {"PACER_TLS_CERT_FILE": pki.server.cert_file, "PACER_TLS_KEY_FILE": pki.server.key_file}
    requiring_clients = {**serving, "PACER_TLS_CLIENT_CA_FILE": pki.ca.cert_file}
    presenting = {
        "PACER_TLS_CA_FILE": pki.ca.cert_file,
        "PACER_TLS_CLIENT_CERT_FILE": pki.client.cert_file,
        "PACER_TLS_CLIENT_KEY_FILE": pki.client.key_file,
    }
    client_tls = grpc.ssl_channel_credentials(
        pki.ca.cert.read_bytes(), pki.client.key.read_bytes(), pki.client.cert.read_bytes()
    )
    control_health = local()
    stack = Stack(
        tmp_path,
        database_url,
        control_env={**requiring_clients, "PACER_HEALTH_ADDR": control_health},
        client_credentials=client_tls,
    )
    try:
        scheduler_health = local()
        stack.add_scheduler(env={**requiring_clients, **presenting, "PACER_HEALTH_ADDR": scheduler_health})
        stack.add_executor(env=presenting)
        wait_for(lambda: health_status(stack.health_addrs["executor"]) == "SERVING", 20, "the executor's stream")

        request = pb.AddEndpointToJobRequest(
            job_id=stack.job("tls"), name="tls", url=target.url("/tls"), baseline=pb.Baseline(interval_ms=1000)
        )
        endpoint_id = stack.client.AddEndpointToJob(request).endpoint_id
        wait_for(lambda: sum(r.status == pb.RUN_STATUS_SUCCESS for r in stack.runs(endpoint_id)) >= 2, 20, "two runs")

        assert health_status(control_health) == health_status(scheduler_health) == "SERVING"
        with grpc.insecure_channel(stack.control_addr) as plaintext, pytest.raises(grpc.RpcError) as refused:
            Client(plaintext, stack.client.key).ListJobs(pb.ListJobsRequest())
        assert status_of(refused.value) == grpc.StatusCode.UNAVAILABLE
    finally:
        stack.close()
    assert '"tls": "mutual"' in stack.control.logs()
