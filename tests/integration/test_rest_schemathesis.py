"""Schemathesis against the gateway's own /openapi.json, in front of the real control plane.

Every operation gets generated requests three ways: random ids (mostly 404s), real ids of the caller's objects (so
bodies reach the control plane's validation and its successes), and negative data (schema-violating requests, which
must be rejected with a 4xx). No answer may be a 5xx, and every answer must match the document: status code,
content type, headers and body schema. A schema-valid request must not be refused as invalid (400): the document
states every limit the control plane enforces, and the few refusals no schema can express are listed in TOLERATED.
Examples are bounded and derandomized to keep this reproducible and quick.
"""

from __future__ import annotations

import asyncio
import re
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
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pacer_common.client import AsyncControlClient
from pacer_gateway.app import create_app
from pacer_gateway.routes import ROUTES
from tests.support.harness import MIN_INTERVAL_MS, Harness

EXAMPLES_PER_OPERATION = 50
_ENDPOINT = "/jobs/{jobId}/endpoints/{endpointId}"
_ENDPOINTS = ("POST /jobs/{jobId}/endpoints", f"PATCH {_ENDPOINT}")
# Refusals of schema-valid requests that no JSON Schema can express: (operation, parameter at fault, the control
# plane's reason), each a regular expression matched in full. A 400 is tolerated only when every parameter it names
# is listed here for its operation; any other refusal of a schema-valid request fails the test.
TOLERATED: tuple[tuple[str, str, str], ...] = (
    # A page token is opaque: only one the server issued is one.
    ("GET /jobs", "pageToken", "is not a token returned by ListJobs"),
    ("GET /audit", "pageToken", "is not a token returned by ListAuditRecords"),
    # Exactly one of two query parameters: OpenAPI describes each parameter on its own.
    ("GET /audit", "jobId", "give exactly one of job_id and endpoint_id"),
    # A cron expression's syntax, and an IANA time zone of the control plane's tz database.
    *((op, r"baseline\.cron\.(expression|timezone)", ".*") for op in _ENDPOINTS),
    # Compares two fields by value: the min clamp must not exceed the max clamp; jitter below the interval.
    *((op, "clamp", "min_interval_ms must not exceed max_interval_ms") for op in _ENDPOINTS),
    *((op, "jitterMs", r"must be less than the baseline interval \(\d+ ms\)") for op in _ENDPOINTS),
    # A rule's condition must compile as CEL and evaluate to a bool; rule names are unique on an endpoint.
    *((op, r"policies(\.rules)?\[\d+\]\.when", ".*") for op in _ENDPOINTS),
    *((op, r"policies(\.rules)?\[\d+\]\.name", "repeats the name .*") for op in _ENDPOINTS),
    # Times judged against the server's clock.
    (f"POST {_ENDPOINT}/hints/one-shot", "runAt", "is more than 5 minutes in the past|is more than 366 days ahead"),
    (f"POST {_ENDPOINT}/pause", "pauseUntil", "must be in the future"),
)


def tolerated(label: str, response: Response) -> bool:
    """True when `response` refuses the request only for reasons in TOLERATED."""
    if response.status_code != 400:
        return False
    faults = response.json().get("invalidParams") or [{"name": "", "reason": ""}]
    return all(
        any(
            op == label and re.fullmatch(name, fault["name"]) and re.fullmatch(reason, fault["reason"], re.DOTALL)
            for op, name, reason in TOLERATED
        )
        for fault in faults
    )


def schema_valid_requests_are_accepted(ctx: CheckContext, response: Response, case: Any) -> bool | None:
    """`positive_data_acceptance`, less the refusals in TOLERATED."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if tolerated(case.operation.label, response):
            return None
        raise


CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    schema_valid_requests_are_accepted,
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
        app = create_app(self._client, min_interval_ms=MIN_INTERVAL_MS)
        self._runner = web.AppRunner(app, access_log=None)
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
