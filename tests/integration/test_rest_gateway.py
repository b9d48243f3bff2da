"""The REST gateway over HTTP: every route against the real control plane, and every error class as problem+json.

The gateway app runs on a real socket (aiohttp TestServer on 127.0.0.1) with a real AsyncControlClient, called with
a real HTTP client. Behaviour that never reaches a database (auth header parsing, body decoding, quota and upstream
failures) runs once against a tiny fake ControlService on a real grpc.aio server.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import grpc
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from pacer.control.v1 import control_service_pb2 as pb
from pacer.control.v1 import control_service_pb2_grpc as pb_grpc
from pacer_common.client import AsyncControlClient
from pacer_common.errors import QuotaViolation, ResourceExhausted, Unavailable
from pacer_common.ports import parse_addr
from pacer_common.status import to_grpc_status
from pacer_gateway.app import create_app
from pacer_gateway.console import CONTENT_SECURITY_POLICY as CONSOLE_POLICY
from pacer_gateway.metrics import GatewayMetrics
from pacer_gateway.routes import ROUTES
from pacer_gateway.settings import GatewaySettings, load_settings
from tests.support.harness import Harness

PROBLEM = "application/problem+json"
ENDPOINT = {
    "name": "check_api_latency",
    "url": "https://api.example.com/health",
    "baseline": {"intervalMs": 60000},
    "clamp": {"minIntervalMs": "1000", "maxIntervalMs": 3600000},
    "headers": {"X-Team": "sre"},
    "reason": "watch checkout",
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def invalid(self) -> dict[str, str]:
        """invalidParams as name -> reason."""
        return {p["name"]: p["reason"] for p in self.body.get("invalidParams", [])}


class Rest:
    """Calls the gateway over HTTP with one tenant's key (or none)."""

    def __init__(self, client: TestClient, key: str | None) -> None:
        self._client = client
        self.key = key

    def as_key(self, key: str | None) -> Rest:
        return Rest(self._client, key)

    @property
    def client(self) -> TestClient:
        """The HTTP client, for requests that are not API calls (the console's files)."""
        return self._client

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
    ) -> Answer:
        sent = dict(headers or {})
        if self.key is not None:
            sent.setdefault("Authorization", f"Bearer {self.key}")
        async with self._client.request(method, path, json=body, data=data, params=params, headers=sent) as response:
            text = await response.text()
            if response.status >= 400:
                assert response.content_type == PROBLEM, text
            parsed = json.loads(text) if text else None
            if isinstance(parsed, dict) and response.content_type == PROBLEM:
                assert parsed["status"] == response.status
                assert parsed["type"] == "about:blank"
                assert parsed["title"]
                assert parsed["detail"]
                assert parsed["code"]
            return Answer(response.status, parsed, response.headers)


@pytest_asyncio.fixture
async def rest(harness: Harness) -> AsyncIterator[Rest]:
    """The gateway in front of the real control plane, calling as tenant a."""
    control = AsyncControlClient(harness.address)
    client = TestClient(TestServer(create_app(control), host="127.0.0.1"))
    await client.start_server()
    yield Rest(client, harness.a.key)
    await client.close()
    await control.close()


async def new_job(rest: Rest, name: str = "Production Health") -> str:
    answer = await rest("POST", "/jobs", {"name": name, "description": "flash sale"})
    assert answer.status == 201, answer.body
    return str(answer.body["jobId"])


async def new_endpoint(rest: Rest, job_id: str, **fields: Any) -> str:
    answer = await rest("POST", f"/jobs/{job_id}/endpoints", {**ENDPOINT, **fields})
    assert answer.status == 201, answer.body
    return str(answer.body["endpointId"])


async def endpoint_row(rest: Rest, job_id: str, endpoint_id: str) -> dict[str, Any]:
    listed = (await rest("GET", f"/jobs/{job_id}/endpoints")).body["endpoints"]
    return next(row for row in listed if row["endpointId"] == endpoint_id)


# -- every route, answered ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_job_routes_create_read_list_update_and_archive(rest, harness):
    created = await rest("POST", "/jobs", {"name": "Production Health", "description": "flash sale"})
    assert created.status == 201
    job_id = created.body["jobId"]
    assert created.headers["Location"] == f"/jobs/{job_id}"
    assert created.body["createdAt"] == "2026-01-05T10:00:00Z"

    job = (await rest("GET", f"/jobs/{job_id}")).body["job"]
    assert job["name"] == "Production Health"
    assert job["description"] == "flash sale"
    assert job["status"] == "JOB_STATUS_ACTIVE"
    assert job["endpointCount"] == 0
    assert job["failureCount"] == 0
    assert "archivedAt" not in job

    other = await new_job(rest, "Nightly exports")
    first = (await rest("GET", "/jobs", params={"pageSize": "1", "status": "JOB_STATUS_ACTIVE"})).body
    assert [j["jobId"] for j in first["jobs"]] == [other]
    assert first["jobs"][0]["endpointCount"] == 0
    second = (await rest("GET", "/jobs", params={"pageSize": "1", "pageToken": first["nextPageToken"]})).body
    assert [j["jobId"] for j in second["jobs"]] == [job_id]

    # snake_case request names are accepted like lowerCamelCase ones
    updated = await rest("PATCH", f"/jobs/{job_id}", {"name": "Checkout health", "reason": "rename"})
    assert updated.status == 200
    assert updated.body["updatedAt"] == "2026-01-05T10:00:00Z"
    assert (await rest("GET", f"/jobs/{job_id}")).body["job"]["name"] == "Checkout health"

    archived = await rest("DELETE", f"/jobs/{job_id}", params={"reason": "sale over"})
    assert archived.status == 200
    assert archived.body["archivedAt"] == "2026-01-05T10:00:00Z"
    assert (await rest("GET", f"/jobs/{job_id}")).body["job"]["status"] == "JOB_STATUS_ARCHIVED"
    archived_only = (await rest("GET", "/jobs", params={"status": "JOB_STATUS_ARCHIVED"})).body
    assert [j["jobId"] for j in archived_only["jobs"]] == [job_id]
    assert archived_only["nextPageToken"] == ""
    assert {"action": "ArchiveJob", "reason": "sale over"}.items() <= harness.audit()[-1].items()


@pytest.mark.asyncio
async def test_endpoint_routes_add_list_update_and_delete(rest, harness):
    job_id = await new_job(rest)
    added = await rest("POST", f"/jobs/{job_id}/endpoints", ENDPOINT)
    assert added.status == 201
    assert "Location" not in added.headers
    endpoint_id = added.body["endpointId"]
    assert added.body["nextRunAt"] == "2026-01-05T10:01:00Z"

    row = await endpoint_row(rest, job_id, endpoint_id)
    expected = {
        "endpointId": endpoint_id,
        "name": "check_api_latency",
        "nextRunAt": "2026-01-05T10:01:00Z",
        "failureCount": 0,
        "paused": False,
        "nextRunSource": "RUN_SOURCE_BASELINE_INTERVAL",
    }
    assert expected.items() <= row.items()
    assert "lastRunAt" not in row
    assert "pausedUntil" not in row

    changed = await rest(
        "PATCH",
        f"/jobs/{job_id}/endpoints/{endpoint_id}",
        {"baseline": {"interval_ms": "120000"}, "timeout_ms": 5000, "headers": {"entries": {"X-Team": "web"}}},
    )
    assert changed.status == 200
    assert changed.body == {"updatedAt": "2026-01-05T10:00:00Z", "nextRunAt": "2026-01-05T10:02:00Z"}

    deleted = await rest("DELETE", f"/jobs/{job_id}/endpoints/{endpoint_id}", params={"reason": "retired"})
    assert deleted.status == 200
    assert deleted.body["deletedAt"] == "2026-01-05T10:00:00Z"
    assert (await rest("GET", f"/jobs/{job_id}/endpoints")).body == {"endpoints": []}
    # The REST resource is gone: a deleted endpoint is no longer under its job.
    gone = await rest("POST", f"/jobs/{job_id}/endpoints/{endpoint_id}/reset-failures")
    assert gone.status == 404
    assert gone.body["code"] == "NOT_FOUND"
    assert harness.audit()[-1]["reason"] == "retired"


SURGE = {
    "name": "surge",
    "when": "has(body.ratio) && body.ratio > 5.0",
    "then": [
        {"intervalHint": {"intervalMs": "30000", "ttlMs": 3600000}},
        {"endpoint": "inventory-check", "resume": {}},
    ],
    "cooldownMs": 600000,
}


@pytest.mark.asyncio
async def test_endpoint_routes_carry_policies_jitter_and_a_write_only_secret(rest, harness):
    job_id = await new_job(rest)
    secret = "s" * 40
    endpoint_id = await new_endpoint(rest, job_id, jitterMs="5000", signing_secret=secret, policies=[SURGE])
    row = await endpoint_row(rest, job_id, endpoint_id)
    assert (row["jitterMs"], row["signed"]) == (5000, True)  # a request may send int64 as a string
    assert secret not in json.dumps(row)
    [rule] = row["policies"]
    assert (rule["name"], rule["when"], rule["cooldownMs"]) == ("surge", SURGE["when"], 600000)
    assert rule["then"][0]["intervalHint"] == {"intervalMs": 30000, "ttlMs": 3600000}
    assert (rule["then"][1]["endpoint"], rule["then"][1]["resume"]) == ("inventory-check", {})

    base = f"/jobs/{job_id}/endpoints/{endpoint_id}"
    bad = await rest("PATCH", base, {"policies": {"rules": [{**SURGE, "when": "body.ratio >"}]}})
    assert (bad.status, bad.body["code"]) == (400, "INVALID_ARGUMENT")
    assert set(bad.invalid) == {"policies.rules[0].when"}
    short = await rest("PATCH", base, {"signingSecret": "short"})
    assert set(short.invalid) == {"signingSecret"}

    cleared = await rest("PATCH", base, {"policies": {"rules": []}, "signingSecret": "", "jitterMs": 0})
    assert cleared.status == 200, cleared.body
    row = await endpoint_row(rest, job_id, endpoint_id)
    assert (row["policies"], row["signed"], row["jitterMs"]) == ([], False, 0)


@pytest.mark.asyncio
async def test_steering_routes_apply_hints_pause_resume_clear_and_reset(rest, harness):
    job_id = await new_job(rest)
    endpoint_id = await new_endpoint(rest, job_id)
    base = f"/jobs/{job_id}/endpoints/{endpoint_id}"

    hint = await rest("POST", f"{base}/hints/interval", {"intervalMs": 20000, "ttlMinutes": 15, "reason": "traffic 5x"})
    assert hint.status == 200
    assert hint.body == {"hintExpiresAt": "2026-01-05T10:15:00Z", "nextRunAt": "2026-01-05T10:00:20Z"}

    run_at = (harness.clock.now() + timedelta(minutes=10)).isoformat()  # "+00:00" offsets are RFC 3339 too
    one_shot = await rest("POST", f"{base}/hints/one-shot", {"run_at": run_at, "reason": "pages are slow"})
    assert one_shot.status == 200
    assert one_shot.body == {"scheduledFor": "2026-01-05T10:10:00Z"}

    paused = await rest("POST", f"{base}/pause", {"pauseUntil": "2026-01-05T12:00:00Z"})
    assert paused.status == 200
    assert paused.body["paused"] is True
    assert paused.body["pausedUntil"] == "2026-01-05T12:00:00Z"
    resumed = await rest("POST", f"{base}/pause", {"resume": True, "reason": "DB is fine"})
    assert resumed.status == 200
    assert resumed.body["paused"] is False
    assert "pausedUntil" not in resumed.body
    indefinitely = await rest("POST", f"{base}/pause")  # no body at all: pause until resumed
    assert indefinitely.body["paused"] is True
    assert "pausedUntil" not in indefinitely.body
    await rest("POST", f"{base}/pause", {"resume": True})

    cleared = await rest("DELETE", f"{base}/hints", params={"reason": "sale ended"})
    assert cleared.status == 200
    assert cleared.body["clearedAt"] == "2026-01-05T10:00:00Z"
    assert (await endpoint_row(rest, job_id, endpoint_id))["nextRunSource"] == "RUN_SOURCE_BASELINE_INTERVAL"

    harness.fire(endpoint_id, status="FAILURE", http_status=500)
    harness.fire(endpoint_id, status="FAILURE", http_status=500)
    assert (await endpoint_row(rest, job_id, endpoint_id))["failureCount"] == 2
    reset = await rest("POST", f"{base}/reset-failures", {"reason": "deployed the fix"})
    assert reset.status == 200
    assert reset.body["failureCount"] == 0
    assert "nextRunAt" in reset.body
    pauses = ["PauseOrResumeEndpoint"] * 4
    assert [r["action"] for r in harness.audit()][-8:] == [
        "ApplyIntervalHint",
        "ScheduleOneShotRun",
        *pauses,
        "ClearAdaptiveHints",
        "ResetFailureCount",
    ]


@pytest.mark.asyncio
async def test_run_routes_list_filter_detail_and_summarize(rest, harness):
    job_id = await new_job(rest)
    endpoint_id = await new_endpoint(rest, job_id)
    ok = harness.fire(endpoint_id, duration_ms=40)
    failed = harness.fire(endpoint_id, status="FAILURE", http_status=503, error_message="busy", response_body="x" * 10)

    listed = (await rest("GET", "/runs", params={"jobId": job_id, "endpointId": endpoint_id})).body
    assert listed["total"] == 2
    assert [r["runId"] for r in listed["runs"]] == [failed, ok]
    newest = listed["runs"][0]
    assert newest["status"] == "RUN_STATUS_FAILURE"
    assert newest["source"] == "RUN_SOURCE_BASELINE_INTERVAL"
    assert newest["durationMs"] == 50
    assert newest["jobId"] == job_id
    failures = (await rest("GET", "/runs", params={"status": "RUN_STATUS_FILTER_FAILURE"})).body
    assert [r["runId"] for r in failures["runs"]] == [failed]
    assert failures["total"] == 1
    paged = (await rest("GET", "/runs", params={"limit": "1", "offset": "1"})).body
    assert [r["runId"] for r in paged["runs"]] == [ok]
    assert paged["total"] == 2

    run = (await rest("GET", f"/runs/{failed}")).body["run"]
    assert run["httpStatus"] == 503
    assert run["errorMessage"] == "busy"
    assert run["responseBody"] == "x" * 10
    assert run["responseTruncated"] is False
    assert run["attempt"] == 1
    assert run["endpointId"] == endpoint_id

    health = await rest("GET", f"/jobs/{job_id}/endpoints/{endpoint_id}/health", params={"windowHours": "24"})
    assert health.status == 200
    assert health.body["successCount"] == 1
    assert health.body["failureCount"] == 1
    assert health.body["failureStreak"] == 1
    assert health.body["missedSlots"] == 0  # int64, a JSON number as in the CLI and MCP answers
    assert health.body["avgDurationMs"] == 45
    assert health.body["lastRun"]["status"] == "RUN_STATUS_FAILURE"


@pytest.mark.asyncio
async def test_the_audit_route_reads_a_jobs_and_an_endpoints_trail_newest_first(rest):
    job_id = await new_job(rest)
    endpoint_id = await new_endpoint(rest, job_id)
    path = f"/jobs/{job_id}/endpoints/{endpoint_id}"
    await rest("POST", f"{path}/pause", {"reason": "maintenance window"})

    trail = (await rest("GET", "/audit", params={"endpointId": endpoint_id})).body
    newest = trail["records"][0]
    assert (newest["action"], newest["reason"]) == ("PauseOrResumeEndpoint", "maintenance window")
    assert {r["targetId"] for r in trail["records"]} == {endpoint_id}
    whole = (await rest("GET", "/audit", params={"jobId": job_id, "pageSize": "1"})).body
    assert len(whole["records"]) == 1
    assert whole["nextPageToken"]
    rest_of_it = (await rest("GET", "/audit", params={"jobId": job_id, "pageToken": whole["nextPageToken"]})).body
    assert "CreateJob" in {r["action"] for r in rest_of_it["records"]}
    both = await rest("GET", "/audit", params={"jobId": job_id, "endpointId": endpoint_id})
    assert both.status == 400


@pytest.mark.asyncio
async def test_another_tenants_audit_trail_is_404(rest, harness):
    job_id = await new_job(rest)
    foreign = await rest.as_key(harness.b.key)("GET", "/audit", params={"jobId": job_id})
    assert (foreign.status, foreign.body["code"]) == (404, "NOT_FOUND")


@pytest.mark.asyncio
async def test_the_console_is_served_from_the_package_with_a_strict_policy(fake):
    anonymous = fake.rest.as_key(None)
    page = await anonymous.client.get("/")
    html = await page.text()
    assert page.status == 200
    assert '<script type="module" src="/console/app.js">' in html
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    script = await anonymous.client.get("/console/app.js")
    assert script.status == 200
    assert script.content_type == "text/javascript"
    assert (await anonymous.client.get("/console/../app.py")).status == 404
    assert (await anonymous.client.get("/console/nothing.js")).status == 404
    api = await fake.rest("GET", "/jobs")
    assert api.headers["X-Frame-Options"] == "DENY"


class Links(HTMLParser):
    """The URLs an HTML page loads or links to (`src` and `href`)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.asyncio
async def test_the_api_page_and_everything_it_loads_are_served_by_the_gateway(fake):
    client = fake.rest.as_key(None).client
    page = await client.get("/docs")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    links = Links()
    links.feed(html)
    assert "docs/swagger-ui-bundle.js" in links.urls
    assert not re.search(r"https?://", html)  # no CDN, no other host
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "connect-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy  # no inline script or style, no eval
    # The console keeps its own, stricter policy.
    assert (await client.get("/")).headers["Content-Security-Policy"] == CONSOLE_POLICY != policy
    for url in links.urls:
        resolved = urljoin("http://gateway/docs", url)
        assert urlsplit(resolved).netloc == "gateway", url
        asset = await client.get(urlsplit(resolved).path)
        assert asset.status == 200, url
        assert asset.content_type in ("text/javascript", "text/css", "application/json"), url
        assert asset.headers["Content-Security-Policy"] == policy or url == "openapi.json"
        assert len(await asset.read()) > 0
    starter = await (await client.get("/docs/api-page.js")).text()
    assert "validatorUrl: null" in starter  # the document is never sent to an outside validator
    assert not re.search(r"https?://", starter)
    assert (await client.get("/docs/nothing.js")).status == 404
    assert (await client.get("/docs/../app.py")).status == 404


@pytest.mark.asyncio
async def test_the_documents_example_bodies_are_accepted(rest):
    """Every example the document (and so /docs) offers works as sent, except the one-shot's fixed time."""
    document = (await rest("GET", "/openapi.json")).body
    job_id = await new_job(rest)
    endpoint_id = await new_endpoint(rest, job_id)
    for route in ROUTES:
        media = route.body and document["paths"][route.path][route.method.lower()]["requestBody"]["content"]
        if not media or route.rpc == "ScheduleOneShotRun":
            continue
        path = route.path.format(jobId=job_id, endpointId=endpoint_id)
        answer = await rest(route.method, path, media["application/json"]["example"])
        assert answer.status == route.status, (route.rpc, answer.body)


@pytest.mark.asyncio
async def test_path_ids_win_over_body_ids(rest):
    job_id, other = await new_job(rest), await new_job(rest, "other")
    endpoint_id = await new_endpoint(rest, job_id, jobId=other)

    assert [e["endpointId"] for e in (await rest("GET", f"/jobs/{job_id}/endpoints")).body["endpoints"]] == [
        endpoint_id
    ]
    renamed = await rest("PATCH", f"/jobs/{job_id}", {"job_id": other, "name": "renamed"})
    assert renamed.status == 200
    assert (await rest("GET", f"/jobs/{job_id}")).body["job"]["name"] == "renamed"
    assert (await rest("GET", f"/jobs/{other}")).body["job"]["name"] == "other"


# -- errors from the control plane, as problems ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_validation_errors_are_400_naming_each_field_as_the_client_spells_it(rest):
    empty = await rest("POST", "/jobs", {"name": ""})
    assert empty.status == 400
    assert empty.body["code"] == "INVALID_ARGUMENT"
    assert set(empty.invalid) == {"name"}

    job_id = await new_job(rest)
    too_fast = await rest("POST", f"/jobs/{job_id}/endpoints", {**ENDPOINT, "baseline": {"intervalMs": 10}})
    assert too_fast.status == 400
    assert set(too_fast.invalid) == {"baseline.intervalMs"}

    too_many = await rest("GET", "/runs", params={"limit": "1000"})
    assert too_many.status == 400
    assert set(too_many.invalid) == {"limit"}
    bad_token = await rest("GET", "/jobs", params={"pageToken": "nope"})
    assert bad_token.status == 400
    assert set(bad_token.invalid) == {"pageToken"}


@pytest.mark.asyncio
async def test_an_enum_value_out_of_range_is_400_naming_the_field(rest):
    for path, value in [("/jobs", "99"), ("/runs", "99"), ("/runs", "-1"), ("/runs", "RUN_STATUS_FILTER_NOPE")]:
        answer = await rest("GET", path, params={"status": value})
        assert (answer.status, answer.body["code"]) == (400, "INVALID_ARGUMENT"), (path, answer.body)
        assert answer.invalid["status"].startswith("must be one of"), (path, answer.body)


@pytest.mark.asyncio
async def test_an_unknown_key_is_401_from_the_control_plane(rest):
    answer = await rest.as_key("pk_unknown0_notakey")("GET", "/jobs")
    assert answer.status == 401
    assert answer.body["code"] == "UNAUTHENTICATED"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.asyncio
async def test_unknown_foreign_and_misplaced_ids_are_404(rest, harness):
    job_id = await new_job(rest)
    endpoint_id = await new_endpoint(rest, job_id)
    run_id = harness.fire(endpoint_id)
    theirs = rest.as_key(harness.b.key)
    their_job = await new_job(theirs)
    their_endpoint = await new_endpoint(theirs, their_job)
    other_job = await new_job(rest, "other")

    cases = [
        ("GET", "/jobs/job_00000000000000000000000000"),
        ("GET", f"/jobs/{their_job}"),
        ("PATCH", f"/jobs/{their_job}"),
        ("GET", f"/jobs/{their_job}/endpoints"),
        ("POST", f"/jobs/{other_job}/endpoints/{endpoint_id}/hints/interval"),  # ours, under the wrong job
        ("GET", f"/jobs/{other_job}/endpoints/{endpoint_id}/health"),
        ("DELETE", f"/jobs/{job_id}/endpoints/{their_endpoint}"),  # theirs, under our job
        ("POST", f"/jobs/{their_job}/endpoints/{their_endpoint}/pause"),
        ("GET", "/runs/run_00000000000000000000000000"),
    ]
    for method, path in cases:
        answer = await rest(method, path, {"intervalMs": 60000} if "interval" in path else None)
        assert (answer.status, answer.body["code"]) == (404, "NOT_FOUND"), (method, path, answer.body)
    assert (await theirs("GET", f"/runs/{run_id}")).status == 404
    assert (await rest("GET", f"/jobs/{job_id}/endpoints/{endpoint_id}/health")).status == 200  # still ours


@pytest.mark.asyncio
async def test_changes_to_an_archived_job_are_412(rest):
    job_id = await new_job(rest)
    endpoint_id = await new_endpoint(rest, job_id)
    assert (await rest("DELETE", f"/jobs/{job_id}")).status == 200

    for method, path, body in [
        ("PATCH", f"/jobs/{job_id}", {"name": "late"}),
        ("POST", f"/jobs/{job_id}/endpoints", ENDPOINT),
        ("POST", f"/jobs/{job_id}/endpoints/{endpoint_id}/hints/interval", {"intervalMs": 20000}),
        ("POST", f"/jobs/{job_id}/endpoints/{endpoint_id}/reset-failures", None),
    ]:
        answer = await rest(method, path, body)
        assert (answer.status, answer.body["code"]) == (412, "FAILED_PRECONDITION"), (path, answer.body)
        assert "archived" in answer.body["detail"]


# -- gateway behaviour in front of a fake control plane -------------------------------------------------------------


class FakeControl(pb_grpc.ControlServiceServicer):
    """Answers GetJob and CreateJob, or refuses them with `refusal`; remembers the metadata it was sent."""

    def __init__(self) -> None:
        self.refusal: grpc.Status | None = None
        self.metadata: list[tuple[str, str]] = []
        self.calls = 0

    async def _answer(self, context: grpc.aio.ServicerContext, response: Any) -> Any:
        self.calls += 1
        self.metadata = [(m.key, m.value) for m in context.invocation_metadata()]
        if self.refusal is not None:
            await context.abort_with_status(self.refusal)
        return response

    async def GetJob(self, request, context):
        return await self._answer(context, pb.GetJobResponse(job=pb.Job(job_id=request.job_id, name="fake")))

    async def CreateJob(self, request, context):
        return await self._answer(context, pb.CreateJobResponse(job_id="job_fake"))


class Refusal(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details, self.trailing_metadata = code, details, ()


@dataclass
class Gateway:
    rest: Rest
    control: FakeControl
    metrics: GatewayMetrics


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[Gateway]:
    """The gateway in front of a fake ControlService on a real grpc.aio server."""
    control = FakeControl()
    server = grpc.aio.server()
    pb_grpc.add_ControlServiceServicer_to_server(control, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = AsyncControlClient(f"127.0.0.1:{port}")
    metrics = GatewayMetrics()
    client = TestClient(TestServer(create_app(channel, metrics), host="127.0.0.1"))
    await client.start_server()
    yield Gateway(Rest(client, "pk_test1234_secret"), control, metrics)
    await client.close()
    await channel.close()
    await server.stop(None)


@pytest.mark.asyncio
async def test_the_bearer_key_is_passed_through_as_grpc_metadata(fake):
    answer = await fake.rest("GET", "/jobs/job_1", headers={"Authorization": "bearer pk_test1234_secret"})
    assert answer.status == 200
    assert answer.body["job"]["name"] == "fake"
    assert ("authorization", "Bearer pk_test1234_secret") in fake.control.metadata


@pytest.mark.asyncio
async def test_a_missing_or_malformed_authorization_is_401_without_calling_the_control_plane(fake):
    anonymous = fake.rest.as_key(None)
    for headers in [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer a b"},
    ]:
        answer = await anonymous("GET", "/jobs/job_1", headers=headers)
        assert (answer.status, answer.body["code"]) == (401, "UNAUTHENTICATED"), headers
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="pacer"'
    assert fake.control.calls == 0


@pytest.mark.asyncio
async def test_a_quota_refusal_is_429_with_its_violations_and_retry_after(fake):
    quota = QuotaViolation("tenant:acme", "at most 100 jobs")
    fake.control.refusal = to_grpc_status(ResourceExhausted("job quota reached", [quota], retry_after_s=2.5))
    answer = await fake.rest("POST", "/jobs", {"name": "one too many"})
    assert answer.status == 429
    assert answer.body["code"] == "RESOURCE_EXHAUSTED"
    assert answer.headers["Retry-After"] == "3"  # 2.5 s rounded up
    assert answer.body["violations"] == [{"subject": "tenant:acme", "description": "at most 100 jobs"}]
    assert answer.body["detail"] == "job quota reached"

    fake.control.refusal = to_grpc_status(ResourceExhausted("slow down", []))
    assert (await fake.rest("POST", "/jobs", {"name": "x"})).headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 502),
        (grpc.StatusCode.DATA_LOSS, 502),
        (grpc.StatusCode.UNIMPLEMENTED, 502),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
    ],
)
@pytest.mark.asyncio
async def test_control_plane_codes_map_to_http_and_failures_hide_their_text(fake, code, status):
    fake.control.refusal = Refusal(code, "psycopg.DataError: password=hunter2")
    answer = await fake.rest("GET", "/jobs/job_1")
    assert (answer.status, answer.body["code"]) == (status, code.name)
    assert ("hunter2" in answer.body["detail"]) is (status < 500)
    assert "errorId" not in answer.body


@pytest.mark.asyncio
async def test_an_internal_error_is_500_with_the_control_planes_opaque_error_id(fake):
    fake.control.refusal = Refusal(grpc.StatusCode.INTERNAL, "internal error err_01jdz8k2m3n4p5q6r7s8t9v0wx (logged)")
    answer = await fake.rest("GET", "/jobs/job_1")
    assert (answer.status, answer.body["code"]) == (500, "INTERNAL")
    assert answer.body["detail"] == "internal error err_01jdz8k2m3n4p5q6r7s8t9v0wx (logged)"
    assert answer.body["errorId"] == "err_01jdz8k2m3n4p5q6r7s8t9v0wx"

    # Anything else in an INTERNAL message stays upstream, even next to an id.
    fake.control.refusal = Refusal(grpc.StatusCode.INTERNAL, "internal error err_1: KeyError 'tenant' in SELECT")
    answer = await fake.rest("GET", "/jobs/job_1")
    assert answer.status == 500
    assert answer.body["detail"] == "the control plane failed to handle the request"
    assert "errorId" not in answer.body


@pytest.mark.asyncio
async def test_an_unavailable_control_plane_is_503_with_the_retry_after_it_asks_for(fake):
    fake.control.refusal = to_grpc_status(Unavailable("database unavailable, retry later", retry_after_s=2.5))
    answer = await fake.rest("GET", "/jobs/job_1")
    assert (answer.status, answer.body["code"]) == (503, "UNAVAILABLE")
    assert answer.headers["Retry-After"] == "3"
    assert answer.body["detail"] == "the control plane is unavailable; retry later"

    fake.control.refusal = Refusal(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; 10.0.0.5:50051")
    answer = await fake.rest("GET", "/jobs/job_1")
    assert answer.status == 503
    assert "Retry-After" not in answer.headers  # no RetryInfo, no promise
    assert "10.0.0.5" not in answer.body["detail"]


@pytest.mark.asyncio
async def test_a_gateway_failure_is_500_with_an_error_id_that_is_also_logged(caplog):
    class Broken:
        async def call(self, rpc: str, request: Any, key: str | None) -> Any:
            raise KeyError("SELECT secret FROM api_keys")

    async with TestClient(TestServer(create_app(Broken()), host="127.0.0.1")) as client:
        answer = await Rest(client, "pk_test1234_secret")("GET", "/jobs/job_1")
    assert (answer.status, answer.body["code"]) == (500, "INTERNAL")
    error_id = answer.body["errorId"]
    assert answer.body["detail"] == f"internal error {error_id} (logged by the gateway)"
    for hidden in ("KeyError", "SELECT", "Traceback"):
        assert hidden not in json.dumps(answer.body)
    [logged] = [r for r in caplog.records if getattr(r, "event", None) == "gateway.failed"]
    assert logged.error_id == error_id
    assert logged.exc_info is not None  # the traceback goes to the log, and only there


@pytest.mark.asyncio
async def test_an_unreachable_control_plane_is_503():
    control = AsyncControlClient("127.0.0.1:1")
    async with TestClient(TestServer(create_app(control), host="127.0.0.1")) as client:
        answer = await Rest(client, "pk_test1234_secret")("GET", "/jobs")
    await control.close()
    assert (answer.status, answer.body["code"]) == (503, "UNAVAILABLE")


@pytest.mark.asyncio
async def test_unknown_routes_are_404_and_wrong_methods_405_as_problems(fake):
    missing = await fake.rest("GET", "/nope")
    assert (missing.status, missing.body["code"]) == (404, "NOT_FOUND")
    wrong = await fake.rest("PUT", "/jobs")
    assert wrong.status == 405
    assert set(wrong.headers["Allow"].split(",")) >= {"GET", "POST"}


@pytest.mark.parametrize(
    ("method", "path", "data", "params", "invalid"),
    [
        ("POST", "/jobs", b'{"name": ', None, {}),
        ("POST", "/jobs", b'["a list"]', None, {}),
        ("POST", "/jobs", b'{"name": NaN}', None, {}),
        ("POST", "/jobs", b'{"nmae": "typo"}', None, {"nmae": "is not a field of CreateJobRequest"}),
        ("POST", "/jobs", b'{"name": 5, "description": "a\\u0000b"}', None, {"name", "description"}),
        (
            "POST",
            "/jobs/j/endpoints",
            b'{"baseline": {"intervalMs": 1, "interval_ms": 2}}',
            None,
            {"baseline.interval_ms"},
        ),
        ("POST", "/jobs/j/endpoints", b'{"timeoutMs": 1.5, "headers": {"X": 1}}', None, {"timeoutMs", "headers.X"}),
        ("POST", "/jobs/j/endpoints", b'{"timeoutMs": "99999999999999999999"}', None, {"timeoutMs"}),
        ("POST", "/jobs/j/endpoints/e/hints/one-shot", b'{"runAt": "tomorrow"}', None, {"runAt"}),
        (
            "GET",
            "/jobs",
            b"",
            {"page_size": "5"},
            {"page_size": "is not a query parameter of GET /jobs; did you mean 'pageSize'?"},
        ),
        ("GET", "/jobs", b"", {"pageSize": "five", "status": "ACTIVE"}, {"pageSize", "status"}),
        ("GET", "/runs", b"", {"limit": "99999999999"}, {"limit"}),
        ("GET", "/runs", b"", {"offset": "9" * 5000}, {"offset"}),
        ("DELETE", "/jobs/j", b'{"reason": "in the body"}', None, {}),
        (
            "PATCH",
            "/jobs/j/endpoints/e",
            b'{"policies": {"rules": [{"name": "a", "when": "true", "then": [{"pause": {}, "resume": {}}]}]}}',
            None,
            {
                "policies.rules[0].then[0].resume": "set only one of intervalHint, oneShot, pause, resume, "
                "clearHints, resetFailures (also 'pause')"
            },
        ),
        ("POST", "/jobs/j/endpoints", b'{"jitterMs": 1.5, "policies": {"name": "a"}}', None, {"jitterMs", "policies"}),
    ],
)
@pytest.mark.asyncio
async def test_malformed_requests_are_400_naming_the_parameter(fake, method, path, data, params, invalid):
    answer = await fake.rest(method, path, data=data, params=params, headers={"Content-Type": "application/json"})
    assert (answer.status, answer.body["code"]) == (400, "INVALID_ARGUMENT"), answer.body
    if isinstance(invalid, dict):
        assert answer.invalid == invalid
    else:
        assert set(answer.invalid) == invalid
    assert fake.control.calls == 0


@pytest.mark.asyncio
async def test_a_non_json_body_is_415_and_an_oversized_one_413(fake):
    text = await fake.rest(
        "POST", "/jobs", data=b"name=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert text.status == 415
    assert text.body["code"] == "UNSUPPORTED_MEDIA_TYPE"
    xml = await fake.rest("POST", "/jobs", data=b"<job/>", headers={"Content-Type": "application/xml"})
    assert xml.status == 415
    huge = await fake.rest("POST", "/jobs", data=io.BytesIO(b'{"name": "' + b"x" * (3 * 1024 * 1024) + b'"}'))
    assert huge.status == 413
    assert fake.control.calls == 0


@pytest.mark.asyncio
async def test_a_json_body_sent_as_curl_d_sends_it_is_accepted(fake):
    # `curl -d '{...}'` declares a form; the body is a JSON object all the same.
    answer = await fake.rest(
        "POST",
        "/jobs",
        data=b'{"name": "nightly exports"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 201
    assert answer.body == {"jobId": "job_fake"}


@pytest.mark.asyncio
async def test_metrics_count_requests_by_route_template_and_status_and_upstream_failures(fake):
    sample = fake.metrics.registry.get_sample_value
    await fake.rest("GET", "/jobs/job_1")
    await fake.rest("GET", "/jobs/job_2")
    await fake.rest("GET", "/no/such/path/job_3")
    fake.control.refusal = Refusal(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    await fake.rest("GET", "/jobs/job_1")

    ok = {"route": "/jobs/{jobId}", "method": "GET", "status": "200"}
    assert sample("pacer_gateway_requests_total", ok) == 2
    assert sample("pacer_gateway_requests_total", {**ok, "status": "503"}) == 1
    assert sample("pacer_gateway_requests_total", {"route": "unmatched", "method": "GET", "status": "404"}) == 1
    assert sample("pacer_gateway_upstream_errors_total", {"code": "UNAVAILABLE"}) == 1
    assert sample("pacer_gateway_request_duration_seconds_count", {"route": "/jobs/{jobId}", "method": "GET"}) == 3


@pytest.mark.asyncio
async def test_health_and_the_openapi_document_need_no_key(fake):
    anonymous = fake.rest.as_key(None)
    assert (await anonymous("GET", "/healthz")).body == {"status": "ok"}
    document = (await anonymous("GET", "/openapi.json")).body

    validate(document)  # raises unless this is a valid OpenAPI 3.1 document
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "/", "description": "the gateway serving this document"}]
    operations = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert {(r.method, r.path) for r in ROUTES} <= operations
    assert len(ROUTES) == 18  # the 17 actions and ListAuditRecords
    assert len({r.rpc for r in ROUTES}) == 18


def test_every_request_field_has_a_place_in_its_route():
    """A field that is neither in the path, the query nor a body could never be sent: the table would be wrong."""
    for route in ROUTES:
        placed = set(route.path_fields.values()) | set(route.query)
        fields = set(route.request_type.fields_by_name)
        assert route.body or fields <= placed, (route.rpc, fields - placed)
        assert set(route.query) <= fields, route.rpc


def test_settings_find_the_control_plane_like_the_other_front_doors():
    assert load_settings({}) == GatewaySettings(gateway_addr="127.0.0.1:8080", control_addr="127.0.0.1:50051")
    assert load_settings({}).metrics_addr == "127.0.0.1:9467"
    # The interval floor the OpenAPI document states, read from the variable the control plane reads.
    assert load_settings({}).min_interval_ms == 1000
    assert load_settings({"PACER_MIN_INTERVAL_MS": "5000"}).min_interval_ms == 5000
    assert load_settings({"PACER_ADDR": "10.0.0.5:50051"}).control_addr == "10.0.0.5:50051"
    explicit = load_settings({"PACER_ADDR": "a:1", "PACER_CONTROL_ADDR": "b:2", "PACER_GATEWAY_ADDR": "0.0.0.0:9000"})
    assert (explicit.control_addr, explicit.gateway_addr) == ("b:2", "0.0.0.0:9000")
    assert parse_addr("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError, match="host:port"):
        parse_addr("localhost")
