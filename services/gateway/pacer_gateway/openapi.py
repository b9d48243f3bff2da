"""The OpenAPI 3.1 document of the gateway, generated from the route table and the protobuf descriptors.

Nothing here is written by hand per operation: parameters, bodies and responses come from the same `Route` entries
and field kinds the gateway decodes and encodes with, so the document cannot drift from what the gateway does.
Request schemas describe the decoder in `routes.py` and what the control plane accepts (`constraints.py`: limits,
required fields, fields that exclude each other); response schemas describe
`MessageToDict(always_print_fields_with_no_presence=True, unquote_int64_if_possible=True)`: lowerCamelCase names,
enums by name, int64 as a JSON number whenever a double holds it exactly (else a decimal string), timestamps as
RFC 3339 strings, and every field without presence always present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Literal

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from pacer_common.descriptors import enum_names, is_map, map_fields, message_type, reachable, value_kind
from pacer_gateway.constraints import (
    CHOICES,
    NO_NUL,
    integer_keywords,
    is_required,
    size_keywords,
    string_keywords,
    zero_schema,
)
from pacer_gateway.examples import EXAMPLES
from pacer_gateway.problems import PROBLEM_JSON
from pacer_gateway.protocol import MAX_FIELD_BYTES, MAX_HEADERS, MAX_URL_BYTES
from pacer_gateway.routes import INT_RANGE, MAX_BODY_BYTES, ROUTES, Route, choices

Direction = Literal["input", "output"]
_ERRORS_ALL = (400, 401, 403, 404, 409, 412, 414, 429, 431, 500, 502, 503, 504)
_ERRORS_BODY = (413, 415)
_ERROR_TEXT = MappingProxyType(
    {
        400: "Invalid request: `invalidParams` names each parameter at fault.",
        401: "Missing, unknown or revoked API key.",
        403: "The key may not call this operation.",
        404: "No such route or object, or one that belongs to another tenant.",
        409: "Conflicts with a concurrent change.",
        412: "The job is archived or the endpoint was deleted.",
        413: f"The request body is larger than {MAX_BODY_BYTES} bytes.",
        414: f"The request URL is longer than {MAX_URL_BYTES} bytes.",
        415: "The request body is not `application/json`.",
        429: "A quota or rate limit refused the request: `violations` lists the quotas, `Retry-After` the wait.",
        431: f"A request header is longer than {MAX_FIELD_BYTES} bytes, or there are more than {MAX_HEADERS}.",
        500: "The gateway or the control plane failed: `errorId` names the failure in the server's log.",
        502: "The control plane failed.",
        503: "The control plane is unavailable; retry later (after `Retry-After` seconds when given).",
        504: "The control plane did not answer in time; retry later.",
    }
)
_DESCRIPTION = """\
Pacer's ControlService as JSON over HTTP. Send an API key as `Authorization: Bearer <key>`.

Bodies follow the protobuf JSON mapping: fields in lowerCamelCase (requests also accept the proto's snake_case
names), enums by name, int64 values as JSON numbers in responses (a decimal string only for a value a double cannot
hold exactly, which no Pacer field reaches; requests accept numbers or strings), timestamps
as RFC 3339 strings. Responses always include fields that have no presence in the proto (zeros, empty strings and
lists); unset optional values and messages are left out.

Errors are `application/problem+json` (RFC 9457) with `code`, the gRPC status name, and `invalidParams` naming each
parameter at fault."""


class _Components:
    """Message schemas, collected by name as the operations reference them; request schemas state the interval
    floor `floor_ms`."""

    def __init__(self, routes: Iterable[Route], floor_ms: int) -> None:
        self.schemas: dict[str, Any] = {}
        self.floor_ms = floor_ms
        self._outputs = reachable(route.response_type for route in routes)

    def ref(self, descriptor: Descriptor, direction: Direction, ignored: Mapping[str, str] | None = None) -> str:
        """A $ref to the schema of `descriptor` read (input) or written (output), adding the schema when new."""
        name = descriptor.name
        if direction == "input" and descriptor.full_name in self._outputs:
            name += "Input"  # a message on both sides gets two schemas: they differ in nullability and aliases
        if name not in self.schemas:
            self.schemas[name] = {}  # reserve the name first: messages may refer to themselves
            build = _input_message if direction == "input" else _output_message
            self.schemas[name] = build(descriptor, self, ignored or {})
        return f"#/components/schemas/{name}"


# -- field schemas -------------------------------------------------------------------------------------------------


def _value_schema(field: FieldDescriptor, direction: Direction, components: _Components) -> dict[str, Any]:
    """One value of `field`; a request's with what the control plane accepts in it (`constraints`)."""
    kind = value_kind(field)
    if kind == "string":
        return {"type": "string", **string_keywords(field)} if direction == "input" else {"type": "string"}
    if kind == "bool":
        return {"type": "boolean"}
    if kind in ("int32", "int64") and direction == "input":
        return integer_keywords(field, kind, components.floor_ms, as_text=kind == "int64")
    if kind == "int32":
        low, high = INT_RANGE[kind]
        return {"type": "integer", "format": kind, "minimum": low, "maximum": high}
    if kind == "int64":
        return {"type": ["integer", "string"], "format": "int64", "pattern": "^-?[0-9]+$"}
    if kind == "enum":
        return {"type": "string", "enum": enum_names(field)}
    if kind == "timestamp":
        return {"type": "string", "format": "date-time"}
    return {"$ref": components.ref(message_type(field), direction)}


def _field_schema(field: FieldDescriptor, direction: Direction, components: _Components) -> dict[str, Any]:
    sizes = size_keywords(field) if direction == "input" else {}
    if is_map(field):
        key, value = map_fields(field)
        schema: dict[str, Any] = {"type": "object", "additionalProperties": _value_schema(value, direction, components)}
        if direction == "input":
            schema["propertyNames"] = _value_schema(key, direction, components)
        return {**schema, **sizes}
    if field.is_repeated:
        return {"type": "array", "items": _value_schema(field, direction, components), **sizes}
    return _value_schema(field, direction, components)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null: a request may send null for any field to leave it unset."""
    if "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    nullable = {**schema, "type": [*kinds, "null"]}
    if "enum" in schema:
        nullable["enum"] = [*schema["enum"], None]
    return nullable


def _spellings(field: FieldDescriptor) -> list[str]:
    return list(dict.fromkeys((field.json_name, field.name)))


def _given(field: FieldDescriptor) -> dict[str, Any]:
    """A request object that sets `field`, in either spelling, to something other than what leaves it unset."""
    options = [{"required": [name], "properties": {name: {"not": zero_schema(field)}}} for name in _spellings(field)]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _present(field: FieldDescriptor) -> dict[str, Any]:
    """A request object that names `field` in either spelling (its schema then says which values it takes)."""
    options = [{"required": [name]} for name in _spellings(field)]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _rules(descriptor: Descriptor, ignored: Mapping[str, str]) -> list[dict[str, Any]]:
    """The request object's fields that must be set, and its fields of which at most (or exactly) one may be."""
    rules = [_present(f) for f in descriptor.fields if is_required(f) and f.name not in ignored]
    choice = CHOICES.get(descriptor.full_name)
    if choice is not None:
        given = [_given(field) for field in choice.resolve(descriptor)]
        if choice.required:
            rules.append({"oneOf": given})
        else:
            rules += [{"not": {"allOf": [a, b]}} for i, a in enumerate(given) for b in given[i + 1 :]]
    return rules


def _spelled(
    descriptor: Descriptor, components: _Components, ignored: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The properties of a request object, each field in both spellings, and the `dependentSchemas` that allow one
    spelling at a time and one field of each oneof."""
    properties: dict[str, Any] = {}
    one_spelling: dict[str, Any] = {}
    for field in descriptor.fields:
        schema = _field_schema(field, "input", components)
        if not is_required(field) or field.name in ignored:
            schema = _nullable(schema)
        if field.name in ignored:
            schema["description"] = f"Ignored: the `{ignored[field.name]}` path parameter is used instead."
        properties[field.json_name] = schema
        if field.name != field.json_name:
            properties[field.name] = {**schema, "description": f"Alias of `{field.json_name}`."}
            one_spelling[field.name] = {"properties": {field.json_name: False}}
    for fields in choices(descriptor):  # a oneof: once one of its fields is set, the others may only be null
        for field in fields:
            others = {name: {"type": "null"} for f in fields if f is not field for name in {f.json_name, f.name}}
            for name in {field.json_name, field.name}:
                one_spelling[name] = {"properties": {**one_spelling.get(name, {}).get("properties", {}), **others}}
    return properties, one_spelling


def _input_message(descriptor: Descriptor, components: _Components, ignored: Mapping[str, str]) -> dict[str, Any]:
    """A request object: both spellings of each field, never both at once, nothing else; the fields the control plane
    needs set (never null), and at most or exactly one of the fields that exclude each other."""
    properties, one_spelling = _spelled(descriptor, components, ignored)
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if one_spelling:
        schema["dependentSchemas"] = one_spelling
    rules = _rules(descriptor, ignored)
    if rules:
        schema["allOf"] = rules
    return schema


def _output_message(descriptor: Descriptor, components: _Components, _: Mapping[str, str]) -> dict[str, Any]:
    """A response object: fields without presence are always written, others only when set."""
    properties = {f.json_name: _field_schema(f, "output", components) for f in descriptor.fields}
    required = [f.json_name for f in descriptor.fields if not f.has_presence]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


# -- operations ----------------------------------------------------------------------------------------------------


def _path_parameter(route: Route, name: str) -> dict[str, Any]:
    if name in route.path_fields:
        description = f"Fills `{route.path_fields[name]}` of `{route.request_type.name}`."
    else:
        description = "The endpoint's job: an endpoint of another job is reported as not found (404)."
    schema = {"type": "string", "minLength": 1, "pattern": NO_NUL}
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _query_parameter(route: Route, proto_name: str, components: _Components) -> dict[str, Any]:
    field = route.request_type.fields_by_name[proto_name]
    kind = value_kind(field)
    schema = _value_schema(field, "input", components)
    if kind == "int64":  # a query string carries digits, never a JSON string
        schema = integer_keywords(field, kind, components.floor_ms, as_text=False)
    description = f"Fills `{proto_name}` of `{route.request_type.name}`."
    return {
        "name": field.json_name,
        "in": "query",
        "required": is_required(field),
        "description": description,
        "schema": schema,
    }


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _ERROR_TEXT[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in (429, 503):
        retry = {"type": "integer", "minimum": 1}
        wait = {"required": status == 429, "description": "Seconds to wait.", "schema": retry}
        response["headers"] = {"Retry-After": wait}
    if status == 401:
        challenge = {"required": True, "schema": {"type": "string"}}
        response["headers"] = {"WWW-Authenticate": challenge}
    return response


def _success_response(route: Route, components: _Components) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": HTTPStatus(route.status).phrase,
        "content": {"application/json": {"schema": {"$ref": components.ref(route.response_type, "output")}}},
    }
    if route.location:
        location = {"required": True, "description": f"`{route.location}`", "schema": {"type": "string"}}
        response["headers"] = {"Location": location}
    return response


def _operation(route: Route, components: _Components) -> dict[str, Any]:
    parameters = [_path_parameter(route, name) for name in route.path_params]
    parameters += [_query_parameter(route, name, components) for name in route.query]
    errors = _ERRORS_ALL + (_ERRORS_BODY if route.body else ())
    responses = {str(route.status): _success_response(route, components)}
    responses |= {str(status): {"$ref": f"#/components/responses/{status}"} for status in sorted(errors)}
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "x-grpc-method": f"pacer.control.v1.ControlService/{route.rpc}",
        "parameters": parameters,
        "responses": responses,
    }
    if route.body:
        ignored = {field: param for param, field in route.path_fields.items()}
        schema = {"$ref": components.ref(route.request_type, "input", ignored)}
        # An empty body is `{}`: optional unless the message has fields a request must set.
        needed = bool(_rules(route.request_type, ignored))
        media: dict[str, Any] = {"schema": schema}
        if route.rpc in EXAMPLES:
            media["example"] = dict(EXAMPLES[route.rpc])
        operation["requestBody"] = {"required": needed, "content": {"application/json": media}}
    return operation


def _unauthenticated_get(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    content = {"application/json": {"schema": schema}}
    return {
        "get": {"summary": summary, "security": [], "responses": {"200": {"description": "OK", "content": content}}}
    }


def _problem_schemas() -> dict[str, Any]:
    invalid = {
        "type": "object",
        "required": ["name", "reason"],
        "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
    }
    quota = {
        "type": "object",
        "required": ["subject", "description"],
        "properties": {"subject": {"type": "string"}, "description": {"type": "string"}},
    }
    problem = {
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri-reference"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "description": "The gRPC status code name, e.g. INVALID_ARGUMENT."},
            "invalidParams": {"type": "array", "items": {"$ref": "#/components/schemas/InvalidParam"}},
            "violations": {"type": "array", "items": {"$ref": "#/components/schemas/QuotaViolation"}},
            "errorId": {"type": "string", "description": "Names an unexpected failure in the server's log."},
        },
    }
    return {"Problem": problem, "InvalidParam": invalid, "QuotaViolation": quota}


def build_document(routes: Iterable[Route] = ROUTES, *, floor_ms: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes`, plus the unauthenticated /healthz and /openapi.json; requests are held
    to the interval floor `floor_ms`, the control plane's (PACER_MIN_INTERVAL_MS)."""
    routes = tuple(routes)
    components = _Components(routes, floor_ms)
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    health = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}
    paths["/healthz"] = _unauthenticated_get("Gateway liveness (does not call the control plane)", health)
    paths["/openapi.json"] = _unauthenticated_get("This document", {"type": "object"})
    statuses = sorted(set(_ERRORS_ALL + _ERRORS_BODY))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Pacer REST API", "version": "1", "description": _DESCRIPTION},
        # Relative: the gateway that serves this document is the server, whatever name or port it is reached by.
        "servers": [{"url": "/", "description": "the gateway serving this document"}],
        "tags": [{"name": tag} for tag in dict.fromkeys(route.tag for route in routes)],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "A Pacer API key."}},
            "schemas": {**_problem_schemas(), **dict(sorted(components.schemas.items()))},
            "responses": {str(status): _problem_response(status) for status in statuses},
        },
    }
