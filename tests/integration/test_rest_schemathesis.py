"""Schemathesis against the gateway's own /openapi.json, in front of the real control plane.

Every operation gets generated requests three ways: random ids (mostly 404s), real ids of the caller's objects (so
bodies reach the control plane's validation and its successes), and negative data (schema-violating requests, which
must be rejected with a 4xx). No answer may be a 5xx, and every answer must match the document: status code,
content type, headers and body schema. Examples are bounded and derandomized to keep this reproducible and quick.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pacer_common.client import AsyncControlClient
from pacer_gateway.app import create_app
from pacer_gateway.routes import ROUTES
from tests.support.harness import Harness

EXAMPLES_PER_OPERATION = 50
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class GatewayThread:
    """The gateway served on its own event loop in a thread: schemathesis calls it with blocking `requests`."""

    def __init__(self, control_addr: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.url = self._call(self._start(control_addr))

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _start(self, control_addr: str) -> str:
        self._client = AsyncControlClient(control_addr)
        self._runner = web.AppRunner(create_app(self._client), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._client.close()

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def gateway(harness: Harness) -> Iterator[GatewayThread]:
    running = GatewayThread(harness.address)
    yield running
    running.stop()


def real_ids(gateway: GatewayThread, harness: Harness) -> dict[str, str]:
    """Path parameters naming real objects of the caller: a job, one of its endpoints and one of its runs."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {harness.a.key}"
    job = session.post(f"{gateway.url}/jobs", json={"name": "fuzzed"}).json()["jobId"]
    endpoint = {"name": "e", "url": "https://example.com/", "baseline": {"intervalMs": 60000}}
    endpoint_id = session.post(f"{gateway.url}/jobs/{job}/endpoints", json=endpoint).json()["endpointId"]
    session.close()
    return {"jobId": job, "endpointId": endpoint_id, "runId": harness.fire(endpoint_id)}


@dataclass(frozen=True)
class Plan:
    strategy: Any
    checks: list[Any]
    negative: bool = False


def exercise(plan: Plan, base_url: str, session: requests.Session) -> None:
    """Run bounded, derandomized examples of the plan; raises with schemathesis' report on the first failure."""

    @given(case=plan.strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, session=session, checks=plan.checks)

    try:
        run()
    except Unsatisfiable:
        # Some operations (a single path id) have no wrong value that can travel in a URL: nothing to send.
        if not plan.negative:
            raise


def plans(operation: Any, ids: dict[str, str], key: str) -> list[Plan]:
    """Random ids, the caller's real ids, and negative data when the operation has input to break.

    Negative cases keep the valid key: left to themselves most of them only drop it, and 401s are tested elsewhere.
    """
    own_ids = {name: value for name, value in ids.items() if f"{{{name}}}" in operation.path}
    found = [
        Plan(operation.as_strategy(), CONFORMANCE),
        Plan(operation.as_strategy(path_parameters=own_ids), CONFORMANCE),
    ]
    if any(True for _ in operation.iter_parameters()) or len(operation.body):
        auth = {"Authorization": f"Bearer {key}"}
        negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, headers=auth)
        found.append(Plan(negative, [*CONFORMANCE, negative_data_rejection], negative=True))
    return found


# Hundreds of generated requests per backend: about a minute on a quiet 2-core machine, several when it is busy.
@pytest.mark.timeout(600)
def test_generated_requests_get_no_5xx_and_only_documented_answers(harness, gateway):
    session = requests.Session()
    statuses: Counter[int] = Counter()
    session.hooks["response"].append(lambda response, *_, **__: statuses.update([response.status_code]))
    # The key is the value of the document's security scheme: schemathesis sends it with every case.
    config = SchemathesisConfig.from_dict({"auth": {"openapi": {"apiKey": {"bearer": harness.a.key}}}})
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json", config=config)
    ids = real_ids(gateway, harness)
    failures: list[str] = []
    # Deletions last, deepest first, so the other operations still find the job and endpoint alive.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda o: (o.method.upper() == "DELETE", -len(o.path)),
    )
    # Loaded from its URL, the document's own operation is left out; every action and /healthz must be there.
    assert {o.label for o in operations} >= {f"{r.method} {r.path}" for r in ROUTES} | {"GET /healthz"}

    for operation in operations:
        for plan in plans(operation, ids, harness.a.key):
            try:
                exercise(plan, gateway.url, session)
            except (AssertionError, BaseExceptionGroup) as error:  # collect every operation's report
                failures.append(f"{operation.label}: {error}")
    session.close()
    assert not failures, "\n\n".join(failures)
    # The generated requests reached past validation into the control plane's successes and refusals.
    assert {200, 201, 400, 404} <= set(statuses), statuses
