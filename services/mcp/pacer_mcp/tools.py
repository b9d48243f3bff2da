"""The 17 Pacer actions as MCP tools: schemas, descriptions, and the mapping tool arguments -> RPC -> result.

This module knows nothing about the MCP SDK: `server.py` turns a `ToolSpec` into an MCP tool and a `ToolOutcome`
into a `CallToolResult`. Arguments are the protobuf JSON names of the request fields (camelCase), so a validated
argument object becomes the request through `json_format.ParseDict`; a few arguments are adapted first (times,
status filters, the update's header wrapper). Results are the protobuf JSON mapping of the response (camelCase,
RFC 3339 timestamps, enum names, int64 as numbers, fields without presence always present).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # jsonschema ships no type information

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common import limits
from pacer_common.client import ApiError
from pacer_common.descriptors import (
    enum_names,
    is_map,
    json_type,
    limit_of,
    map_fields,
    message_type,
    value_kind,
    wrapped_map,
)
from pacer_common.errors import FieldViolation, shown
from pacer_common.guard import OPAQUE_INTERNAL
from pacer_common.limits import HTTP_METHODS, MAX_INTERVAL_MS, schema_bounds

JOB_STATUS_FILTERS = ("active", "archived", "all")
RUN_STATUS_FILTERS = ("success", "failure", "running", "all")
TIME_FIELDS = ("runAt", "pauseUntil")
# Status codes that refuse the call for a reason of the caller's: their message is written for the caller.
CALLER_CODES = frozenset(
    {
        "INVALID_ARGUMENT",
        "OUT_OF_RANGE",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "ABORTED",
        "FAILED_PRECONDITION",
        "RESOURCE_EXHAUSTED",
    }
)
# A failure's own message never reaches the agent; these stand in for it.
FAILURE_MESSAGES = MappingProxyType(
    {
        "UNAVAILABLE": "the Pacer control plane is unavailable",
        "DEADLINE_EXCEEDED": "the Pacer control plane did not answer in time",
        "INTERNAL": "the Pacer control plane failed to handle the call",
        "UNKNOWN": "the Pacer control plane failed to handle the call",
    }
)

Arguments = Mapping[str, Any]
Result = dict[str, Any]


class Control(Protocol):
    """The part of `pacer_common.client.AsyncControlClient` the tools use; raises ApiError when refused."""

    def call(self, rpc: str, request: Any, key: str | None) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its MCP face (name, description, input schema, hints) and the RPC behind it.

    `adapt` turns valid arguments (times already RFC 3339 UTC) into the request's protobuf JSON at `now`.
    """

    name: str
    rpc: str
    request_type: type[Message]
    response_type: type[Message]
    description: str
    input_schema: dict[str, Any]
    summarize: Callable[[Arguments, Result], str]
    adapt: Callable[[dict[str, Any], datetime], dict[str, Any]] = lambda arguments, now: arguments
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False

    @property
    def output_schema(self) -> dict[str, Any]:
        """The JSON schema of `structuredContent`, derived from the response message."""
        # The stubs type DESCRIPTOR as the pure-Python or the upb class; both have the same interface.
        return message_schema(cast(Descriptor, self.response_type.DESCRIPTOR))


@dataclass(frozen=True)
class ToolOutcome:
    """What a call produced: a summary (or the refusal) as text, and the structured result when it succeeded."""

    text: str
    structured: Result | None = None
    is_error: bool = False


# -- running a tool ----------------------------------------------------------------------------------------------


async def run_tool(
    spec: ToolSpec, arguments: Arguments, control: Control, key_of: Callable[[], str], now: datetime
) -> ToolOutcome:
    """Validate `arguments`, call the RPC with the caller's key and render the response or the refusal.

    `key_of` returns the caller's API key or raises ApiError (UNAUTHENTICATED). `now` stands in for an omitted
    one-shot `runAt`. Never raises ApiError: every refusal becomes an error outcome.
    """
    try:
        request = build_request(spec, arguments, now)
        response = await control.call(spec.rpc, request, key_of())
    except ApiError as error:
        return refused(error)
    result = to_result(response)
    return ToolOutcome(text=spec.summarize(arguments, result), structured=result)


def build_request(spec: ToolSpec, arguments: Arguments, now: datetime) -> Message:
    """The protobuf request for `arguments`; raises ApiError(INVALID_ARGUMENT) naming each argument at fault."""
    violations = check_arguments(spec.input_schema, arguments)
    if violations:
        raise invalid(violations)
    request = spec.request_type()
    try:
        json_format.ParseDict(spec.adapt(_normalize_times(arguments), now), request)
    except json_format.ParseError:  # the schema check above should make this unreachable; stay a refusal if not
        raise invalid([FieldViolation("arguments", f"do not fit the {spec.rpc} request")]) from None
    return request


def to_result(response: Message) -> Result:
    """The protobuf JSON mapping of `response`, with int64 values as numbers and every no-presence field present."""
    return json_format.MessageToDict(
        response, always_print_fields_with_no_presence=True, unquote_int64_if_possible=True
    )


def invalid(violations: list[FieldViolation]) -> ApiError:
    """An INVALID_ARGUMENT refusal naming each argument at fault."""
    return ApiError("INVALID_ARGUMENT", "invalid arguments", tuple(violations))


def _normalize_times(arguments: Arguments) -> dict[str, Any]:
    """A copy of `arguments` with every time argument as RFC 3339 UTC; raises ApiError naming an unreadable one."""
    adapted = dict(arguments)
    for name in TIME_FIELDS:
        if name in adapted:
            adapted[name] = rfc3339(parse_time(adapted[name], name))
    return adapted


def _run_at_defaults_to_now(arguments: dict[str, Any], now: datetime) -> dict[str, Any]:
    return arguments if "runAt" in arguments else {**arguments, "runAt": rfc3339(now)}


def _wrapped_headers(arguments: dict[str, Any], now: datetime) -> dict[str, Any]:
    """UpdateEndpointConfig wraps its header map and its rule list (so that "no change" and "none" differ)."""
    adapted = dict(arguments)
    if "headers" in arguments:
        adapted["headers"] = {"entries": arguments["headers"]}
    if "policies" in arguments:
        adapted["policies"] = {"rules": arguments["policies"]}
    return adapted


def _status_filter(prefix: str) -> Callable[[dict[str, Any], datetime], dict[str, Any]]:
    """Map the seed's lowercase status filter to the enum name `prefix + VALUE`; "all" means no filter."""

    def adapt(arguments: dict[str, Any], now: datetime) -> dict[str, Any]:
        rest = {name: value for name, value in arguments.items() if name != "status"}
        status = arguments.get("status", "all")
        return rest if status == "all" else {**rest, "status": prefix + status.upper()}

    return adapt


def parse_time(value: str, argument: str) -> datetime:
    """An ISO 8601 time as aware UTC; a time without an offset is read as UTC. Raises ApiError when unreadable."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid([FieldViolation(argument, "must be an ISO 8601 time such as 2026-01-05T10:00:00Z")]) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """`moment` (aware) as RFC 3339 in UTC with a `Z` suffix."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- argument checks -----------------------------------------------------------------------------------------------


def check_arguments(schema: Mapping[str, Any], arguments: Arguments) -> list[FieldViolation]:
    """Every way `arguments` break `schema`, one violation per argument path (dotted, camelCase)."""
    found: dict[str, str] = {}
    validator = Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(dict(arguments)), key=lambda e: [str(part) for part in e.absolute_path]):
        for path, description in _describe(error):
            found.setdefault(path, description)
    return [FieldViolation(path, description) for path, description in found.items()]


def _describe(error: Any) -> list[tuple[str, str]]:
    """(argument path, what is wrong) pairs for one jsonschema error, in words an agent can act on."""
    prefix = ".".join(str(part) for part in error.absolute_path)
    kind, limit, instance, schema = error.validator, error.validator_value, error.instance, error.schema
    if kind == "required":
        return [(_join(prefix, name), "is required") for name in limit if name not in instance]
    if kind == "additionalProperties":
        known = ", ".join(schema.get("properties", {}))
        extra = [name for name in instance if name not in schema.get("properties", {})]
        return [(_join(prefix, name), f"is not an argument here; expected one of: {known}") for name in extra]
    if "propertyNames" in error.schema_path:  # the fault is in a name of the object, not in a value
        what = _constraint(kind, limit, schema, error.message)
        return [(prefix or "arguments", f"name {shown(instance, 40)} {what}")]
    return [(prefix or "arguments", _constraint(kind, limit, schema, error.message) + _unit(prefix, kind))]


def _constraint(kind: str, limit: Any, schema: Mapping[str, Any], fallback: str) -> str:
    match kind:
        case "type":
            return f"must be of type {limit}"
        case "minimum":
            return f"must be at least {limit}"
        case "maximum":
            return f"must be at most {limit}"
        case "minLength":
            return "must not be empty" if limit == 1 else f"must be at least {limit} characters"
        case "maxLength":
            return f"must be at most {limit} characters"
        case "pattern":
            return "has characters that are not allowed here"
        case "maxProperties" if "minProperties" not in schema:
            return f"must have at most {limit} entries"
        case "enum":
            return "must be one of: " + ", ".join(str(v) for v in limit)
        case "minProperties" | "maxProperties":
            return "set exactly one of: " + ", ".join(schema.get("properties", {}))
        case "oneOf":
            return "set exactly one of: " + ", ".join(option["required"][0] for option in limit)
        case "minItems":
            return f"must have at least {limit} items"
        case "maxItems":
            return f"must have at most {limit} items"
        case _:
            return str(fallback)


def _unit(path: str, kind: str) -> str:
    """The unit of a numeric bound, read from the argument's name (intervalMs, ttlMinutes, windowHours)."""
    if kind not in ("minimum", "maximum"):
        return ""
    for suffix, unit in (("Ms", " ms"), ("Minutes", " minutes"), ("Hours", " hours")):
        if path.endswith(suffix):
            return unit
    return ""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# -- refusals ------------------------------------------------------------------------------------------------------


def refused(error: ApiError) -> ToolOutcome:
    """A tool error: the gRPC status code, each argument at fault, quota details, retry-after and a next step."""
    message = "invalid arguments" if error.field_violations else shown_message(error)
    lines = [f"{error.code}: {message}"]
    lines += [f"- {argument_path(v.field)}: {v.description}" for v in error.field_violations]
    lines += [f"- quota {q.subject}: {q.description}" for q in error.quota_violations]
    if error.retry_after_s is not None:
        lines.append(f"Retry after {error.retry_after_s:g} seconds.")
    step = _next_step(error.code)
    if step:
        lines.append(step)
    return ToolOutcome(text="\n".join(lines), is_error=True)


def shown_message(error: ApiError) -> str:
    """The status message an agent may see: the control plane's text for a refusal of the call, but for a failure
    only an opaque error id or a fixed sentence (a transport failure names addresses, an old server a class)."""
    if error.code in CALLER_CODES:
        return error.message
    if error.code == "INTERNAL" and OPAQUE_INTERNAL.fullmatch(error.message):
        return error.message
    return FAILURE_MESSAGES.get(error.code, FAILURE_MESSAGES["UNKNOWN"])


def argument_path(field: str) -> str:
    """A request field path as the tool's argument path: `clamp.min_interval_ms` -> `clamp.minIntervalMs`."""
    parts = [_camel(part) for part in field.split(".")]
    if len(parts) > 1 and (parts[0], parts[1].split("[")[0]) in (("headers", "entries"), ("policies", "rules")):
        # UpdateEndpointConfig wraps its header map and rule list; the tool takes the map or list itself
        parts[0] += parts[1][len(parts[1].split("[")[0]) :]
        del parts[1]
    return ".".join(parts)


def _camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def _next_step(code: str) -> str:
    match code:
        case "INVALID_ARGUMENT":
            return "Fix the arguments named above and call the tool again."
        case "UNAUTHENTICATED":
            return "Use a valid Pacer API key (an operator creates one with pacer-admin create-key)."
        case "NOT_FOUND":
            return "The id is unknown or belongs to another tenant; use listJobs or listJobEndpoints to find ids."
        case "FAILED_PRECONDITION":
            return "The job is archived or the endpoint deleted: it can be read but no longer changed."
        case "RESOURCE_EXHAUSTED":
            return "A quota or rate limit refused the call; wait before retrying, or ask an operator to raise it."
        case "UNAVAILABLE" | "DEADLINE_EXCEEDED":
            return "The Pacer control plane did not answer; retry shortly."
        case "INTERNAL":
            return "Retry shortly; if it keeps failing, tell an operator (with the error id, when there is one)."
        case _:
            return ""


# -- output schemas ------------------------------------------------------------------------------------------------


def message_schema(descriptor: Descriptor) -> dict[str, Any]:
    """The JSON schema of `to_result` for a message: fields without presence are required."""
    return {
        "type": "object",
        "properties": {field.json_name: _field_schema(field) for field in descriptor.fields},
        "required": [field.json_name for field in descriptor.fields if not field.has_presence],
    }


def _field_schema(field: FieldDescriptor) -> dict[str, Any]:
    if is_map(field):
        return {"type": "object", "additionalProperties": _value_schema(map_fields(field)[1])}
    if field.is_repeated:
        return {"type": "array", "items": _value_schema(field)}
    return _value_schema(field)


def _value_schema(field: FieldDescriptor) -> dict[str, Any]:
    match value_kind(field):
        case "timestamp":
            return {"type": "string", "format": "date-time", "description": "RFC 3339 time, UTC"}
        case "message":
            return message_schema(message_type(field))
        case "enum":
            return {"type": "string", "enum": enum_names(field)}
        case _:
            schema: dict[str, Any] = {"type": json_type(field)}
            if field.json_name.endswith("Ms"):
                schema["description"] = "milliseconds"
            return schema


def result_json(result: Result) -> str:
    """The structured result as compact JSON text, for clients that read only text content."""
    return json.dumps(result, separators=(",", ":"), sort_keys=True)


# -- argument schemas ----------------------------------------------------------------------------------------------


def _object(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _id(kind: str, source: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": f"Id of the {kind}, as returned by {source}."}


def _reason(example: str) -> dict[str, Any]:
    return {
        "type": "string",
        "description": f'Why, for the audit trail (at most {limits.REASON.max_length} characters), e.g. "{example}".',
    }


def _name(what: str, example: str) -> dict[str, Any]:
    low, high = limits.NAME.min_length, limits.NAME.max_length
    return {"type": "string", "description": f'{what}, {low} to {high} characters, e.g. "{example}".'}


def _job_description() -> dict[str, Any]:
    return {
        "type": "string",
        "description": f"Free text about the job's purpose, at most {limits.DESCRIPTION.max_length} characters.",
    }


def _interval(floor_ms: int, what: str) -> dict[str, Any]:
    return {
        "type": "integer",
        "description": f"{what}, in milliseconds ({floor_ms} to {MAX_INTERVAL_MS}, i.e. 366 days).",
    }


def _ttl(what: str) -> dict[str, Any]:
    ttl = limits.TTL_MINUTES
    return {
        "type": "integer",
        "description": f"{what}, in minutes ({ttl.minimum} to {ttl.maximum}, i.e. 7 days); "
        f"omitted means {ttl.default}.",
    }


def _time(what: str) -> dict[str, Any]:
    return {
        "type": "string",
        "format": "date-time",
        "description": f"{what}: an ISO 8601 time in UTC such as 2026-01-05T10:30:00Z "
        "(without an offset it is read as UTC).",
    }


def _url() -> dict[str, Any]:
    return {
        "type": "string",
        "description": "Absolute http:// or https:// URL Pacer calls, e.g. https://api.example.com/health. The default "
        "egress policy refuses loopback, private and cloud-metadata addresses (such runs are BLOCKED).",
    }


def _method() -> dict[str, Any]:
    return {"type": "string", "enum": list(HTTP_METHODS), "description": "HTTP method; omitted means GET."}


def _headers(what: str) -> dict[str, Any]:
    count, size_kib = limits.HEADERS.max_length, (limits.HEADERS.max_bytes or 0) // 1024
    return {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": f"{what}: name -> value, at most {count} headers and {size_kib} KiB in all, "
        'e.g. {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}.',
    }


def _body() -> dict[str, Any]:
    size_kib = (limits.BODY.max_bytes or 0) // 1024
    return {
        "type": "string",
        "description": f"Request body sent as is, at most {size_kib} KiB (set a matching Content-Type header).",
    }


def _timeout() -> dict[str, Any]:
    timeout = limits.TIMEOUT_MS
    return {
        "type": "integer",
        "description": "Timeout for the whole HTTP exchange, in milliseconds "
        f"({timeout.minimum} to {timeout.maximum}); omitted means {timeout.default}.",
    }


def _baseline(floor_ms: int) -> dict[str, Any]:
    cron = _object(
        {
            "expression": {
                "type": "string",
                "description": 'Cron expression: 5 fields, minute first ("*/15 * * * *" = every 15 minutes, '
                '"0 9 * * MON" = Mondays 09:00), or 6 fields with seconds first ("*/30 * * * * *").',
            },
            "timezone": {
                "type": "string",
                "description": 'IANA time zone the expression is read in, e.g. "Europe/Berlin"; omitted means UTC.',
            },
        },
        "expression",
    )
    every = _interval(floor_ms, "Run this long after the previous run was scheduled (stretched by failure backoff)")
    return {
        **_object({"cron": cron, "intervalMs": every}),
        "minProperties": 1,
        "maxProperties": 1,
        "description": 'The normal cadence, exactly one of cron or intervalMs: {"intervalMs": 120000} (every 2 '
        'minutes) or {"cron": {"expression": "0 2 * * *", "timezone": "UTC"}} (daily at 02:00).',
    }


def _clamp(floor_ms: int) -> dict[str, Any]:
    def bound(what: str) -> dict[str, Any]:
        return {
            "type": "integer",
            "description": f"{what}, in milliseconds; 0 or omitted = no bound, otherwise at least {floor_ms}.",
        }

    properties = {
        "minIntervalMs": bound(
            "Cooldown: never start a run sooner than this after the previous run started, whatever baseline, hints "
            "or one-shots say (600000 = at most one run per 10 minutes)"
        ),
        "maxIntervalMs": bound("Never let more than this pass after the previous run"),
    }
    return {**_object(properties), "description": "Bounds on the time between runs; the min clamp wins a conflict."}


def _ms(limit: limits.Limit, what: str) -> dict[str, Any]:
    """An integer argument in milliseconds bounded by `limit`."""
    return {
        "type": "integer",
        "minimum": 0 if limit.zero != "refused" else limit.minimum,
        "maximum": limit.maximum,
        "description": f"{what}, in milliseconds ({limit.minimum} to {limit.maximum}).",
    }


def _policy_action(floor_ms: int) -> dict[str, Any]:
    hint = _object(
        {
            "intervalMs": _interval(floor_ms, "The cadence while the hint is fresh"),
            "ttlMs": _ms(limits.POLICY_HINT_TTL_MS, "How long the hint stays fresh; omitted means 1 hour"),
        },
        "intervalMs",
    )
    delay = _ms(limits.POLICY_ONE_SHOT_DELAY_MS, "How long after the triggering run is recorded; omitted means at once")
    pause = _ms(limits.POLICY_PAUSE_FOR_MS, "How long to pause; omitted or 0 pauses until resumed")
    actions = {
        "intervalHint": {**hint, "description": "Apply an interval hint, as applyIntervalHint."},
        "oneShot": {**_object({"delayMs": delay}), "description": "Schedule a one-shot run, as scheduleOneShotRun."},
        "pause": {**_object({"forMs": pause}), "description": "Pause the endpoint, as pauseOrResumeEndpoint."},
        "resume": {**_object({}), "description": "Resume the endpoint: {}."},
        "clearHints": {**_object({}), "description": "Clear interval hints and one-shots: {}."},
        "resetFailures": {**_object({}), "description": "Reset the failure count and its backoff: {}."},
    }
    endpoint = {
        "type": "string",
        "description": "Name of the endpoint acted on, in the same job; omitted means the rule's own endpoint.",
    }
    return {
        **_object({"endpoint": endpoint, **actions}),
        "oneOf": [{"required": [name]} for name in actions],
        "description": "One action: exactly one of " + ", ".join(actions) + ", with an optional endpoint.",
    }


def _policies(floor_ms: int, what: str) -> dict[str, Any]:
    name, when, cooldown = limits.POLICY_NAME, limits.POLICY_WHEN, limits.POLICY_COOLDOWN_MS
    rule = _object(
        {
            "name": {
                "type": "string",
                "minLength": name.min_length,
                "maxLength": name.max_length,
                "pattern": name.pattern,
                "description": "Name, unique on the endpoint: a-z, 0-9, - and _; audited as policy:<name>.",
            },
            "when": {
                "type": "string",
                "minLength": when.min_length,
                "maxLength": when.max_length,
                "description": 'Condition in CEL over the run just recorded: run (status such as "SUCCESS", '
                "http_status, duration_ms), body (the response parsed as JSON, null when it is not JSON), endpoint "
                "(name, failure_count, paused, ...) and streak (how many consecutive runs, this one included, the "
                'condition has held), e.g. "has(body.ratio) && body.ratio > 5.0" or '
                "\"run.status != 'SUCCESS' && streak >= 3\". See docs/policies.md.",
            },
            "then": {
                "type": "array",
                "minItems": 1,
                "maxItems": (limits.POLICY_THEN.max_length or 0),
                "items": _policy_action(floor_ms),
                "description": "What to do when the condition holds, in order.",
            },
            "cooldownMs": _ms(cooldown, "The rule does not fire again this soon after it fired; omitted means 0"),
        },
        "name",
        "when",
        "then",
    )
    return {
        "type": "array",
        "maxItems": (limits.POLICIES.max_length or 0),
        "items": rule,
        "description": f"{what}: rules Pacer applies by itself each time a run of this endpoint is recorded, so you "
        "need not poll: when `when` holds, the actions of `then` run as if you had called the steering tools "
        "(same clamps, quotas and audit trail). Example: tighten to 30 s for an hour and start the inventory "
        'checker when traffic is over 5x baseline: [{"name": "surge", "when": "has(body.ratio) && body.ratio > '
        '5.0", "then": [{"intervalHint": {"intervalMs": 30000, "ttlMs": 3600000}}, {"endpoint": '
        '"inventory-check", "resume": {}}], "cooldownMs": 600000}].',
    }


def _jitter() -> dict[str, Any]:
    return _ms(
        limits.JITTER_MS,
        "Spread each run uniformly over [slot, slot + jitterMs] (the same offset for the same slot), so many "
        "endpoints on one schedule do not hit their targets at once; less than the interval, 0 means none",
    )


def _retry(update: bool) -> dict[str, Any]:
    attempts, backoff = limits.RETRY_MAX_ATTEMPTS, limits.RETRY_BACKOFF_MS
    properties = {
        "maxAttempts": {
            "type": "integer",
            "description": f"HTTP attempts per run, {attempts.minimum} to {attempts.maximum}; 1 or omitted = no retry.",
        },
        "backoffMs": _ms(backoff, "Wait before the second attempt, doubling before each later one; omitted = 1000"),
    }
    replaces = ' Replaces the current policy; {"maxAttempts": 1} stops retrying.' if update else ""
    return {
        **_object(properties),
        "description": "Retry a run's HTTP call when it fails in a way that may pass (timeout, no connection, 502, "
        "503, 504): the run is recorded once with every attempt (listRuns/getRunDetails attempts), and only its "
        "final outcome counts for the failure backoff. Each attempt carries the same X-Pacer-Run-Id and its number "
        'in X-Pacer-Attempt. Example: {"maxAttempts": 3, "backoffMs": 2000}.' + replaces,
    }


def _signing_secret(update: bool) -> dict[str, Any]:
    secret = limits.SIGNING_SECRET
    stop = ' "" stops signing;' if update else ""
    return {
        "type": "string",
        "maxLength": secret.max_length,
        "description": f"Secret ({secret.min_length} to {secret.max_length} characters) Pacer signs each request "
        f"with (X-Pacer-Signature, HMAC-SHA256; see docs/delivery.md);{stop} write-only: never returned, "
        "listJobEndpoints says only signed.",
    }


def _range(limit: limits.Limit) -> str:
    return f"{limit.minimum} to {limit.maximum}; omitted means {limit.default}"


# -- limits --------------------------------------------------------------------------------------------------------


def with_limits(schema: dict[str, Any], descriptor: Descriptor, floor_ms: int) -> dict[str, Any]:
    """`schema`, the arguments standing for the fields of `descriptor`, with each field's API limit stated.

    The numbers come from `pacer_common.limits` only, so a tool refuses what the control plane would, naming the
    argument, without a call. An argument is left out rather than sent as 0, so 0 is offered only for "no bound".
    """
    fields = {field.json_name: field for field in descriptor.fields}
    properties = {
        name: _argument_limits(argument, fields[name], floor_ms) if name in fields else argument
        for name, argument in schema.get("properties", {}).items()
    }
    return {**schema, "properties": properties}


def _argument_limits(argument: dict[str, Any], field: FieldDescriptor, floor_ms: int) -> dict[str, Any]:
    field = wrapped_map(field) or field  # the tool takes a wrapped map (UpdateEndpointConfig's headers) itself
    if is_map(field):
        names = _bounded({"type": "string"}, map_fields(field)[0], floor_ms)
        return {**_bounded(argument, field, floor_ms, entries=True), "propertyNames": names}
    if argument.get("type") == "array":
        return argument  # a list of rules: `_policies` states its limits from `pacer_common.limits` itself
    if value_kind(field) == "message":
        return with_limits(argument, message_type(field), floor_ms)
    return _bounded(argument, field, floor_ms)


def _bounded(argument: dict[str, Any], field: FieldDescriptor, floor_ms: int, entries: bool = False) -> dict[str, Any]:
    limit = limit_of(field)
    if limit is None:
        return argument
    return {**argument, **schema_bounds(limit, floor_ms, omittable=True, entries=entries)}


# -- the 17 tools --------------------------------------------------------------------------------------------------


def tool_specs(floor_ms: int = 1000) -> tuple[ToolSpec, ...]:
    """The 17 tools in the seed's order, then the additions (listAuditRecords); `floor_ms` is the shortest interval
    the control plane accepts."""
    specs = _specs(floor_ms)
    return tuple(replace(spec, input_schema=_limited(spec, floor_ms)) for spec in specs)


def _limited(spec: ToolSpec, floor_ms: int) -> dict[str, Any]:
    # The stubs type DESCRIPTOR as the pure-Python or the upb class; both have the same interface.
    return with_limits(spec.input_schema, cast(Descriptor, spec.request_type.DESCRIPTOR), floor_ms)


def _specs(floor_ms: int) -> tuple[ToolSpec, ...]:
    return (
        _create_job(),
        _get_job(),
        _list_jobs(),
        _update_job(),
        _archive_job(),
        _add_endpoint(floor_ms),
        _update_endpoint(floor_ms),
        _delete_endpoint(),
        _list_job_endpoints(),
        _apply_interval_hint(floor_ms),
        _schedule_one_shot(),
        _pause_or_resume(),
        _clear_hints(),
        _reset_failures(),
        _list_runs(),
        _get_run_details(),
        _summarize_health(),
        _list_audit_records(),
    )


def _when(value: Any, absent: str = "none") -> str:
    return str(value) if value else absent


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _create_job() -> ToolSpec:
    return ToolSpec(
        name="createJob",
        rpc="CreateJob",
        request_type=pb.CreateJobRequest,
        response_type=pb.CreateJobResponse,
        description=(
            "Create a job: an empty, active container for related endpoints. Every setup starts here; then add "
            'endpoints with addEndpointToJob. Example: name "Production Health Monitor", description "API, DB and '
            'queue health checks with investigation, remediation and alert tiers". Returns jobId and createdAt.'
        ),
        input_schema=_object(
            {"name": _name("Display name", "Production Health Monitor"), "description": _job_description()}, "name"
        ),
        summarize=lambda args, r: f"Created job {r['jobId']} at {r.get('createdAt')}.",
    )


def _job_line(args: Arguments, r: Result) -> str:
    job = r["job"]
    endpoints, failures = _count(job["endpointCount"], "endpoint"), _count(job["failureCount"], "consecutive failure")
    return f'Job {job["jobId"]} "{job["name"]}" is {job["status"]}: {endpoints}, {failures}.'


def _get_job() -> ToolSpec:
    return ToolSpec(
        name="getJob",
        rpc="GetJob",
        request_type=pb.GetJobRequest,
        response_type=pb.GetJobResponse,
        description=(
            "Get one job: name, description, status (JOB_STATUS_ACTIVE or JOB_STATUS_ARCHIVED), createdAt, "
            "updatedAt, endpointCount and failureCount (the sum of its endpoints' consecutive failures: above 0 "
            "means something is failing right now). Use it as a quick health check of a job."
        ),
        input_schema=_object({"jobId": _id("job", "createJob or listJobs")}, "jobId"),
        summarize=_job_line,
        read_only=True,
        idempotent=True,
    )


def _list_jobs() -> ToolSpec:
    return ToolSpec(
        name="listJobs",
        rpc="ListJobs",
        request_type=pb.ListJobsRequest,
        response_type=pb.ListJobsResponse,
        description=(
            "List your jobs, newest first, one page at a time, each with jobId, name, status, endpointCount and "
            "lastRunAt. Use it to discover job ids. When nextPageToken is not empty, call again with it as "
            'pageToken for the next page. Example: {"status": "active", "pageSize": 20}.'
        ),
        input_schema=_object(
            {
                "status": {
                    "type": "string",
                    "enum": list(JOB_STATUS_FILTERS),
                    "description": 'Only jobs in this state; omitted or "all" lists every job.',
                },
                "pageSize": {"type": "integer", "description": "Jobs per page, " + _range(limits.PAGE_SIZE) + "."},
                "pageToken": {"type": "string", "description": "nextPageToken of the previous page."},
            }
        ),
        adapt=_status_filter("JOB_STATUS_"),
        summarize=lambda args, r: (
            _count(len(r["jobs"]), "job")
            + (f"; more with pageToken {r['nextPageToken']}." if r["nextPageToken"] else ".")
        ),
        read_only=True,
        idempotent=True,
    )


def _update_job() -> ToolSpec:
    return ToolSpec(
        name="updateJob",
        rpc="UpdateJob",
        request_type=pb.UpdateJobRequest,
        response_type=pb.UpdateJobResponse,
        description=(
            "Rename a job or change its description; omitted fields keep their value. Archived jobs refuse it "
            '(FAILED_PRECONDITION). Example: {"jobId": "...", "name": "Black Friday Flash Sale 2026", '
            '"reason": "sale dates confirmed"}.'
        ),
        input_schema=_object(
            {
                "jobId": _id("job", "createJob or listJobs"),
                "name": _name("New display name", "Black Friday Flash Sale 2026"),
                "description": _job_description(),
                "reason": _reason("sale dates confirmed"),
            },
            "jobId",
        ),
        summarize=lambda args, r: f"Updated job {args['jobId']} at {r.get('updatedAt')}.",
        idempotent=True,
    )


def _archive_job() -> ToolSpec:
    return ToolSpec(
        name="archiveJob",
        rpc="ArchiveJob",
        request_type=pb.ArchiveJobRequest,
        response_type=pb.ArchiveJobResponse,
        description=(
            "Archive (soft-delete) a job whose purpose has ended, e.g. a finished campaign or seasonal job: none of "
            "its endpoints fire again, its run history stays readable, and it cannot be changed or reactivated. "
            "Archiving an archived job returns the original archivedAt. To stop endpoints for a while, pause them "
            "instead (pauseOrResumeEndpoint)."
        ),
        input_schema=_object(
            {"jobId": _id("job", "createJob or listJobs"), "reason": _reason("flash sale is over")}, "jobId"
        ),
        summarize=lambda args, r: (
            f"Archived job {args['jobId']} at {r.get('archivedAt')}; its endpoints no longer run."
        ),
        destructive=True,
        idempotent=True,
    )


def _add_endpoint(floor_ms: int) -> ToolSpec:
    return ToolSpec(
        name="addEndpointToJob",
        rpc="AddEndpointToJob",
        request_type=pb.AddEndpointToJobRequest,
        response_type=pb.AddEndpointToJobResponse,
        description=(
            "Add an endpoint to a job: an HTTP call Pacer makes on a schedule, with exactly one baseline (interval "
            "in milliseconds or cron) and optional clamps. Returns endpointId and nextRunAt (its first run). "
            'Example (DevOps health tier): {"jobId": "...", "name": "check_error_rate", "url": '
            '"https://api.example.com/health/errors", "baseline": {"intervalMs": 60000}}. For an endpoint used '
            'only on demand (investigation, remediation, alert), give it a long baseline such as {"intervalMs": '
            '86400000} and a cooldown clamp such as {"minIntervalMs": 600000}, then pause it at once with '
            "pauseOrResumeEndpoint and trigger it with scheduleOneShotRun (see resource pacer://scheduling-rules). "
            "Give it policies to have Pacer steer it (or other endpoints of the job) by itself from each run's "
            "result, instead of polling listRuns."
        ),
        input_schema=_object(
            {
                "jobId": _id("job", "createJob or listJobs"),
                "name": _name("Display name", "check_error_rate"),
                "url": _url(),
                "method": _method(),
                "headers": _headers("HTTP request headers"),
                "body": _body(),
                "baseline": _baseline(floor_ms),
                "clamp": _clamp(floor_ms),
                "timeoutMs": _timeout(),
                "policies": _policies(floor_ms, "Rules"),
                "jitterMs": _jitter(),
                "signingSecret": _signing_secret(update=False),
                "retry": _retry(update=False),
                "reason": _reason("watch 5xx rate during the launch"),
            },
            "jobId",
            "name",
            "url",
            "baseline",
        ),
        summarize=lambda args, r: f"Added endpoint {r['endpointId']}; first run at {_when(r.get('nextRunAt'))}.",
    )


def _update_endpoint(floor_ms: int) -> ToolSpec:
    return ToolSpec(
        name="updateEndpointConfig",
        rpc="UpdateEndpointConfig",
        request_type=pb.UpdateEndpointConfigRequest,
        response_type=pb.UpdateEndpointConfigResponse,
        description=(
            "Change an endpoint's configuration; omitted arguments keep their value and the next run is re-planned "
            "at once. headers replaces all headers; clamp replaces both bounds ({} removes them); baseline replaces "
            "the cadence and restarts it from now. Use it when an API moved, a token rotated or a timeout is too "
            "short; policies replaces all rules ([] removes them); signingSecret rotates the secret (the old one "
            "still signs for signingOverlapMs). For a temporary cadence change use applyIntervalHint instead. "
            "Example (token rotation): "
            '{"endpointId": "...", "headers": {"Authorization": "Bearer new-token"}, "reason": '
            '"rotated API token"}. Returns updatedAt and nextRunAt (absent while paused indefinitely).'
        ),
        input_schema=_object(
            {
                "endpointId": _id("endpoint", "addEndpointToJob or listJobEndpoints"),
                "name": _name("New display name", "check_api_latency"),
                "url": _url(),
                "method": _method(),
                "headers": _headers("New HTTP request headers, replacing all current ones"),
                "body": _body(),
                "baseline": _baseline(floor_ms),
                "clamp": _clamp(floor_ms),
                "timeoutMs": _timeout(),
                "policies": _policies(floor_ms, "New rules, replacing all current ones ([] removes them)"),
                "jitterMs": _jitter(),
                "signingSecret": _signing_secret(update=True),
                "retry": _retry(update=True),
                "signingOverlapMs": _ms(
                    limits.SIGNING_OVERLAP_MS,
                    "After a new signingSecret, how long the previous one still signs alongside it; omitted means "
                    "86400000 (24 hours)",
                ),
                "reason": _reason("rotated API token"),
            },
            "endpointId",
        ),
        adapt=_wrapped_headers,
        summarize=lambda args, r: (
            f"Updated endpoint {args['endpointId']}; next run at {_when(r.get('nextRunAt'), 'none (paused)')}."
        ),
        idempotent=True,
    )


def _delete_endpoint() -> ToolSpec:
    return ToolSpec(
        name="deleteEndpoint",
        rpc="DeleteEndpoint",
        request_type=pb.DeleteEndpointRequest,
        response_type=pb.DeleteEndpointResponse,
        description=(
            "Delete an endpoint from its job: it never runs again and cannot be changed; its run history stays "
            "readable. Deleting a deleted endpoint returns the original deletedAt. Use it to remove a deprecated "
            "health check or a test endpoint; to stop an endpoint for a while use pauseOrResumeEndpoint instead."
        ),
        input_schema=_object(
            {
                "endpointId": _id("endpoint", "addEndpointToJob or listJobEndpoints"),
                "reason": _reason("health check replaced by check_api_latency"),
            },
            "endpointId",
        ),
        summarize=lambda args, r: f"Deleted endpoint {args['endpointId']} at {r.get('deletedAt')}.",
        destructive=True,
        idempotent=True,
    )


def _list_job_endpoints() -> ToolSpec:
    return ToolSpec(
        name="listJobEndpoints",
        rpc="ListJobEndpoints",
        request_type=pb.ListJobEndpointsRequest,
        response_type=pb.ListJobEndpointsResponse,
        description=(
            "List a job's live endpoints, oldest first, with their schedule state: nextRunAt (absent while paused "
            "indefinitely), nextRunSource (the rule that chose it), lastRunAt, failureCount (consecutive failures, "
            "which drive backoff), paused and pausedUntil; and their configuration, including policies (the rules "
            "Pacer applies by itself), jitterMs, signed (the secret is never returned) and previousSecretExpiresAt "
            "(while a rotated-out secret still signs) and retry. Use it to find endpoint ids and to see what runs next."
        ),
        input_schema=_object({"jobId": _id("job", "createJob or listJobs")}, "jobId"),
        summarize=lambda args, r: f"{_count(len(r['endpoints']), 'endpoint')} in job {args['jobId']}.",
        read_only=True,
        idempotent=True,
    )


def _apply_interval_hint(floor_ms: int) -> ToolSpec:
    return ToolSpec(
        name="applyIntervalHint",
        rpc="ApplyIntervalHint",
        request_type=pb.ApplyIntervalHintRequest,
        response_type=pb.ApplyIntervalHintResponse,
        description=(
            "Temporarily replace an endpoint's cadence: run every intervalMs milliseconds for ttlMinutes minutes, "
            "then return to the baseline by itself. Use it to tighten monitoring during a surge or to relax it "
            "after recovery (a hint may be longer than the baseline). Example: traffic spiked 5x: run every 20000 "
            'ms for 20 minutes: {"endpointId": "...", "intervalMs": 20000, "ttlMinutes": 20, "reason": '
            '"traffic spiked 5x"}. Clamps still apply and failure backoff does not; a new hint replaces the old '
            "one; clearAdaptiveHints ends it early. Takes effect at once. Returns hintExpiresAt and nextRunAt."
        ),
        input_schema=_object(
            {
                "endpointId": _id("endpoint", "addEndpointToJob or listJobEndpoints"),
                "intervalMs": _interval(floor_ms, "The cadence while the hint is fresh"),
                "ttlMinutes": _ttl("How long the hint stays in force"),
                "reason": _reason("traffic spiked 5x"),
            },
            "endpointId",
            "intervalMs",
        ),
        summarize=lambda args, r: (
            f"Endpoint {args['endpointId']} runs every {args['intervalMs']} ms until {r.get('hintExpiresAt')}; "
            f"next run at {_when(r.get('nextRunAt'))}."
        ),
    )


def _schedule_one_shot() -> ToolSpec:
    return ToolSpec(
        name="scheduleOneShotRun",
        rpc="ScheduleOneShotRun",
        request_type=pb.ScheduleOneShotRunRequest,
        response_type=pb.ScheduleOneShotRunResponse,
        description=(
            "Ask for one extra run of an endpoint at runAt (omitted = now). It fires even while the endpoint is "
            'paused, and the pause stays in force afterwards ("fire once, then cool down"); the endpoint\'s min '
            "clamp (cooldown) may hold it back, so scheduledFor says when it will really run. If it cannot fire at "
            "runAt it stays valid for ttlMinutes. A new one-shot replaces a pending one. Use it to trigger an "
            "investigation, a remediation or an alert. Example: run cache warm-up in 30 seconds because pages are "
            'slow: {"endpointId": "...", "runAt": "<now + 30 s>", "reason": "pages are slow"}.'
        ),
        input_schema=_object(
            {
                "endpointId": _id("endpoint", "addEndpointToJob or listJobEndpoints"),
                "runAt": _time("When to run, from 5 minutes ago (meaning now) to 366 days ahead; omitted means now"),
                "ttlMinutes": _ttl("How long after runAt the one-shot may still fire if it could not fire at runAt"),
                "reason": _reason("pages are slow"),
            },
            "endpointId",
        ),
        adapt=_run_at_defaults_to_now,
        summarize=lambda args, r: f"One-shot run of {args['endpointId']} scheduled for {r.get('scheduledFor')}.",
    )


def _pause_state(args: Arguments, r: Result) -> str:
    if not r["paused"]:
        state = "active"
    elif r.get("pausedUntil"):
        state = f"paused until {r['pausedUntil']}"
    else:
        state = "paused indefinitely"
    return f"Endpoint {args['endpointId']} is {state}; next run at {_when(r.get('nextRunAt'))}."


def _pause_or_resume() -> ToolSpec:
    return ToolSpec(
        name="pauseOrResumeEndpoint",
        rpc="PauseOrResumeEndpoint",
        request_type=pb.PauseOrResumeEndpointRequest,
        response_type=pb.PauseOrResumeEndpointResponse,
        description=(
            "Pause or resume an endpoint. With only endpointId it pauses indefinitely; with pauseUntil it pauses "
            "until that time; with resume true it resumes, and its cadence restarts from now. While paused only "
            "one-shots fire. Use it to keep investigation endpoints idle until needed, to activate them, or to "
            "silence a noisy alert. Example: pause slow query analyzer until database issues detected: "
            '{"endpointId": "...", "reason": "investigate only when the DB degrades"}. Returns paused, '
            "pausedUntil (absent when active or paused indefinitely) and nextRunAt."
        ),
        input_schema=_object(
            {
                "endpointId": _id("endpoint", "addEndpointToJob or listJobEndpoints"),
                "pauseUntil": _time("Pause until this future time; omit (with resume false) to pause indefinitely"),
                "resume": {
                    "type": "boolean",
                    "description": "true resumes the endpoint; must not be combined with pauseUntil.",
                },
                "reason": _reason("investigate only when the DB degrades"),
            },
            "endpointId",
        ),
        summarize=_pause_state,
        idempotent=True,
    )


def _clear_hints() -> ToolSpec:
    return ToolSpec(
        name="clearAdaptiveHints",
        rpc="ClearAdaptiveHints",
        request_type=pb.ClearAdaptiveHintsRequest,
        response_type=pb.ClearAdaptiveHintsResponse,
        description=(
            "Drop an endpoint's interval hint and any pending one-shot, so it returns to its baseline cadence at "
            "once. Use it when an event is over or after a manual fix, so automation does not keep steering. "
            'Example: clear all hints after flash sale ends: {"endpointId": "...", "reason": "flash sale '
            'ended"}. Returns clearedAt and nextRunAt.'
        ),
        input_schema=_object(
            {
                "endpointId": _id("endpoint", "addEndpointToJob or listJobEndpoints"),
                "reason": _reason("flash sale ended"),
            },
            "endpointId",
        ),
        summarize=lambda args, r: (
            f"Cleared the hints of {args['endpointId']}; next run at {_when(r.get('nextRunAt'))}."
        ),
        idempotent=True,
    )


def _reset_failures() -> ToolSpec:
    return ToolSpec(
        name="resetFailureCount",
        rpc="ResetFailureCount",
        request_type=pb.ResetFailureCountRequest,
        response_type=pb.ResetFailureCountResponse,
        description=(
            "Set an endpoint's consecutive-failure count to 0, which removes the failure backoff (2^failures, at "
            "most 32x) from its baseline interval, so it runs at its normal cadence again at once. Use it after "
            'deploying a fix. Example: reset failures after deploying selector fix: {"endpointId": "...", '
            '"reason": "deployed the selector fix"}. Returns failureCount (0) and nextRunAt.'
        ),
        input_schema=_object(
            {
                "endpointId": _id("endpoint", "addEndpointToJob or listJobEndpoints"),
                "reason": _reason("deployed the selector fix"),
            },
            "endpointId",
        ),
        summarize=lambda args, r: (
            f"Failure count of {args['endpointId']} is {r['failureCount']}; next run at {_when(r.get('nextRunAt'))}."
        ),
        idempotent=True,
    )


def _list_runs() -> ToolSpec:
    return ToolSpec(
        name="listRuns",
        rpc="ListRuns",
        request_type=pb.ListRunsRequest,
        response_type=pb.ListRunsResponse,
        description=(
            "List runs, newest scheduled first, each with runId, endpointId, jobId, scheduledFor, startedAt, "
            "status, durationMs and source (the rule that scheduled it); total counts every matching run. Filter "
            'by jobId and/or endpointId and by status: "success", "failure" (every unsuccessful final status: '
            'FAILURE, TIMEOUT, LOST, BLOCKED) or "running". Use it to diagnose failure patterns, then '
            'getRunDetails for one run. Example: {"endpointId": "...", "status": "failure", "limit": 10}.'
        ),
        input_schema=_object(
            {
                "jobId": _id("job", "createJob or listJobs"),
                "endpointId": _id("endpoint", "addEndpointToJob or listJobEndpoints"),
                "status": {
                    "type": "string",
                    "enum": list(RUN_STATUS_FILTERS),
                    "description": 'Only runs with this outcome; omitted or "all" lists every run.',
                },
                "limit": {"type": "integer", "description": "Runs to return, " + _range(limits.RUN_LIMIT) + "."},
                "offset": {
                    "type": "integer",
                    "description": "Matching runs to skip, for paging: the next page starts at offset + limit.",
                },
            }
        ),
        adapt=_status_filter("RUN_STATUS_FILTER_"),
        summarize=lambda args, r: f"{len(r['runs'])} of {_count(r['total'], 'matching run')}.",
        read_only=True,
        idempotent=True,
    )


def _run_line(args: Arguments, r: Result) -> str:
    run = r["run"]
    http = f" (HTTP {run['httpStatus']})" if run["httpStatus"] else ""
    error = f": {run['errorMessage']}" if run["errorMessage"] else ""
    firings = "".join(
        f" Rule {f['rule']}: {f['outcome']}" + "".join(f"; {effect}" for effect in f["effects"]) + "."
        for f in run["policyFirings"]
    )
    return (
        f"Run {run['runId']} of {run['endpointId']}: {run['status']}{http} in {run['durationMs']} ms, "
        f"scheduled for {run.get('scheduledFor')} by {run['source']}{error}.{firings}"
    )


def _get_run_details() -> ToolSpec:
    return ToolSpec(
        name="getRunDetails",
        rpc="GetRunDetails",
        request_type=pb.GetRunDetailsRequest,
        response_type=pb.GetRunDetailsResponse,
        description=(
            "Get one run in full: status, source, attempt (1 + the endpoint's failures before it), scheduledFor, "
            "startedAt, finishedAt, durationMs, httpStatus (0 when there was no response), errorMessage, and the "
            "start of the response body (first 64 KiB; responseTruncated says whether it was cut), and "
            "policyFirings: each rule of the endpoint whose condition held on this run, with its outcome (FIRED, "
            "SKIPPED_COOLDOWN, ERROR), its effects and any error. Use it to investigate a failure, to read what an "
            "investigation endpoint returned, or to see what a rule did."
        ),
        input_schema=_object({"runId": _id("run", "listRuns")}, "runId"),
        summarize=_run_line,
        read_only=True,
        idempotent=True,
    )


def _health_line(args: Arguments, r: Result) -> str:
    last = r.get("lastRun")
    tail = f" Last run {last['status']} at {last.get('at')}." if last else " No finished run yet."
    missed = f" Missed slots: {r['missedSlots']}, the last at {r.get('lastMissedAt')}." if r["missedSlots"] else ""
    rules = "".join(
        f" Rule {c['rule']}: fired {c['fired']}, skipped in cooldown {c['skippedCooldown']}, errors {c['errors']}."
        for c in r["policyCounts"]
    )
    return (
        f"{r['successCount']} succeeded, {r['failureCount']} failed; avg {r['avgDurationMs']} ms, "
        f"p95 {r['p95DurationMs']} ms; failure streak {r['failureStreak']}.{tail}{missed}{rules}"
    )


def _summarize_health() -> ToolSpec:
    return ToolSpec(
        name="summarizeEndpointHealth",
        rpc="SummarizeEndpointHealth",
        request_type=pb.SummarizeEndpointHealthRequest,
        response_type=pb.SummarizeEndpointHealthResponse,
        description=(
            "Summarize an endpoint's finished runs over the last windowHours: successCount, failureCount, "
            "avgDurationMs, p95DurationMs, lastRun {status, at} and failureStreak (unsuccessful runs since the last "
            "success); and, over the endpoint's life, missedSlots (slots that passed without a run: coalesced after "
            "an outage, or because runs take longer than the interval; paused time and backoff are not missed) and "
            "lastMissedAt; and policyCounts: per rule, how often it fired, was skipped in its cooldown, or failed in "
            "the window. Use it as a quick health check before deciding to tighten, remediate, escalate or back off. "
            'Example: {"endpointId": "...", "windowHours": 1}.'
        ),
        input_schema=_object(
            {
                "endpointId": _id("endpoint", "addEndpointToJob or listJobEndpoints"),
                "windowHours": {
                    "type": "integer",
                    "description": "Hours of history to summarize, " + _range(limits.WINDOW_HOURS) + ".",
                },
            },
            "endpointId",
        ),
        summarize=_health_line,
        read_only=True,
        idempotent=True,
    )


def _audit_line(args: Arguments, r: Result) -> str:
    more = " More: pass nextPageToken as pageToken." if r.get("nextPageToken") else ""
    return f"{_count(len(r['records']), 'audit record')}, newest first.{more}"


def _list_audit_records() -> ToolSpec:
    """An addition beside the 17 actions: who changed a job or an endpoint, what they did and why."""
    return ToolSpec(
        name="listAuditRecords",
        rpc="ListAuditRecords",
        request_type=pb.ListAuditRecordsRequest,
        response_type=pb.ListAuditRecordsResponse,
        description=(
            "Read the audit trail of a job (its own records and its endpoints') or of one endpoint, newest first: "
            "each record has actor (key:<label>, policy:<rule> or admin), action (e.g. ApplyIntervalHint), "
            "targetType, targetId, reason and at. Give exactly one of jobId or endpointId. Use it to learn why a "
            "cadence changed or who paused an endpoint before steering it again. "
            'Example: {"endpointId": "...", "pageSize": 20}.'
        ),
        input_schema=_object(
            {
                "jobId": _id("job", "createJob or listJobs"),
                "endpointId": _id("endpoint", "addEndpointToJob or listJobEndpoints"),
                "pageSize": {"type": "integer", "description": "Records per page, 1 to 100; omitted means 50."},
                "pageToken": {"type": "string", "description": "nextPageToken of the previous page."},
            }
        ),
        summarize=_audit_line,
        read_only=True,
        idempotent=True,
    )
