"""What `pacerctl apply` has to change: the file's desired jobs and endpoints against what Pacer holds, as a `Plan`.

Everything here is pure: `plan()` takes the validated manifest and the observed state (jobs by name, with their
endpoints as ListJobEndpoints returns them) and returns the changes; the request builders turn one change into the
protobuf request that makes it; `plan_lines()` and `plan_json()` render the plan.

What is compared: a job's description; an endpoint's url, method, baseline, clamp, timeout, and its headers and body
through `config_digest` (the API never returns their values). What is not: pause state, hints, one-shots and failure
counts. Those belong to whoever steers the endpoint (people and agents), so `paused: true` in the file is applied
when an endpoint is created and never again, and an endpoint an agent resumed stays resumed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli.manifest import Cron, EndpointSpec, Every, JobSpec, Manifest, Schedule
from pacer_cli.render import format_millis
from pacer_common.digest import config_digest
from pacer_common.urls import split_password

Field = Literal["url", "method", "baseline", "clamp", "timeout", "headers/body"]
FIELDS: tuple[Field, ...] = ("url", "method", "baseline", "clamp", "timeout", "headers/body")  # the order shown
DIGEST_SHOWN = 8  # hex digits of a config digest shown in a plan: enough to tell two apart, no values leaked


class Conflict(Exception):
    """Pacer holds two live objects with a name the file uses, so apply cannot tell which one the file means."""


@dataclass(frozen=True)
class ObservedJob:
    """An active job the file names, as Pacer holds it, with its live endpoints (ListJobEndpoints order)."""

    job_id: str
    name: str
    description: str
    endpoints: tuple[pb.EndpointSummary, ...] = ()


@dataclass(frozen=True)
class FieldChange:
    """One differing field of an endpoint (or `description` of a job), shown as `before -> after`."""

    field: Field | Literal["description"]
    before: str
    after: str


@dataclass(frozen=True)
class CreateJob:
    job: JobSpec


@dataclass(frozen=True)
class UpdateJob:
    job: JobSpec
    job_id: str
    change: FieldChange


@dataclass(frozen=True)
class CreateEndpoint:
    """Add `endpoint` to `job`; `job_id` is None when the job is created by the same plan."""

    job: JobSpec
    job_id: str | None
    endpoint: EndpointSpec


@dataclass(frozen=True)
class UpdateEndpoint:
    job: JobSpec
    endpoint: EndpointSpec
    endpoint_id: str
    fields: tuple[FieldChange, ...]


Change = CreateJob | UpdateJob | CreateEndpoint | UpdateEndpoint


@dataclass(frozen=True)
class Untracked:
    """A live endpoint of a file's job that the file does not name: reported, left alone, never deleted."""

    job_name: str
    name: str
    endpoint_id: str


@dataclass(frozen=True)
class Plan:
    """The changes in the order they must be made (a job before its endpoints), plus what apply leaves as it is."""

    changes: tuple[Change, ...]
    unchanged: int
    untracked: tuple[Untracked, ...]


# --- diffing ---------------------------------------------------------------------------------------------------------


def plan(manifest: Manifest, observed: Mapping[str, ObservedJob]) -> Plan:
    """The changes that make Pacer hold what `manifest` says; `observed` maps job name -> the active job so named.

    Raises Conflict when a job of the file has two live endpoints named like one of the file's endpoints.
    """
    changes: list[Change] = []
    unchanged = 0
    untracked: list[Untracked] = []
    for job in manifest.jobs:
        found = observed.get(job.name)
        if found is None:
            changes += [CreateJob(job), *(CreateEndpoint(job, None, endpoint) for endpoint in job.endpoints)]
            continue
        if found.description != job.description:
            changes.append(UpdateJob(job, found.job_id, FieldChange("description", found.description, job.description)))
        job_changes, same = _endpoint_changes(job, found)
        changes += job_changes
        unchanged += same
        untracked += _untracked(job, found)
    return Plan(tuple(changes), unchanged, tuple(untracked))


def _by_name(job: ObservedJob) -> dict[str, list[pb.EndpointSummary]]:
    grouped: dict[str, list[pb.EndpointSummary]] = {}
    for endpoint in job.endpoints:
        grouped.setdefault(endpoint.name, []).append(endpoint)
    return grouped


def _endpoint_changes(job: JobSpec, found: ObservedJob) -> tuple[list[Change], int]:
    """The creates and updates for one existing job's endpoints, and how many need nothing."""
    live = _by_name(found)
    changes: list[Change] = []
    for endpoint in job.endpoints:
        matches = live.get(endpoint.name, [])
        if len(matches) > 1:
            ids = ", ".join(match.endpoint_id for match in matches)
            raise Conflict(
                f"job {job.name!r} has {len(matches)} endpoints named {endpoint.name!r} ({ids}); "
                "apply matches endpoints by name: delete or rename all but one"
            )
        if not matches:
            changes.append(CreateEndpoint(job, found.job_id, endpoint))
        elif fields := endpoint_fields(endpoint, matches[0]):
            changes.append(UpdateEndpoint(job, endpoint, matches[0].endpoint_id, fields))
    return changes, len(job.endpoints) - len(changes)


def _untracked(job: JobSpec, found: ObservedJob) -> list[Untracked]:
    named = {endpoint.name for endpoint in job.endpoints}
    return [Untracked(job.name, e.name, e.endpoint_id) for e in found.endpoints if e.name not in named]


def endpoint_fields(desired: EndpointSpec, actual: pb.EndpointSummary) -> tuple[FieldChange, ...]:
    """The fields where `actual` differs from `desired`, in a fixed order; empty when they agree.

    Values are compared, not their text (`60s` and `1m` are the same interval); the text is only for showing.
    """
    held, wanted = _held(actual), _wanted(desired)
    return tuple(
        FieldChange(field, held[field][1], wanted[field][1]) for field in FIELDS if held[field][0] != wanted[field][0]
    )


Compared = dict[Field, tuple[object, str]]  # field -> (value to compare, text to show)


def _held(actual: pb.EndpointSummary) -> Compared:
    schedule, bounds = _schedule(actual.baseline), (actual.clamp.min_interval_ms, actual.clamp.max_interval_ms)
    return {
        "url": (actual.url, actual.url),
        "method": (actual.method, actual.method),
        "baseline": (schedule, schedule_text(schedule)),
        "clamp": (bounds, clamp_text(*bounds)),
        "timeout": (actual.timeout_ms, format_millis(actual.timeout_ms)),
        "headers/body": (actual.config_digest, _digest(actual.config_digest)),
    }


def _wanted(desired: EndpointSpec) -> Compared:
    # Pacer shows a URL with its password masked and covers the password by the digest, so compare the same way.
    shown_url, password = split_password(desired.url)
    bounds = (desired.min_interval_ms, desired.max_interval_ms)
    digest = config_digest(desired.headers, desired.body, password)
    return {
        "url": (shown_url, shown_url),
        "method": (desired.method, desired.method),
        "baseline": (_normal(desired.schedule), schedule_text(desired.schedule)),
        "clamp": (bounds, clamp_text(*bounds)),
        "timeout": (desired.timeout_ms, format_millis(desired.timeout_ms)),
        "headers/body": (digest, _digest(digest)),
    }


def _schedule(baseline: pb.Baseline) -> Schedule:
    if baseline.HasField("cron"):
        return Cron(baseline.cron.expression, baseline.cron.timezone)
    return Every(baseline.interval_ms, "")


def _normal(schedule: Schedule) -> Schedule:
    """The schedule without the file's wording, to compare with what Pacer holds."""
    return Every(schedule.interval_ms, "") if isinstance(schedule, Every) else schedule


def _digest(hex_digest: str) -> str:
    return f"sha256:{hex_digest[:DIGEST_SHOWN]}"


# --- requests --------------------------------------------------------------------------------------------------------


def baseline_message(schedule: Schedule) -> pb.Baseline:
    """The API's Baseline for a schedule of the file."""
    if isinstance(schedule, Cron):
        return pb.Baseline(cron=pb.CronSchedule(expression=schedule.expression, timezone=schedule.timezone))
    return pb.Baseline(interval_ms=schedule.interval_ms)


def add_request(job_id: str, endpoint: EndpointSpec, reason: str) -> pb.AddEndpointToJobRequest:
    """AddEndpointToJob for an endpoint of the file, every field from the file (defaults filled in)."""
    return pb.AddEndpointToJobRequest(
        job_id=job_id,
        name=endpoint.name,
        url=endpoint.url,
        method=endpoint.method,
        headers=dict(endpoint.headers),
        body=endpoint.body,
        baseline=baseline_message(endpoint.schedule),
        clamp=pb.Clamp(min_interval_ms=endpoint.min_interval_ms, max_interval_ms=endpoint.max_interval_ms),
        timeout_ms=endpoint.timeout_ms,
        reason=reason,
    )


def update_request(change: UpdateEndpoint, reason: str) -> pb.UpdateEndpointConfigRequest:
    """UpdateEndpointConfig carrying only the differing fields.

    The baseline is sent only when it differs because a new baseline restarts the cadence; headers and body go
    together, since one digest covers both.
    """
    desired = change.endpoint
    request = pb.UpdateEndpointConfigRequest(endpoint_id=change.endpoint_id, reason=reason)
    for field in (item.field for item in change.fields):
        match field:
            case "url":
                request.url = desired.url
            case "method":
                request.method = desired.method
            case "baseline":
                request.baseline.CopyFrom(baseline_message(desired.schedule))
            case "clamp":
                request.clamp.SetInParent()  # both bounds 0 still has to arrive as "set the clamp to none"
                request.clamp.min_interval_ms = desired.min_interval_ms
                request.clamp.max_interval_ms = desired.max_interval_ms
            case "timeout":
                request.timeout_ms = desired.timeout_ms
            case "headers/body":
                request.headers.SetInParent()  # an empty map still has to arrive as "remove every header"
                request.headers.entries.update(desired.headers)
                request.body = desired.body
                if split_password(desired.url)[1] is not None:
                    request.url = desired.url  # the digest covers the URL's password too
            case "description":
                raise AssertionError("a job field in an endpoint change")
    return request


# --- rendering -------------------------------------------------------------------------------------------------------


def _quoted(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def _endpoint_ref(job: JobSpec | str, endpoint: str) -> str:
    job_name = job if isinstance(job, str) else job.name
    return f"endpoint {_quoted(job_name)}/{_quoted(endpoint)}"


def schedule_text(schedule: Schedule) -> str:
    """`every 60s` as the file wrote it, or `cron "0 9 * * MON" America/New_York`."""
    if isinstance(schedule, Every):
        return f"every {schedule.text or format_millis(schedule.interval_ms)}"
    return f"cron {_quoted(schedule.expression)}" + (f" {schedule.timezone}" if schedule.timezone else "")


def clamp_text(min_ms: int, max_ms: int) -> str:
    """`min 20s, max 5m`, a bound of 0 left out, `none` when neither is set."""
    bounds = [f"{label} {format_millis(ms)}" for label, ms in (("min", min_ms), ("max", max_ms)) if ms]
    return ", ".join(bounds) or "none"


def change_line(change: Change) -> str:
    """One line of the plan: `+` creates, `~` updates (`field before -> after`, `; ` between fields)."""
    match change:
        case CreateJob(job=job):
            return f"+ job {_quoted(job.name)}"
        case UpdateJob(job=job, change=field):
            return f"~ job {_quoted(job.name)}: description {_quoted(field.before)} -> {_quoted(field.after)}"
        case CreateEndpoint(job=job, endpoint=endpoint):
            paused = ", paused" if endpoint.paused else ""
            return f"+ {_endpoint_ref(job, endpoint.name)} {schedule_text(endpoint.schedule)}{paused}"
        case UpdateEndpoint(job=job, endpoint=endpoint, fields=fields):
            diffs = "; ".join(f"{f.field} {f.before} -> {f.after}" for f in fields)
            return f"~ {_endpoint_ref(job, endpoint.name)}: {diffs}"


def untracked_line(item: Untracked) -> str:
    return f"? {_endpoint_ref(item.job_name, item.name)} not in file, left alone"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def plan_lines(plan: Plan) -> list[str]:
    """The plan for people: each change, each untracked endpoint, then how many endpoints are unchanged."""
    lines = [change_line(change) for change in plan.changes]
    lines += [untracked_line(item) for item in plan.untracked]
    if plan.unchanged:
        lines.append(f"= {_plural(plan.unchanged, 'endpoint')} unchanged")
    return lines


def outcome_line(plan: Plan, *, dry_run: bool) -> str:
    """The last line: `no changes`, `applied 3 changes`, or `dry run: 3 changes, none applied`."""
    count = len(plan.changes)
    if not count:
        return "no changes"
    return f"dry run: {_plural(count, 'change')}, none applied" if dry_run else f"applied {_plural(count, 'change')}"


def change_json(change: Change, object_id: str | None = None) -> dict[str, Any]:
    """One change as a JSON object: `op` (create/update), `kind` (job/endpoint), names, its path in the file, what
    it sets, and `job_id`/`endpoint_id` (for a create, null until it was made)."""
    item: dict[str, Any]
    match change:
        case CreateJob(job=job):
            item = {"op": "create", "kind": "job", "job": job.name, "path": job.path, "description": job.description}
        case UpdateJob(job=job, change=field):
            item = {"op": "update", "kind": "job", "job": job.name, "path": job.path, "fields": _fields_json([field])}
        case CreateEndpoint(job=job, endpoint=endpoint):
            item = _endpoint_json("create", job, endpoint)
            item |= {"schedule": schedule_text(endpoint.schedule), "paused": endpoint.paused}
        case UpdateEndpoint(job=job, endpoint=endpoint, fields=fields):
            item = _endpoint_json("update", job, endpoint) | {"fields": _fields_json(fields)}
    item["job_id" if item["kind"] == "job" else "endpoint_id"] = object_id or _known_id(change)
    return item


def _known_id(change: Change) -> str | None:
    match change:
        case UpdateJob(job_id=job_id):
            return job_id
        case UpdateEndpoint(endpoint_id=endpoint_id):
            return endpoint_id
        case CreateEndpoint() | CreateJob():
            return None


def _endpoint_json(op: str, job: JobSpec, endpoint: EndpointSpec) -> dict[str, Any]:
    return {"op": op, "kind": "endpoint", "job": job.name, "endpoint": endpoint.name, "path": endpoint.path}


def _fields_json(fields: Sequence[FieldChange]) -> dict[str, dict[str, str]]:
    return {field.field: {"from": field.before, "to": field.after} for field in fields}


def plan_json(plan: Plan, ids: Sequence[str | None] = ()) -> str:
    """The changes as a JSON list (`[]` when there is nothing to do); `ids[i]` is the id of change i, if known."""
    known = list(ids) + [None] * (len(plan.changes) - len(ids))
    return json.dumps(
        [change_json(c, i) for c, i in zip(plan.changes, known, strict=True)], indent=2, ensure_ascii=False
    )
