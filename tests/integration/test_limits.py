"""Every limit in `pacer_common.limits` is the control plane's: a value at the limit is accepted, one past it is
INVALID_ARGUMENT naming the field. A limit added to the table without a case here fails `test_every_limit_has_a_case`,
so the table cannot promise what the server does not do (and the other front doors advertise the table)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common import limits
from pacer_common.limits import LIMITS, FieldKey, Limit
from pacer_control import actions
from tests.support.harness import MIN_INTERVAL_MS, Harness, status_of, ts, violations

URL_HEAD = "https://shop.example.com/"
INTERVAL = pb.Baseline(interval_ms=60_000)


@dataclass(frozen=True)
class Ctx:
    job_id: str
    endpoint_id: str
    now: datetime


def _text(n: int) -> str:
    return "x" * n


@dataclass(frozen=True)
class Case:
    """How to send one limited field: the RPC, a request carrying `value`, the field the refusal names, and how to
    make a value of a given size (characters, bytes or entries)."""

    rpc: str
    request: Callable[[Ctx, Any], Message]
    field: str
    sized: Callable[[int], Any] = _text
    sized_bytes: Callable[[int], Any] | None = None
    unlike_pattern: Any = None


def _add(c: Ctx, **fields: Any) -> pb.AddEndpointToJobRequest:
    fields = {"name": "health", "url": URL_HEAD + "health", "baseline": INTERVAL, **fields}
    return pb.AddEndpointToJobRequest(job_id=c.job_id, **fields)


def _update(c: Ctx, **fields: Any) -> pb.UpdateEndpointConfigRequest:
    return pb.UpdateEndpointConfigRequest(endpoint_id=c.endpoint_id, **fields)


def _shot(c: Ctx, **fields: Any) -> pb.ScheduleOneShotRunRequest:
    return pb.ScheduleOneShotRunRequest(endpoint_id=c.endpoint_id, run_at=ts(c.now), **fields)


def _url(n: int) -> str:
    return URL_HEAD[:n] if n <= len(URL_HEAD) else URL_HEAD + "a" * (n - len(URL_HEAD))


def _headers(n: int) -> dict[str, str]:
    return {f"X-H{i}": "v" for i in range(n)}


def _header_bytes(n: int) -> dict[str, str]:
    return {"X-A": "v" * (n - len("X-A"))}


def _header_name(n: int) -> dict[str, str]:
    return {"X" * n: "v"}


def _cron(n: int) -> str:
    return "0 9 * * *".ljust(n) if n else ""


def _endpoint(request: Callable[..., Message], field: str) -> Callable[[Ctx, Any], Message]:
    return lambda c, value: request(endpoint_id=c.endpoint_id, **{field: value})


def _reason_cases() -> dict[str, Case]:
    by_message: dict[str, Callable[[Ctx, Any], Message]] = {
        "UpdateJob": lambda c, v: pb.UpdateJobRequest(job_id=c.job_id, reason=v),
        "ArchiveJob": lambda c, v: pb.ArchiveJobRequest(job_id=c.job_id, reason=v),
        "AddEndpointToJob": lambda c, v: _add(c, reason=v),
        "UpdateEndpointConfig": lambda c, v: _update(c, reason=v),
        "DeleteEndpoint": _endpoint(pb.DeleteEndpointRequest, "reason"),
        "ApplyIntervalHint": lambda c, v: pb.ApplyIntervalHintRequest(
            endpoint_id=c.endpoint_id, interval_ms=30_000, reason=v
        ),
        "ScheduleOneShotRun": lambda c, v: _shot(c, reason=v),
        "PauseOrResumeEndpoint": _endpoint(pb.PauseOrResumeEndpointRequest, "reason"),
        "ClearAdaptiveHints": _endpoint(pb.ClearAdaptiveHintsRequest, "reason"),
        "ResetFailureCount": _endpoint(pb.ResetFailureCountRequest, "reason"),
    }
    return {rpc + "Request": Case(rpc, request, "reason") for rpc, request in by_message.items()}


def _cases() -> dict[FieldKey, Case]:
    api = "pacer.control.v1."
    cases = {(api + message, "reason"): case for message, case in _reason_cases().items()}
    header_case = Case("AddEndpointToJob", lambda c, v: _add(c, headers=v), "headers", _headers, _header_bytes)
    wrapped = Case("UpdateEndpointConfig", lambda c, v: _update(c, headers=pb.Headers(entries=v)), "headers")
    table: dict[tuple[str, str], Case] = {
        ("CreateJobRequest", "name"): Case("CreateJob", lambda c, v: pb.CreateJobRequest(name=v), "name"),
        ("UpdateJobRequest", "name"): Case(
            "UpdateJob", lambda c, v: pb.UpdateJobRequest(job_id=c.job_id, name=v), "name"
        ),
        ("AddEndpointToJobRequest", "name"): Case("AddEndpointToJob", lambda c, v: _add(c, name=v), "name"),
        ("UpdateEndpointConfigRequest", "name"): Case("UpdateEndpointConfig", lambda c, v: _update(c, name=v), "name"),
        ("CreateJobRequest", "description"): Case(
            "CreateJob", lambda c, v: pb.CreateJobRequest(name="j", description=v), "description"
        ),
        ("UpdateJobRequest", "description"): Case(
            "UpdateJob", lambda c, v: pb.UpdateJobRequest(job_id=c.job_id, description=v), "description"
        ),
        ("AddEndpointToJobRequest", "url"): Case("AddEndpointToJob", lambda c, v: _add(c, url=v), "url", _url),
        ("UpdateEndpointConfigRequest", "url"): Case(
            "UpdateEndpointConfig", lambda c, v: _update(c, url=v), "url", _url
        ),
        ("AddEndpointToJobRequest", "headers"): header_case,
        ("Headers", "entries"): Case(wrapped.rpc, wrapped.request, "headers", _headers, _header_bytes),
        ("AddEndpointToJobRequest.HeadersEntry", "key"): Case(
            header_case.rpc, header_case.request, "headers", _header_name, unlike_pattern={"X Bad": "v"}
        ),
        ("Headers.EntriesEntry", "key"): Case(
            wrapped.rpc, wrapped.request, "headers", _header_name, unlike_pattern={"X:Bad": "v"}
        ),
        ("AddEndpointToJobRequest", "body"): Case("AddEndpointToJob", lambda c, v: _add(c, body=v), "body"),
        ("UpdateEndpointConfigRequest", "body"): Case("UpdateEndpointConfig", lambda c, v: _update(c, body=v), "body"),
        ("AddEndpointToJobRequest", "timeout_ms"): Case(
            "AddEndpointToJob", lambda c, v: _add(c, timeout_ms=v), "timeout_ms"
        ),
        ("UpdateEndpointConfigRequest", "timeout_ms"): Case(
            "UpdateEndpointConfig", lambda c, v: _update(c, timeout_ms=v), "timeout_ms"
        ),
        ("CronSchedule", "expression"): Case(
            "AddEndpointToJob",
            lambda c, v: _add(c, baseline=pb.Baseline(cron=pb.CronSchedule(expression=v))),
            "baseline.cron.expression",
            _cron,
        ),
        ("Baseline", "interval_ms"): Case(
            "UpdateEndpointConfig", lambda c, v: _update(c, baseline=pb.Baseline(interval_ms=v)), "baseline.interval_ms"
        ),
        ("Clamp", "min_interval_ms"): Case(
            "UpdateEndpointConfig", lambda c, v: _update(c, clamp=pb.Clamp(min_interval_ms=v)), "clamp.min_interval_ms"
        ),
        ("Clamp", "max_interval_ms"): Case(
            "UpdateEndpointConfig", lambda c, v: _update(c, clamp=pb.Clamp(max_interval_ms=v)), "clamp.max_interval_ms"
        ),
        ("ApplyIntervalHintRequest", "interval_ms"): Case(
            "ApplyIntervalHint", _endpoint(pb.ApplyIntervalHintRequest, "interval_ms"), "interval_ms"
        ),
        ("ApplyIntervalHintRequest", "ttl_minutes"): Case(
            "ApplyIntervalHint",
            lambda c, v: pb.ApplyIntervalHintRequest(endpoint_id=c.endpoint_id, interval_ms=30_000, ttl_minutes=v),
            "ttl_minutes",
        ),
        ("ScheduleOneShotRunRequest", "ttl_minutes"): Case(
            "ScheduleOneShotRun", lambda c, v: _shot(c, ttl_minutes=v), "ttl_minutes"
        ),
        ("ListJobsRequest", "page_size"): Case("ListJobs", lambda c, v: pb.ListJobsRequest(page_size=v), "page_size"),
        ("ListRunsRequest", "limit"): Case("ListRuns", lambda c, v: pb.ListRunsRequest(limit=v), "limit"),
        ("ListRunsRequest", "offset"): Case("ListRuns", lambda c, v: pb.ListRunsRequest(offset=v), "offset"),
        ("RetryPolicy", "max_attempts"): Case(
            "AddEndpointToJob", lambda c, v: _add(c, retry=pb.RetryPolicy(max_attempts=v)), "retry.max_attempts"
        ),
        ("RetryPolicy", "backoff_ms"): Case(
            "UpdateEndpointConfig",
            lambda c, v: _update(c, retry=pb.RetryPolicy(max_attempts=2, backoff_ms=v)),
            "retry.backoff_ms",
        ),
        ("SummarizeEndpointHealthRequest", "window_hours"): Case(
            "SummarizeEndpointHealth", _endpoint(pb.SummarizeEndpointHealthRequest, "window_hours"), "window_hours"
        ),
    }
    return cases | {(api + message, field): case for (message, field), case in table.items()}


CASES = _cases()


@dataclass(frozen=True)
class Edge:
    """One side of a limit: `accepted` is the last value inside it (None: nothing to accept there), `refused` the first
    value outside it (None: the field's type cannot carry it)."""

    bound: str
    accepted: Any
    refused: Any


def _length_edges(limit: Limit, case: Case) -> list[Edge]:
    edges = []
    if limit.max_length is not None:
        edges.append(Edge("max_length", case.sized(limit.max_length), case.sized(limit.max_length + 1)))
    if limit.min_length:
        # The shortest value may still be refused for its content (a one-character URL), so only the refusal counts.
        edges.append(Edge("min_length", None, case.sized(limit.min_length - 1)))
    if limit.max_bytes is not None:
        sized = case.sized_bytes or case.sized
        edges.append(Edge("max_bytes", sized(limit.max_bytes), sized(limit.max_bytes + 1)))
    if limit.pattern is not None:
        edges.append(Edge("pattern", case.sized(1), case.unlike_pattern))
    return edges


def _number_edges(limit: Limit) -> list[Edge]:
    edges = []
    lowest = limit.lowest(MIN_INTERVAL_MS)
    if lowest is not None:
        below = -1 if lowest == 1 and limit.accepts_zero(omittable=False) else lowest - 1
        edges.append(Edge("minimum", lowest, below))
    if limit.maximum is not None:
        past = limit.maximum + 1 if limit.maximum < 2**31 - 1 else None  # an int32 cannot carry more
        edges.append(Edge("maximum", limit.maximum, past))
    if limit.zero in ("default", "no_bound"):  # an unset baseline interval needs a cron instead: no edge of its own
        edges.append(Edge("zero", 0, None))
    return edges


def edges(limit: Limit, case: Case) -> list[Edge]:
    return _length_edges(limit, case) + _number_edges(limit)


@pytest.fixture
def ctx(harness: Harness) -> Ctx:
    job_id = harness.a.CreateJob(pb.CreateJobRequest(name="Limits")).job_id
    request = pb.AddEndpointToJobRequest(job_id=job_id, name="health", url=URL_HEAD + "health", baseline=INTERVAL)
    endpoint_id = harness.a.AddEndpointToJob(request).endpoint_id
    return Ctx(job_id, endpoint_id, harness.clock.now())


def test_every_limit_has_a_case() -> None:
    assert set(CASES) == set(LIMITS)


def test_every_limit_has_edges_to_try() -> None:
    for key, limit in LIMITS.items():
        assert [edge for edge in edges(limit, CASES[key]) if edge.refused is not None], key


@pytest.mark.parametrize("key", sorted(LIMITS), ids=lambda key: ".".join(key).removeprefix("pacer.control.v1."))
def test_the_control_plane_enforces_the_table(harness: Harness, ctx: Ctx, key: FieldKey) -> None:
    case, found = CASES[key], edges(LIMITS[key], CASES[key])
    # Refusals first: accepting a value may archive the job or delete the endpoint the next request names.
    for edge in found:
        if edge.refused is None:
            continue
        with pytest.raises(grpc.RpcError) as refused:
            getattr(harness.a, case.rpc)(case.request(ctx, edge.refused))
        assert status_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT, edge.bound
        assert case.field in violations(refused.value), (edge.bound, violations(refused.value))
    for edge in found:
        if edge.accepted is not None:
            getattr(harness.a, case.rpc)(case.request(ctx, edge.accepted))


def test_the_actions_defaults_and_bounds_are_the_tables() -> None:
    # ListJobs, ListRuns and SummarizeEndpointHealth keep their numbers in pacer_control.actions for now.
    assert (limits.PAGE_SIZE.default, limits.PAGE_SIZE.maximum) == (actions.DEFAULT_PAGE_SIZE, actions.MAX_PAGE_SIZE)
    assert (limits.RUN_LIMIT.default, limits.RUN_LIMIT.maximum) == (actions.DEFAULT_RUN_LIMIT, actions.MAX_RUN_LIMIT)
    window = (limits.WINDOW_HOURS.default, limits.WINDOW_HOURS.maximum)
    assert window == (actions.DEFAULT_WINDOW_HOURS, actions.MAX_WINDOW_HOURS)
