"""No credential reaches a log: target headers, API keys and the service token stay out of every service's log.

The services run at DEBUG, so every log statement on the run's path is exercised: successes, HTTP failures,
timeouts, refused connections, and calls with a wrong API key.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from pacer.control.v1 import control_service_pb2 as pb
from tests.support.harness import Client
from tests.support.polling import wait_for
from tests.support.processes import free_port
from tests.support.stack import Stack
from tests.support.target import HttpTarget

pytestmark = pytest.mark.e2e

DEBUG = {"PACER_LOG_LEVEL": "DEBUG"}
TARGET_SECRET = "target-secret-XYZ"
HEADER_SECRET = "apikey-secret-ABC123"
URL_PASSWORD = "url-password-QRS"
WRONG_KEY = "pk_AbCdEfGh_" + "Z" * 40  # well formed, unknown
HEADERS = {"Authorization": f"Bearer {TARGET_SECRET}", "X-Api-Key": HEADER_SECRET}
FINAL = {pb.RUN_STATUS_SUCCESS, pb.RUN_STATUS_FAILURE, pb.RUN_STATUS_TIMEOUT}


def add(stack: Stack, job_id: str, name: str, url: str, timeout_ms: int = 0) -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id,
        name=name,
        url=url,
        headers=HEADERS,  # every endpoint sends the secrets, whatever becomes of its run
        baseline=pb.Baseline(interval_ms=1000),
        timeout_ms=timeout_ms,
    )
    return str(stack.client.AddEndpointToJob(request).endpoint_id)


def final_statuses(stack: Stack, endpoint_id: str) -> set[int]:
    return {run.status for run in stack.runs(endpoint_id)} & FINAL


def json_lines(text: str) -> list[dict[str, object]]:
    # gRPC's C core writes its own plain-text lines to standard error; Pacer's lines are the JSON ones.
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_no_key_token_or_secret_header_value_is_ever_logged(
    tmp_path: Path, database_url: str, target: HttpTarget
) -> None:
    target.respond("/fail", status=500)
    target.respond("/slow", delay_ms=3000)
    stack = Stack(tmp_path, database_url, control_env=DEBUG)
    try:
        stack.add_scheduler(env=DEBUG)
        stack.add_executor(env=DEBUG)
        job_id = stack.job("secrets")
        closed = f"127.0.0.1:{free_port()}"
        expected = {
            add(stack, job_id, "ok", target.url("/ok")): pb.RUN_STATUS_SUCCESS,
            add(stack, job_id, "fail", target.url("/fail")): pb.RUN_STATUS_FAILURE,
            add(stack, job_id, "slow", target.url("/slow"), timeout_ms=300): pb.RUN_STATUS_TIMEOUT,
            # A connection refused, with a token in the query string of the URL.
            add(stack, job_id, "refused", f"http://{closed}/down?token={URL_PASSWORD}"): pb.RUN_STATUS_FAILURE,
            # Refused by aiohttp before sending: a password in the URL and an Authorization header conflict.
            add(stack, job_id, "conflict", f"http://ops:{URL_PASSWORD}@{closed}/"): pb.RUN_STATUS_FAILURE,
        }
        for endpoint_id, status in expected.items():
            wait_for(
                lambda e=endpoint_id, s=status: s in final_statuses(stack, e), 20, f"a {status} run of {endpoint_id}"
            )
        with grpc.insecure_channel(stack.control_addr) as channel, pytest.raises(grpc.RpcError):
            Client(channel, WRONG_KEY).ListJobs(pb.ListJobsRequest())
        assert target.hits_on("/ok")[0].headers["Authorization"] == f"Bearer {TARGET_SECRET}"  # the secret was sent
    finally:
        stack.close()

    logs = stack.log_texts()
    secrets = {
        "the dev API key": (stack.var / "dev-api-key").read_text().strip(),
        "the service token": (stack.var / "service-token").read_text().strip(),
        "a wrong API key": WRONG_KEY,
        "a target's bearer token": TARGET_SECRET,
        "a target's API key header": HEADER_SECRET,
        "a password in a URL": URL_PASSWORD,
    }
    assert {"control.log", "scheduler.log", "executor.log"} <= set(logs)
    for name, text in logs.items():
        leaked = [what for what, secret in secrets.items() if secret in text]
        assert not leaked, f"{name} contains {leaked}"

    finished = [line for line in json_lines(logs["executor.log"]) if line.get("event") == "run.finished"]
    assert {line["endpoint_id"] for line in finished} >= set(expected)
    assert all(line["run_id"] and line["tenant"] for line in finished)
