"""Reading the API's protobuf descriptors: what kind of JSON value each field is, and which limit bounds it.

The REST gateway (its decoder and its OpenAPI document) and the MCP server (its tool schemas) describe the same
messages; they read them through these helpers so the two cannot disagree about a field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from pacer_common.limits import FieldKey, Limit, limit_for

Kind = Literal["string", "bool", "int32", "int64", "enum", "timestamp", "message"]
JsonType = Literal["string", "boolean", "integer", "object"]
_SCALAR_KINDS: Mapping[int, Kind] = MappingProxyType(
    {
        FieldDescriptor.TYPE_STRING: "string",
        FieldDescriptor.TYPE_BOOL: "bool",
        FieldDescriptor.TYPE_INT32: "int32",
        FieldDescriptor.TYPE_INT64: "int64",
        FieldDescriptor.TYPE_ENUM: "enum",
    }
)
_JSON_TYPES: Mapping[Kind, JsonType] = MappingProxyType(
    {
        "string": "string",
        "bool": "boolean",
        "int32": "integer",
        "int64": "integer",
        "enum": "string",
        "timestamp": "string",
        "message": "object",
    }
)


def message_type(field: FieldDescriptor) -> Descriptor:
    """The message type of a message-typed field."""
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def is_map(field: FieldDescriptor) -> bool:
    """True for a `map<K, V>` field (a repeated entry message on the wire, an object in JSON)."""
    return field.type == FieldDescriptor.TYPE_MESSAGE and bool(message_type(field).GetOptions().map_entry)


def map_fields(field: FieldDescriptor) -> tuple[FieldDescriptor, FieldDescriptor]:
    """The key and value fields of a map field's entry message."""
    entry = message_type(field).fields_by_name
    return entry["key"], entry["value"]


def value_kind(field: FieldDescriptor) -> Kind:
    """The kind of one value of `field` (of each element when repeated); TypeError for types the API does not use,
    so a new field type fails loudly here instead of being described wrongly."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return "timestamp" if message_type(field).full_name == Timestamp.DESCRIPTOR.full_name else "message"
    kind = _SCALAR_KINDS.get(field.type)
    if kind is None:
        raise TypeError(f"{field.full_name}: protobuf type {field.type} has no JSON rule")
    return kind


def json_type(field: FieldDescriptor) -> JsonType:
    """The JSON Schema type of one value of `field` in the protobuf JSON mapping (int64 as a number)."""
    return _JSON_TYPES[value_kind(field)]


def enum_names(field: FieldDescriptor) -> list[str]:
    """The names an enum field accepts and is written as, in declaration order."""
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return [value.name for value in field.enum_type.values]


def reachable(roots: Iterable[Descriptor]) -> frozenset[str]:
    """Full names of the messages `roots` contain, themselves included, however deeply nested."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name not in seen:
            seen.add(descriptor.full_name)
            pending += [f.message_type for f in descriptor.fields if f.message_type is not None]
    return frozenset(seen)


def field_key(field: FieldDescriptor) -> FieldKey:
    """The key of `field` in `pacer_common.limits.LIMITS`."""
    if field.containing_type is None:
        raise TypeError(f"{field.full_name} is an extension, not a message field")
    return field.containing_type.full_name, field.name


def limit_of(field: FieldDescriptor) -> Limit | None:
    """The API limit on `field`, None when it has none."""
    return limit_for(*field_key(field))


def wrapped_map(field: FieldDescriptor) -> FieldDescriptor | None:
    """The map inside a message-typed field whose message holds nothing else (`Headers.entries`), else None.

    Such a wrapper tells "no change" from "empty" in an update; a front door may take the map itself.
    """
    if field.type != FieldDescriptor.TYPE_MESSAGE or is_map(field) or field.is_repeated:
        return None
    fields = message_type(field).fields
    return fields[0] if len(fields) == 1 and is_map(fields[0]) else None
