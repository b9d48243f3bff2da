"""The front doors advertise the table in `pacer_common.limits`: every limit appears, with its numbers, in the OpenAPI
document and in the MCP tool schemas, and `pacerctl apply` refuses a manifest one past it. (That the control plane
enforces each limit is tests/integration/test_limits.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli.manifest import ManifestError, parse
from pacer_common import limits
from pacer_common.descriptors import field_key, is_map, map_fields, message_type, value_kind, wrapped_map
from pacer_common.limits import LIMITS, FieldKey, Limit
from pacer_gateway.constraints import FIELD_LIMITS
from pacer_gateway.openapi import build_document
from pacer_gateway.routes import ROUTES
from pacer_mcp.tools import tool_specs

FLOOR_MS = 5000  # not the default, so a front door that ignores the floor it is given shows
# (field, its schema, what its lengths count: "Length" for a string, "Properties" for a map, "Items" for a list)
Found = Iterator[tuple[FieldKey, dict[str, Any], str]]


def test_every_key_names_a_field_of_the_api() -> None:
    pool = pb.DESCRIPTOR.pool
    for message, field in LIMITS:
        assert field in pool.FindMessageTypeByName(message).fields_by_name, (message, field)


def test_every_string_field_named_reason_is_limited() -> None:
    """A new request with a `reason` gets the limit the others have, or this fails."""
    for method in pb.DESCRIPTOR.services_by_name["ControlService"].methods:
        if "reason" in method.input_type.fields_by_name:
            assert LIMITS[(method.input_type.full_name, "reason")] == limits.REASON


def _carries(schema: dict[str, Any], limit: Limit, lowest: int | None, length: str) -> None:
    longest = limit.max_length if limit.max_length is not None or length != "Length" else limit.max_bytes
    if longest is not None:
        assert schema["max" + length] == longest
    if limit.min_length is not None and limit.zero == "refused":  # else "" is allowed too, and the pattern says so
        assert schema["min" + length] == limit.min_length
    if limit.pattern is not None:
        assert schema["pattern"] == limit.pattern
    if limit.maximum is not None:
        assert schema["maximum"] == limit.maximum
    if lowest is not None:
        assert schema["minimum"] == lowest


def _walk(schema: dict[str, Any], descriptor: Descriptor, resolve: Any) -> Found:
    """(field, schema) for every field of `descriptor` that `schema` (an object schema) has a property for."""
    fields = {field.json_name: field for field in descriptor.fields}
    for name, prop in resolve(schema).get("properties", {}).items():
        if name in fields:
            yield from _walk_field(resolve(prop), fields[name], resolve)


def _walk_field(schema: dict[str, Any], field: FieldDescriptor, resolve: Any) -> Found:
    inner = wrapped_map(field)
    if inner is not None and "properties" not in schema:  # the MCP tool takes the wrapped map itself
        field = inner
    if is_map(field):
        yield field_key(field), schema, "Properties"
        yield field_key(map_fields(field)[0]), resolve(schema["propertyNames"]), "Length"
    elif field.is_repeated and "items" in schema:
        yield field_key(field), schema, "Items"
        if value_kind(field) == "message":
            yield from _walk(schema["items"], message_type(field), resolve)
    elif value_kind(field) == "message":
        yield from _walk(schema, message_type(field), resolve)
    else:
        yield field_key(field), schema, "Length"


def _openapi_schemas() -> Found:
    document = build_document(floor_ms=FLOOR_MS)

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        for option in schema.get("anyOf", []):  # a nullable reference
            if "$ref" in option:
                return resolve(option)
        if "$ref" in schema:
            return dict(document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
        return schema

    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        for parameter in operation["parameters"]:
            field = route.request_type.fields_by_name.get(parameter["name"])
            field = field or {f.json_name: f for f in route.request_type.fields}.get(parameter["name"])
            if field is not None and parameter["in"] == "query":
                yield field_key(field), parameter["schema"], "Length"
        if route.body:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            yield from _walk(body, route.request_type, resolve)


def _mcp_schemas() -> Found:
    for spec in tool_specs(FLOOR_MS):
        yield from _walk(spec.input_schema, spec.request_type.DESCRIPTOR, lambda schema: schema)


def test_the_openapi_document_carries_every_limit() -> None:
    """Every limit of LIMITS, and those the gateway states beside them (policies, jitter, signing)."""
    found = list(_openapi_schemas())
    assert {key for key, _, _ in found} >= set(FIELD_LIMITS) >= set(LIMITS)
    for key, schema, length in found:
        limit = FIELD_LIMITS.get(key)
        if limit is not None:
            # The floor is the one the gateway is given; a request body spells a default or "no bound" as 0.
            lowest = 0 if limit.accepts_zero(omittable=False) else limit.lowest(FLOOR_MS)
            _carries(schema, limit, lowest if limit.minimum is not None else None, length)


def test_the_mcp_schemas_carry_every_limit() -> None:
    found = list(_mcp_schemas())
    assert {key for key, _, _ in found} >= set(LIMITS)
    for key, schema, length in found:
        limit = LIMITS.get(key)
        if limit is not None:
            # An argument is left out rather than sent as 0, unless 0 means "no bound"; the floor is the server's.
            lowest = 0 if limit.accepts_zero(omittable=True) else limit.lowest(FLOOR_MS)
            _carries(schema, limit, lowest, length)


def test_the_mcp_schemas_use_the_floor_they_are_given() -> None:
    hint = next(spec for spec in tool_specs(FLOOR_MS) if spec.name == "applyIntervalHint")
    assert hint.input_schema["properties"]["intervalMs"]["minimum"] == FLOOR_MS


# -- pacerctl apply --------------------------------------------------------------------------------------------------

ENDPOINT = {"name": "probe", "url": "https://example.com/health", "every": "1m"}
MAX_INTERVAL = f"{limits.MAX_INTERVAL_MS // 86_400_000}d"
ONE_PAST_INTERVAL = f"{limits.MAX_INTERVAL_MS // 86_400_000}d1ms"


def _problems(endpoint: dict[str, Any]) -> list[str]:
    """The paths (within the endpoint) of the problems `pacerctl apply` finds in a file with this one endpoint."""
    text = yaml.safe_dump({"jobs": [{"name": "J", "endpoints": [endpoint]}]})
    try:
        parse(text, "test.yaml")
    except ManifestError as error:
        return [problem.path.removeprefix("jobs[0].endpoints[0].") for problem in error.problems]
    return []


def _sized(limit: Limit) -> int:
    return limit.max_length if limit.max_length is not None else limit.max_bytes or 0


URL_HEAD = "https://example.com/"


def _cron(n: int) -> str:
    """A cron expression of exactly `n` characters with no padding to strip: a long list of minutes."""
    rest = " 9 * * *" if (n - 8) % 2 else " 09 * * *"
    return "0" + ",0" * ((n - len(rest)) // 2) + rest


CLI_EDGES = {
    "name": (lambda n: "n" * n, limits.NAME),
    "url": (lambda n: URL_HEAD + "u" * (n - len(URL_HEAD)), limits.URL),
    "body": (lambda n: "b" * n, limits.BODY),
    "headers": (lambda n: {f"X-{i}": "v" for i in range(n)}, limits.HEADERS),
    "cron": (_cron, limits.CRON_EXPRESSION),
}


@pytest.mark.parametrize("key", sorted(CLI_EDGES))
def test_apply_refuses_one_past_each_length_limit(key: str) -> None:
    sized, limit = CLI_EDGES[key]
    assert len(sized(50)) == 50  # the sizes below are what they say
    endpoint = {name: value for name, value in ENDPOINT.items() if not (key == "cron" and name == "every")}
    assert _problems({**endpoint, key: sized(_sized(limit))}) == []
    assert key in _problems({**endpoint, key: sized(_sized(limit) + 1)})


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [
        ({"headers": {"X" * (limits.HEADER_NAME.max_length or 0) + "X": "v"}}, "headers." + "X" * 257),
        ({"every": ONE_PAST_INTERVAL}, "every"),
        ({"clamp": {"max": ONE_PAST_INTERVAL}}, "clamp.max"),
        ({"timeout": f"{limits.TIMEOUT_MS.maximum}ms1ms"}, "timeout"),
        ({"retry": {"attempts": (limits.RETRY_MAX_ATTEMPTS.maximum or 0) + 1}}, "retry.attempts"),
        ({"retry": {"attempts": 0}}, "retry.attempts"),
        ({"retry": {"attempts": 2, "backoff": f"{limits.RETRY_BACKOFF_MS.maximum}ms1ms"}}, "retry.backoff"),
        ({"retry": {"attempts": 2, "backoff": f"{(limits.RETRY_BACKOFF_MS.minimum or 0) - 1}ms"}}, "retry.backoff"),
    ],
)
def test_apply_refuses_one_past_each_other_limit(endpoint: dict[str, Any], path: str) -> None:
    assert path in _problems({**ENDPOINT, **endpoint})


def test_apply_accepts_the_limits_themselves() -> None:
    longest_name = {"X" * (limits.HEADER_NAME.max_length or 0): "v"}
    retry = {"attempts": limits.RETRY_MAX_ATTEMPTS.maximum, "backoff": f"{limits.RETRY_BACKOFF_MS.maximum}ms"}
    at_limits = {
        "headers": longest_name,
        "every": MAX_INTERVAL,
        "clamp": {"max": MAX_INTERVAL},
        "timeout": "5m",
        "retry": retry,
    }
    assert _problems({**ENDPOINT, **at_limits}) == []
