"""The route table (HTTP route -> ControlService RPC) and the decoding of an HTTP request into that RPC's message.

Request JSON follows the protobuf JSON mapping, restricted to one spelling per value so the OpenAPI document can
describe exactly what is accepted:

- a field may be named in lowerCamelCase (`intervalMs`) or as in the proto (`interval_ms`), not both at once;
- `null` leaves a field unset;
- strings must not contain U+0000; enums are given by name; timestamps are RFC 3339 strings;
- int32 values are JSON integers; int64 values are JSON integers or decimal strings of at most 18 digits (the
  responses write int64 as strings, so what a response says can be sent back).

Every fault is reported at once, each named as the client spelled it (`baseline.intervalMs`, `pageSize`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp

from pacer.control.v1 import control_service_pb2 as pb
from pacer_common.descriptors import Kind, enum_names, is_map, map_fields, message_type, value_kind
from pacer_gateway.problems import InvalidParam, bad_request, json_name

SERVICE = pb.DESCRIPTOR.services_by_name["ControlService"]
INT_RANGE = MappingProxyType({"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)})
INT64_DIGITS = 18  # 18 digits always fit in int64, so the pattern alone is exact
INT64_STRING = re.compile(f"^-?[0-9]{{1,{INT64_DIGITS}}}$")
QUERY_INT = re.compile(r"^-?[0-9]{1,20}$")  # longer digit runs are out of range anyway (and slow to convert)
# Room for the largest request the control plane accepts (256 KiB body, 16 KiB headers) even when JSON escapes grow it.
MAX_BODY_BYTES = 2 * 1024 * 1024
# A path parameter fills the request field of the same meaning; `jobId` on endpoint routes only scopes the call.
PATH_FIELDS = MappingProxyType({"jobId": "job_id", "endpointId": "endpoint_id", "runId": "run_id"})


@dataclass(frozen=True)
class Route:
    """One HTTP route: the RPC it calls and where each request field comes from.

    Fields named in `query` come from the query string, fields named by a path parameter from the path, and when
    `body` is set every field may come from the JSON body (a path parameter wins over the body).
    """

    method: Literal["GET", "POST", "PATCH", "DELETE"]
    path: str
    rpc: str
    tag: str
    summary: str
    query: tuple[str, ...] = ()
    body: bool = False
    status: int = 200
    location: str | None = None

    @property
    def request_type(self) -> Descriptor:
        """The descriptor of the RPC's request message."""
        return SERVICE.methods_by_name[self.rpc].input_type

    @property
    def response_type(self) -> Descriptor:
        """The descriptor of the RPC's response message."""
        return SERVICE.methods_by_name[self.rpc].output_type

    @property
    def operation_id(self) -> str:
        """The OpenAPI operationId: the RPC name in lowerCamelCase."""
        return self.rpc[0].lower() + self.rpc[1:]

    @property
    def path_params(self) -> tuple[str, ...]:
        """The `{name}` parameters of the path, in order."""
        return tuple(re.findall(r"{(\w+)}", self.path))

    @property
    def path_fields(self) -> Mapping[str, str]:
        """Path parameter -> the request field it fills (parameters that only scope the call are left out)."""
        fields = self.request_type.fields_by_name
        return {p: PATH_FIELDS[p] for p in self.path_params if PATH_FIELDS[p] in fields}

    @property
    def scopes_endpoint(self) -> bool:
        """True when the endpoint named in the path must belong to the job named in the path."""
        return "endpointId" in self.path_params and "jobId" not in self.path_fields


_ENDPOINT = "/jobs/{jobId}/endpoints/{endpointId}"
ROUTES: tuple[Route, ...] = (
    Route("POST", "/jobs", "CreateJob", "jobs", "Create a job", body=True, status=201, location="/jobs/{jobId}"),
    Route("GET", "/jobs", "ListJobs", "jobs", "List jobs, newest first", query=("status", "page_size", "page_token")),
    Route("GET", "/jobs/{jobId}", "GetJob", "jobs", "Get a job"),
    Route("PATCH", "/jobs/{jobId}", "UpdateJob", "jobs", "Rename a job or change its description", body=True),
    Route("DELETE", "/jobs/{jobId}", "ArchiveJob", "jobs", "Archive a job", query=("reason",)),
    Route("POST", "/jobs/{jobId}/endpoints", "AddEndpointToJob", "endpoints", "Add an endpoint", body=True, status=201),
    Route("GET", "/jobs/{jobId}/endpoints", "ListJobEndpoints", "endpoints", "List a job's live endpoints"),
    Route("PATCH", _ENDPOINT, "UpdateEndpointConfig", "endpoints", "Change an endpoint", body=True),
    Route("DELETE", _ENDPOINT, "DeleteEndpoint", "endpoints", "Delete an endpoint", query=("reason",)),
    Route("POST", f"{_ENDPOINT}/hints/interval", "ApplyIntervalHint", "steering", "Apply an interval hint", body=True),
    Route(
        "POST", f"{_ENDPOINT}/hints/one-shot", "ScheduleOneShotRun", "steering", "Schedule a one-shot run", body=True
    ),
    Route("POST", f"{_ENDPOINT}/pause", "PauseOrResumeEndpoint", "steering", "Pause or resume an endpoint", body=True),
    Route("DELETE", f"{_ENDPOINT}/hints", "ClearAdaptiveHints", "steering", "Clear adaptive hints", query=("reason",)),
    Route("POST", f"{_ENDPOINT}/reset-failures", "ResetFailureCount", "steering", "Reset failure backoff", body=True),
    Route(
        "GET", "/runs", "ListRuns", "runs", "List runs", query=("job_id", "endpoint_id", "status", "limit", "offset")
    ),
    Route("GET", "/runs/{runId}", "GetRunDetails", "runs", "Get a run with its outcome"),
    Route("GET", f"{_ENDPOINT}/health", "SummarizeEndpointHealth", "runs", "Summarize health", query=("window_hours",)),
    # An addition beside the 17 actions: the audit trail, read by the console and by anyone asking "who did this?".
    Route(
        "GET",
        "/audit",
        "ListAuditRecords",
        "audit",
        "List a job's or an endpoint's audit records, newest first",
        query=("job_id", "endpoint_id", "page_size", "page_token"),
    ),
)


# -- decoding ------------------------------------------------------------------------------------------------------


class _Faults:
    """Collects every fault of one request, so a client fixes them all in one round."""

    def __init__(self) -> None:
        self.found: list[InvalidParam] = []

    def add(self, name: str, reason: str) -> None:
        self.found.append(InvalidParam(name, reason))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in a request body; an empty body is `{}`. Problem 400 for anything else."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise bad_request(f"the request body is not valid JSON: {error.msg.lower()} at {where}") from None
    except UnicodeDecodeError:
        raise bad_request("the request body is not valid JSON: it is not UTF-8 text") from None
    except RecursionError:
        raise bad_request("the request body is not valid JSON: it is nested too deeply") from None
    except ValueError:  # NaN, Infinity (see _reject_constant)
        raise bad_request("the request body is not valid JSON: NaN and Infinity are not JSON numbers") from None
    if not isinstance(value, dict):
        raise bad_request("the request body must be a JSON object")
    return value


def _text(value: object, name: str, faults: _Faults) -> str | None:
    if not isinstance(value, str):
        faults.add(name, "must be a string")
        return None
    if "\x00" in value:
        faults.add(name, "must not contain U+0000")
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        faults.add(name, "must be valid Unicode text (no lone surrogates)")
        return None
    return value


def _integer(value: object, kind: Kind, name: str, faults: _Faults) -> int | None:
    if isinstance(value, str) and kind == "int64" and INT64_STRING.fullmatch(value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    low, high = INT_RANGE[kind]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        spelled = " (or a decimal string of at most 18 digits)" if kind == "int64" else ""
        faults.add(name, f"must be an integer from {low} to {high}{spelled}")
        return None
    return value


def _timestamp(value: object, name: str, faults: _Faults) -> str | None:
    text = _text(value, name, faults)
    if text is None:
        return None
    try:
        Timestamp().FromJsonString(text.upper())  # RFC 3339 allows lower-case `t` and `z`; protobuf does not
    except ValueError:
        faults.add(name, "must be an RFC 3339 timestamp such as 2030-01-31T09:00:00Z")
        return None
    return text.upper()


def _value(value: object, field: FieldDescriptor, name: str, faults: _Faults) -> Any:
    """The canonical JSON for one value of `field`, or None (with a fault recorded) when it is not acceptable."""
    kind = value_kind(field)
    if kind == "string":
        return _text(value, name, faults)
    if kind in ("int32", "int64"):
        return _integer(value, kind, name, faults)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        faults.add(name, "must be true or false")
        return None
    if kind == "enum":
        if isinstance(value, str) and value in enum_names(field):
            return value
        faults.add(name, f"must be one of {', '.join(enum_names(field))}")
        return None
    if kind == "timestamp":
        return _timestamp(value, name, faults)
    return _message(value, message_type(field), name, faults)


def _map(value: object, field: FieldDescriptor, name: str, faults: _Faults) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        faults.add(name, "must be a JSON object")
        return None
    key_field, value_field = map_fields(field)
    entries = {}
    for key, item in value.items():
        canonical_key = _value(key, key_field, f"{name}.{key}", faults)
        entries[canonical_key] = _value(item, value_field, f"{name}.{key}", faults)
    return entries


def _field(value: object, field: FieldDescriptor, name: str, faults: _Faults) -> Any:
    if is_map(field):
        return _map(value, field, name, faults)
    if field.is_repeated:
        if not isinstance(value, list):
            faults.add(name, "must be a JSON array")
            return None
        return [_value(item, field, f"{name}[{i}]", faults) for i, item in enumerate(value)]
    return _value(value, field, name, faults)


def _message(value: object, descriptor: Descriptor, prefix: str, faults: _Faults) -> dict[str, Any] | None:
    """The canonical JSON (lowerCamelCase keys, unset nulls dropped) of one message-typed JSON object."""
    if not isinstance(value, dict):
        faults.add(prefix or "body", "must be a JSON object")
        return None
    by_json = {f.json_name: f for f in descriptor.fields}
    canonical: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, item in value.items():
        name = f"{prefix}.{key}" if prefix else key
        field = by_json.get(key) or descriptor.fields_by_name.get(key)
        if field is None:
            faults.add(name, f"is not a field of {descriptor.name}")
        elif field.json_name in spelled:
            faults.add(name, f"is the same field as {spelled[field.json_name]!r}; give it once")
        else:
            spelled[field.json_name] = key
            if item is not None:
                canonical[field.json_name] = _field(item, field, name, faults)
    _one_of_each(descriptor, canonical, spelled, prefix, faults)
    return canonical


def choices(descriptor: Descriptor) -> list[list[FieldDescriptor]]:
    """The fields of each oneof of `descriptor` that offers a choice (a proto3 `optional` is a oneof of one)."""
    return [list(oneof.fields) for oneof in descriptor.oneofs if len(oneof.fields) > 1]


def _one_of_each(
    descriptor: Descriptor, canonical: Mapping[str, Any], spelled: Mapping[str, str], prefix: str, faults: _Faults
) -> None:
    """A fault for each field set after another of its oneof (a `PolicyAction` is one action)."""
    for fields in choices(descriptor):
        given = [field for field in fields if field.json_name in canonical]
        for field in given[1:]:
            name = f"{prefix}.{spelled[field.json_name]}" if prefix else spelled[field.json_name]
            first = spelled[given[0].json_name]
            faults.add(name, f"set only one of {', '.join(f.json_name for f in fields)} (also {first!r})")


def _query(route: Route, query: Iterable[tuple[str, str]], faults: _Faults) -> dict[str, Any]:
    fields = {route.request_type.fields_by_name[n].json_name: route.request_type.fields_by_name[n] for n in route.query}
    values: dict[str, Any] = {}
    for name, raw in query:
        field = fields.get(name)
        if field is None:
            hint = f"; did you mean {json_name(name)!r}?" if json_name(name) in fields else ""
            faults.add(name, f"is not a query parameter of {route.method} {route.path}{hint}")
        elif name in values:
            faults.add(name, "is given more than once")
        else:
            values[name] = _value(_query_scalar(raw, field), field, name, faults)
    return values


def _query_scalar(raw: str, field: FieldDescriptor) -> object:
    """A query string value as the JSON value it stands for, so query and body share one set of checks."""
    kind = value_kind(field)
    if kind in ("int32", "int64"):
        return int(raw) if QUERY_INT.fullmatch(raw) else raw
    if kind == "bool":
        return {"true": True, "false": False}.get(raw, raw)
    return raw


def decode_request(
    route: Route, path: Mapping[str, str], query: Iterable[tuple[str, str]], body: dict[str, Any]
) -> Message:
    """The RPC request for one HTTP request: body fields, then query fields, then path fields (the path wins).

    Raises a 400 Problem naming every parameter at fault.
    """
    faults = _Faults()
    canonical = _message(body, route.request_type, "", faults) or {}
    canonical.update(_query(route, query, faults))
    fields = route.request_type.fields_by_name
    for param in route.path_params:
        value = _text(path[param], param, faults)
        if param in route.path_fields:
            canonical[fields[route.path_fields[param]].json_name] = value
    if faults.found:
        raise bad_request("the request has invalid parameters", tuple(faults.found))
    message: Message = GetMessageClass(route.request_type)()
    try:
        return json_format.ParseDict(canonical, message)
    except json_format.ParseError:  # the checks above should make this unreachable; stay a 400 if not
        raise bad_request(f"the request does not fit {route.request_type.name}") from None
