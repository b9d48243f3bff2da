"""What `pacerctl apply` has to change: the file's desired jobs and endpoints against what Pacer holds, as a `Plan`.

Everything here is pure: `plan()` takes the validated manifest and the observed state (jobs by name, with their
endpoints as ListJobEndpoints returns them) and returns the changes; the request builders turn one change into the
protobuf request that makes it; `plan_lines()` and `plan_json()` render the plan.

What is compared: a job's description; an endpoint's url, method, baseline, clamp, timeout, jitter, policies, whether
it is signed, and its headers and body through `config_digest` (the API never returns their values). A signing
secret is never returned either, so a changed secret is not seen: `apply --rotate-secrets` sends every secret the
file names. What is not compared: pause state, hints, one-shots and failure counts. Those belong to whoever steers
the endpoint (people and agents), so `paused: true` in the file is applied
when an endpoint is created and never again, and an endpoint an agent resumed stays resumed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli.manifest import (
    DEFAULT_BACKOFF_MS,
    DEFAULT_HINT_TTL_MS,
    ActionSpec,
    ClearHints,
    Cron,
    EndpointSpec,
    Every,
    IntervalHint,
    JobSpec,
    Manifest,
    OneShot,
    Pause,
    PolicySpec,
    ResetFailures,
    Resume,
    Schedule,
)
from pacer_cli.render import format_millis
from pacer_common.digest import config_digest
from pacer_common.urls import split_password

Field = Literal[
    "url", "method", "baseline", "clamp", "timeout", "retry", "jitter", "headers/body", "signing", "policies"
]
FIELDS: tuple[Field, ...] = (  # the order shown
    "url",
    "method",
    "baseline",
    "clamp",
    "timeout",
    "retry",
    "jitter",
    "headers/body",
    "signing",
    "policies",
)
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


@dataclass(frozen=True)
class Untracked:
    """A live endpoint of a file's job that the file does not name: reported and left alone, unless `--prune`."""

    job_name: str
    name: str
    endpoint_id: str


@dataclass(frozen=True)
class DeleteEndpoint:
    """With `--prune`: delete an endpoint of a file's job that the file no longer names."""

    job: JobSpec
    untracked: Untracked


Change = CreateJob | UpdateJob | CreateEndpoint | UpdateEndpoint | DeleteEndpoint


@dataclass(frozen=True)
class Plan:
    """The changes in the order they must be made (a job before its endpoints), plus what apply leaves as it is."""

    changes: tuple[Change, ...]
    unchanged: int
    untracked: tuple[Untracked, ...]


# --- diffing ---------------------------------------------------------------------------------------------------------


def plan(
    manifest: Manifest, observed: Mapping[str, ObservedJob], *, rotate_secrets: bool = False, prune: bool = False
) -> Plan:
    """The changes that make Pacer hold what `manifest` says; `observed` maps job name -> the active job so named.
    With `rotate_secrets`, every endpoint the file gives a signing secret gets it again (Pacer cannot say whether
    the secret it holds is the same). With `prune`, the endpoints of the file's jobs that the file does not name are
    deleted (after the job's other changes) instead of left alone; jobs the file does not name are never touched.

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
        job_changes, same = _endpoint_changes(job, found, rotate_secrets)
        changes += job_changes
        unchanged += same
        extra = _untracked(job, found)
        if prune:
            changes += [DeleteEndpoint(job, item) for item in extra]
        else:
            untracked += extra
    return Plan(tuple(changes), unchanged, tuple(untracked))


def _by_name(job: ObservedJob) -> dict[str, list[pb.EndpointSummary]]:
    grouped: dict[str, list[pb.EndpointSummary]] = {}
    for endpoint in job.endpoints:
        grouped.setdefault(endpoint.name, []).append(endpoint)
    return grouped


def _endpoint_changes(job: JobSpec, found: ObservedJob, rotate_secrets: bool) -> tuple[list[Change], int]:
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
        elif fields := endpoint_fields(endpoint, matches[0], rotate_secrets=rotate_secrets):
            changes.append(UpdateEndpoint(job, endpoint, matches[0].endpoint_id, fields))
    return changes, len(job.endpoints) - len(changes)


def _untracked(job: JobSpec, found: ObservedJob) -> list[Untracked]:
    named = {endpoint.name for endpoint in job.endpoints}
    return [Untracked(job.name, e.name, e.endpoint_id) for e in found.endpoints if e.name not in named]


def endpoint_fields(
    desired: EndpointSpec, actual: pb.EndpointSummary, *, rotate_secrets: bool = False
) -> tuple[FieldChange, ...]:
    """The fields where `actual` differs from `desired`, in a fixed order; empty when they agree.

    Values are compared, not their text (`60s` and `1m` are the same interval); the text is only for showing.
    """
    held, wanted = _held(actual), _wanted(desired)
    if rotate_secrets and desired.signing_secret and actual.signed:
        wanted["signing"] = (object(), f"new secret from ${desired.signing_secret_from}")  # differs from anything
    if held["policies"][0] != wanted["policies"][0]:
        wanted["policies"] = (wanted["policies"][0], _policies_after(desired, actual))
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
        "retry": _retry(actual.retry.max_attempts or 1, actual.retry.backoff_ms or DEFAULT_BACKOFF_MS),
        "jitter": (actual.jitter_ms, _jitter_text(actual.jitter_ms)),
        "headers/body": (actual.config_digest, _digest(actual.config_digest)),
        "signing": (actual.signed, "signed" if actual.signed else "unsigned"),
        "policies": (_held_policies(actual), _names([rule.name for rule in actual.policies])),
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
        "retry": _retry(desired.retry_attempts, desired.retry_backoff_ms),
        "jitter": (desired.jitter_ms, _jitter_text(desired.jitter_ms)),
        "headers/body": (digest, _digest(digest)),
        "signing": (bool(desired.signing_secret), _signing_text(desired)),
        "policies": (_wanted_policies(desired), _names([rule.name for rule in desired.policies])),
    }


def _retry(attempts: int, backoff_ms: int) -> tuple[object, str]:
    """A retry policy to compare (its backoff matters only when it retries) and its text: `3 attempts, backoff 2s`."""
    if attempts <= 1:
        return (1, 0), "1 attempt"
    return (attempts, backoff_ms), f"{attempts} attempts, backoff {format_millis(backoff_ms)}"


def _jitter_text(jitter_ms: int) -> str:
    return format_millis(jitter_ms) if jitter_ms else "none"


def _signing_text(desired: EndpointSpec) -> str:
    return f"signed (secret from ${desired.signing_secret_from})" if desired.signing_secret else "unsigned"


def _names(names: Sequence[str]) -> str:
    return "[" + ", ".join(names) + "]" if names else "none"


def _held_policies(actual: pb.EndpointSummary) -> tuple[bytes, ...]:
    """The endpoint's rules, each in a canonical form, to compare with the file's."""
    return tuple(_canonical(rule, actual.name) for rule in actual.policies)


def _wanted_policies(desired: EndpointSpec) -> tuple[bytes, ...]:
    return tuple(_canonical(policy_message(rule), desired.name) for rule in desired.policies)


def _canonical(rule: pb.Policy, own_name: str) -> bytes:
    """`rule` serialized deterministically, with the API's defaults spelled out (a hint's TTL of 0 is an hour, an
    action naming its own endpoint acts on it), so a rule reads the same however it was written."""
    copy = pb.Policy()
    copy.CopyFrom(rule)
    copy.when = copy.when.strip()
    for action in copy.then:
        if action.endpoint == own_name:
            action.endpoint = ""
        if action.HasField("interval_hint") and not action.interval_hint.ttl_ms:
            action.interval_hint.ttl_ms = DEFAULT_HINT_TTL_MS
    return copy.SerializeToString(deterministic=True)


def _policies_after(desired: EndpointSpec, actual: pb.EndpointSummary) -> str:
    """The file's rules, each marked `(new)` or `(changed)` against the held ones; a held rule the file drops is
    simply not in the list."""
    held = {rule.name: _canonical(rule, actual.name) for rule in actual.policies}
    marked = []
    for rule in desired.policies:
        wanted = _canonical(policy_message(rule), desired.name)
        mark = "" if held.get(rule.name) == wanted else " (new)" if rule.name not in held else " (changed)"
        marked.append(rule.name + mark)
    return _names(marked)


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


def action_message(action: ActionSpec) -> pb.PolicyAction:
    """The API's PolicyAction for an action of the file."""
    message = pb.PolicyAction(endpoint=action.endpoint)
    match action.step:
        case IntervalHint(interval_ms=interval_ms, ttl_ms=ttl_ms):
            message.interval_hint.CopyFrom(pb.PolicyIntervalHint(interval_ms=interval_ms, ttl_ms=ttl_ms))
        case OneShot(delay_ms=delay_ms):
            message.one_shot.CopyFrom(pb.PolicyOneShot(delay_ms=delay_ms))
        case Pause(for_ms=for_ms):
            message.pause.CopyFrom(pb.PolicyPause(for_ms=for_ms))
        case Resume():
            message.resume.SetInParent()
        case ClearHints():
            message.clear_hints.SetInParent()
        case ResetFailures():
            message.reset_failures.SetInParent()
    return message


def policy_message(rule: PolicySpec) -> pb.Policy:
    """The API's Policy for a rule of the file."""
    return pb.Policy(
        name=rule.name,
        when=rule.when,
        then=[action_message(action) for action in rule.then],
        cooldown_ms=rule.cooldown_ms,
    )


def names_others(endpoint: EndpointSpec) -> bool:
    """True when a rule of `endpoint` acts on another endpoint, which may not exist until the apply creates it."""
    return any(action.endpoint not in ("", endpoint.name) for rule in endpoint.policies for action in rule.then)


def add_request(
    job_id: str, endpoint: EndpointSpec, reason: str, *, with_policies: bool = True
) -> pb.AddEndpointToJobRequest:
    """AddEndpointToJob for an endpoint of the file, every field from the file (defaults filled in); its rules are
    left for a later update when not `with_policies`."""
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
        retry=retry_message(endpoint),
        reason=reason,
        jitter_ms=endpoint.jitter_ms,
        signing_secret=endpoint.signing_secret,
        policies=[policy_message(rule) for rule in endpoint.policies] if with_policies else [],
    )


def retry_message(endpoint: EndpointSpec) -> pb.RetryPolicy:
    return pb.RetryPolicy(max_attempts=endpoint.retry_attempts, backoff_ms=endpoint.retry_backoff_ms)


def policies_request(endpoint_id: str, endpoint: EndpointSpec, reason: str) -> pb.UpdateEndpointConfigRequest:
    """UpdateEndpointConfig setting only the rules of `endpoint`."""
    request = pb.UpdateEndpointConfigRequest(endpoint_id=endpoint_id, reason=reason)
    request.policies.SetInParent()  # no rules still has to arrive as "remove every rule"
    request.policies.rules.extend(policy_message(rule) for rule in endpoint.policies)
    return request


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
            case "retry":
                request.retry.CopyFrom(retry_message(desired))
            case "jitter":
                request.jitter_ms = desired.jitter_ms
            case "signing":
                request.signing_secret = desired.signing_secret  # empty stops signing
            case "policies":
                request.policies.SetInParent()
                request.policies.rules.extend(policy_message(rule) for rule in desired.policies)
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
            return f"+ {_endpoint_ref(job, endpoint.name)} {schedule_text(endpoint.schedule)}{_extras(endpoint)}"
        case UpdateEndpoint(job=job, endpoint=endpoint, fields=fields):
            diffs = "; ".join(f"{f.field} {f.before} -> {f.after}" for f in fields)
            return f"~ {_endpoint_ref(job, endpoint.name)}: {diffs}"
        case DeleteEndpoint(job=job, untracked=item):
            return f"- {_endpoint_ref(job, item.name)} not in file, deleted (--prune)"


def _extras(endpoint: EndpointSpec) -> str:
    """What a new endpoint has beyond its schedule: `, paused, jitter 5s, signed, policies [surge, calm]`."""
    extras = ["paused"] if endpoint.paused else []
    extras += [f"jitter {format_millis(endpoint.jitter_ms)}"] if endpoint.jitter_ms else []
    extras += [_retry(endpoint.retry_attempts, endpoint.retry_backoff_ms)[1]] if endpoint.retry_attempts > 1 else []
    extras += ["signed"] if endpoint.signing_secret else []
    extras += [f"policies {_names([rule.name for rule in endpoint.policies])}"] if endpoint.policies else []
    return "".join(f", {extra}" for extra in extras)


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
            item |= {
                "schedule": schedule_text(endpoint.schedule),
                "paused": endpoint.paused,
                "jitter_ms": endpoint.jitter_ms,
                "retry": {"max_attempts": endpoint.retry_attempts, "backoff_ms": endpoint.retry_backoff_ms},
                "signed": bool(endpoint.signing_secret),
                "policies": [rule.name for rule in endpoint.policies],
            }
        case UpdateEndpoint(job=job, endpoint=endpoint, fields=fields):
            item = _endpoint_json("update", job, endpoint) | {"fields": _fields_json(fields)}
        case DeleteEndpoint(job=job, untracked=gone):
            item = {"op": "delete", "kind": "endpoint", "job": job.name, "endpoint": gone.name, "path": job.path}
    item["job_id" if item["kind"] == "job" else "endpoint_id"] = object_id or _known_id(change)
    return item


def _known_id(change: Change) -> str | None:
    match change:
        case UpdateJob(job_id=job_id):
            return job_id
        case UpdateEndpoint(endpoint_id=endpoint_id):
            return endpoint_id
        case DeleteEndpoint(untracked=gone):
            return gone.endpoint_id
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
